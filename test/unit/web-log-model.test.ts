import { describe, expect, it } from "vitest";
import {
  DEFAULT_LOG_BUDGET,
  type LogEvent,
  LogModel,
  MAX_LINE_CHARS,
  type Section,
} from "../../controller/web/log-model.ts";
import { jobPhases, runMs, waitMs } from "../../controller/web/phases.ts";

const AT = "2026-01-01T00:00:00.000Z";

function stepStart(stepId: string, index: number, total = 2): LogEvent {
  return { type: "step-start", stepId, index, total, at: AT };
}
function output(stepId: string, text: string, stream: "stdout" | "stderr" = "stdout"): LogEvent {
  return { type: "output", stepId, stream, text };
}
function stepEnd(stepId: string, index: number, exitCode = 0): LogEvent {
  return {
    type: "step-end",
    stepId,
    index,
    total: 2,
    status: exitCode === 0 ? "succeeded" : "failed",
    exitCode,
    signal: null,
    reason: "exit",
    durationMs: 1500,
    peakRssBytes: 5 * 1024 * 1024,
  };
}

/** A model with one running step `s` fed `texts` as separate output events. */
function fed(...texts: string[]): Section {
  const model = new LogModel();
  model.ingest(stepStart("s", 1, 1));
  for (const text of texts) model.ingest(output("s", text));
  return model.sections.find((s) => s.stepId === "s")!;
}

describe("web view log model: text to lines", () => {
  it("joins a line split across events and splits events holding several lines", () => {
    expect(fed("hel", "lo\nwor", "ld\n", "a\nb\n").html).toEqual(["hello", "world", "a", "b"]);
  });

  it("escapes HTML in the output", () => {
    expect(fed("<script>alert(1)</script> & 'x'\n").html).toEqual([
      "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#x27;x&#x27;",
    ]);
  });

  it("turns colours into classes and carries them across lines as a terminal does", () => {
    const section = fed("\u001b[32mgreen\nstill green\u001b[0m plain\n");
    expect(section.html).toEqual([
      '<span class="ansi-green-fg">green</span>',
      '<span class="ansi-green-fg">still green</span> plain',
    ]);
  });

  it("keeps an escape sequence split across two events", () => {
    expect(fed("a \u001b[3", "1mred\u001b[0m\n").html).toEqual(['a <span class="ansi-red-fg">red</span>']);
  });

  it("treats CRLF as one line end, also when split across events", () => {
    expect(fed("one\r\ntwo\r", "\nthree\r\n").html).toEqual(["one", "two", "three"]);
  });

  it("shows what a carriage return leaves on screen (progress bars)", () => {
    expect(fed("10%\r50%\r", "100%\ndone\n").html).toEqual(["100%", "done"]);
  });

  it("continues a line longer than MAX_LINE_CHARS on further rows, marked as continued", () => {
    const section = fed("x".repeat(MAX_LINE_CHARS * 2 + 10), "\n");
    expect(section.html.map((h) => h.length)).toEqual([MAX_LINE_CHARS, MAX_LINE_CHARS, 10]);
    expect(section.continued).toEqual([0, 1, 1]);
  });

  it("marks lines that began on stderr", () => {
    const model = new LogModel();
    model.ingest(stepStart("s", 1, 1));
    model.ingest(output("s", "out\n"));
    model.ingest(output("s", "err\n", "stderr"));
    expect(model.sections[1]!.stderr).toEqual([0, 1]);
  });

  it("keeps each line's receipt time when the event carries one, NaN otherwise", () => {
    const model = new LogModel();
    model.ingest(stepStart("s", 1, 1));
    model.ingest({ ...output("s", "a\nb"), at: "2026-01-01T00:00:01.500Z" });
    model.ingest({ ...output("s", " more\nc\n"), at: "2026-01-01T00:00:02.000Z" });
    model.ingest(output("s", "d\n"));
    const section = model.sections[1]!;
    expect(section.html).toEqual(["a", "b more", "c", "d"]);
    expect(section.at.slice(0, 3)).toEqual([
      Date.parse("2026-01-01T00:00:01.500Z"),
      Date.parse("2026-01-01T00:00:01.500Z"),
      Date.parse("2026-01-01T00:00:02.000Z"),
    ]);
    expect(section.at[3]).toBeNaN();
  });
});

describe("web view log model: sections and rows", () => {
  function twoSteps(): LogModel {
    const model = new LogModel();
    model.setSteps([
      { id: "build", name: "Build", status: "pending" },
      { id: "test", name: "Test", status: "pending" },
    ]);
    model.ingest({ type: "status", status: "assigned", at: AT, agent: "a1" });
    model.ingest(stepStart("build", 1));
    model.ingest(output("build", "b1\nb2\n"));
    model.ingest(stepEnd("build", 1));
    return model;
  }

  it("lists the job's steps before they start, as pending and folded", () => {
    const model = new LogModel();
    model.setSteps([{ id: "a", status: "pending" }]);
    expect(model.sections.map((s) => [s.title, s.status, s.collapsed])).toEqual([
      ["Set up job", "info", false],
      ["step a", "pending", true],
    ]);
  });

  it("folds a succeeded step when the next starts, and keeps the last step open", () => {
    const model = twoSteps();
    expect(model.sections.map((s) => s.collapsed)).toEqual([true, false, true]);
    model.ingest(stepStart("test", 2));
    expect(model.sections.map((s) => s.collapsed)).toEqual([true, true, false]);
    model.ingest(stepEnd("test", 2));
    model.ingest({ type: "job-end", status: "succeeded", durationMs: 3000 });
    expect(model.sections.map((s) => s.collapsed)).toEqual([true, true, false]);
  });

  it("leaves a section the user opened or closed alone", () => {
    const model = twoSteps();
    const build = model.sections[1]!;
    model.toggle(build, false);
    model.ingest(stepStart("test", 2));
    expect(build.collapsed).toBe(false);
  });

  it("maps rows to headers and lines, skipping folded sections", () => {
    const model = twoSteps();
    model.ingest(stepStart("test", 2));
    model.ingest(output("test", "t1\nt2\nt3\n"));
    // setup (folded), build (folded), test with 3 lines
    expect(model.rowCount).toBe(6);
    expect(model.row(0)).toMatchObject({ kind: "header", section: { key: "setup" } });
    expect(model.row(1)).toMatchObject({ kind: "header", section: { key: "build" } });
    expect(model.row(2)).toMatchObject({ kind: "header", section: { key: "test" } });
    expect(model.row(5)).toMatchObject({ kind: "line", line: 2, section: { key: "test" } });
    expect(model.row(6)).toBeUndefined();
    model.toggle(model.sections[1]!);
    expect(model.rowCount).toBe(8);
    expect(model.row(3)).toMatchObject({ kind: "line", line: 1, section: { key: "build" } });
    expect(model.headerRow(model.sections[2]!)).toBe(4);
  });

  it("summarises a finished step: how it ended, its duration and peak memory", () => {
    const model = twoSteps();
    expect(LogModel.summary(model.sections[1]!)).toEqual(["exit 0", "1.5 s", "peak 5.0 MiB"]);
  });

  it("marks steps that never ran as skipped when the job ends, and a running one as failed", () => {
    const model = new LogModel();
    model.setSteps([
      { id: "a", status: "pending" },
      { id: "b", status: "pending" },
    ]);
    model.ingest(stepStart("a", 1));
    model.ingest({ type: "job-end", status: "error", reason: "agent-lost", cause: "platform" });
    expect(model.sections.slice(1).map((s) => s.status)).toEqual(["failed", "skipped"]);
    expect(model.jobStatus).toBe("error");
  });

  it("links the CloudWatch copy only when its URL is https", () => {
    const model = new LogModel();
    const logs = { region: "eu-west-1", group: "/g", stream: "s" };
    model.ingest({
      type: "status",
      status: "assigned",
      at: AT,
      logs: { ...logs, url: "https://console.example/x" },
    });
    model.ingest({
      type: "status",
      status: "assigned",
      at: AT,
      logs: { ...logs, url: "javascript:alert(1)" },
    });
    const [, first, , second] = model.sections[0]!.html;
    expect(first).toContain('<a class="cloudwatch" href="https://console.example/x"');
    expect(second).not.toContain("<a");
    expect(second).toContain("eu-west-1 /g s");
  });
});

describe("web view log model: a log larger than the page keeps", () => {
  const lines = (from: number, count: number) =>
    Array.from({ length: count }, (_, i) => `line ${from + i}\n`).join("");

  it("drops the oldest lines past the budget, down to three quarters of it, and counts them", () => {
    const model = new LogModel({ maxLines: 100, maxChars: 1_000_000 });
    model.ingest(stepStart("s", 1, 1));
    model.ingest(output("s", lines(1, 100)));
    const step = model.sections[1]!;
    expect([step.dropped, step.html.length]).toEqual([0, 100]);
    // The 101st line (the setup section holds none) goes past the budget.
    model.ingest(output("s", lines(101, 1)));
    expect([step.dropped, step.html.length]).toEqual([26, 75]);
    expect(step.html[0]).toBe("line 27");
    expect([step.at.length, step.stderr.length, step.continued.length]).toEqual([75, 75, 75]);
    expect(model.lineCount).toBe(101);
    expect(model.droppedLines).toBe(26);
    // Rows: setup header, step header, the dropped note, then the lines held.
    expect(model.rowCount).toBe(2 + 1 + 75);
    expect(model.row(2)).toMatchObject({ kind: "dropped", section: { key: "s" } });
    expect(model.row(3)).toMatchObject({ kind: "line", line: 0 });
    expect(model.row(77)).toMatchObject({ kind: "line", line: 74 });
    expect(model.row(78)).toBeUndefined();
    model.toggle(step, true);
    expect(model.rowCount).toBe(2);
  });

  it("drops the earliest steps' lines first, keeps the setup section and a line still being written", () => {
    const model = new LogModel({ maxLines: 1_000_000, maxChars: 400 });
    model.ingest({ type: "status", status: "assigned", at: AT, agent: "a1" });
    model.ingest(stepStart("a", 1));
    model.ingest(output("a", "x".repeat(150)));
    model.ingest(output("a", "\n"));
    model.ingest(stepStart("b", 2));
    model.ingest(output("b", `${"y".repeat(150)}\n${"z".repeat(50)}`));
    expect(model.sections.map((s) => s.dropped)).toEqual([0, 0, 0]);
    // Past 400 characters: step a's line goes first; b's open line stays whatever its size.
    model.ingest(output("b", "z".repeat(100)));
    expect(model.sections.map((s) => s.dropped)).toEqual([0, 1, 1]);
    expect(model.sections[0]!.html).toHaveLength(1);
    expect(model.sections[2]!.html).toEqual(["z".repeat(150)]);
    model.ingest(output("b", "z".repeat(300)));
    expect(model.sections[2]!.html).toEqual(["z".repeat(450)]);
    model.ingest(output("b", "\ndone\n"));
    expect(model.sections[2]!.html).toEqual(["done"]);
    expect(model.lineCount).toBe(1 + 1 + 3);
  });

  it("holds a 50 MB log of ordinary lines whole by default", () => {
    const line =
      "\u001b[32mline 0000001\u001b[0m xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n";
    const count = Math.ceil((50 * 1024 * 1024) / line.length);
    expect(count).toBeLessThan(DEFAULT_LOG_BUDGET.maxLines);
    const model = new LogModel();
    model.ingest(stepStart("s", 1, 1));
    const chunk = line.repeat(1000);
    for (let i = 0; i < count / 1000; i++) model.ingest(output("s", chunk));
    expect(model.droppedLines).toBe(0);
    expect(model.lineCount).toBeGreaterThanOrEqual(count);
  });
});

describe("web view job phases", () => {
  const base = {
    id: "j",
    labels: [],
    retry: { infrastructure: 0 },
    attempts: [],
    logBytes: 0,
    submittedAt: "2026-01-01T00:00:00.000Z",
  };

  it("orders queue, agent start and steps on one axis, using each step's own duration", () => {
    const phases = jobPhases(
      {
        ...base,
        status: "succeeded",
        assignedAt: "2026-01-01T00:00:02.000Z",
        startedAt: "2026-01-01T00:00:02.500Z",
        endedAt: "2026-01-01T00:00:05.000Z",
        steps: [
          {
            id: "1",
            name: "Build",
            status: "succeeded",
            startedAt: "2026-01-01T00:00:02.500Z",
            endedAt: "2026-01-01T00:00:04.100Z",
            durationMs: 1500,
          },
          { id: "2", status: "skipped" },
        ],
      },
      Date.parse("2026-01-01T01:00:00.000Z"),
    );
    expect(phases.map((p) => [p.kind, p.label, p.to - p.from, p.open])).toEqual([
      ["queue", "queued", 2000, false],
      ["start", "agent ready", 500, false],
      ["step", "Build", 1500, false],
    ]);
  });

  it("runs a phase still going up to now", () => {
    const now = Date.parse("2026-01-01T00:00:03.000Z");
    const record = { ...base, status: "queued" as const, steps: [] };
    expect(jobPhases(record, now)).toEqual([
      { kind: "queue", label: "queued", from: Date.parse(base.submittedAt), to: now, open: true },
    ]);
    expect(waitMs(record, now)).toBe(3000);
    expect(runMs(record, now)).toBeUndefined();
  });

  it("shows the launch when the controller records one", () => {
    const phases = jobPhases(
      {
        ...base,
        status: "running",
        launchedAt: "2026-01-01T00:00:00.100Z",
        connectedAt: "2026-01-01T00:00:01.100Z",
        startedAt: "2026-01-01T00:00:01.300Z",
        steps: [],
      },
      Date.parse("2026-01-01T00:00:02.000Z"),
    );
    expect(phases.map((p) => [p.kind, p.to - p.from])).toEqual([
      ["queue", 100],
      ["launch", 1000],
      ["start", 200],
    ]);
  });
});

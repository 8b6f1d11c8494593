import { describe, expect, it } from "vitest";
import {
  colorEnabled,
  createRenderer,
  type JobEvent,
  type JobRecord,
  renderOutcome,
} from "../../controller/index.ts";

function render(events: JobEvent[], color = false): string {
  let out = "";
  const renderer = createRenderer({ write: (text) => (out += text), color });
  for (const event of events) renderer(event);
  return out;
}

const at = "2024-01-01T00:00:00.000Z";
const ESC = "\u001b";
const start = (index: number, total: number, name?: string): JobEvent => ({
  type: "step-start",
  stepId: String(index),
  index,
  total,
  at,
  ...(name !== undefined ? { name } : {}),
});
const output = (text: string, stream: "stdout" | "stderr" = "stdout"): JobEvent => ({
  type: "output",
  stepId: "1",
  stream,
  text,
});
const end = (overrides: Partial<Extract<JobEvent, { type: "step-end" }>> = {}): JobEvent => ({
  type: "step-end",
  stepId: "1",
  index: 1,
  total: 2,
  status: "succeeded",
  exitCode: 0,
  signal: null,
  reason: "exit",
  durationMs: 12,
  ...overrides,
});

describe("createRenderer (no colour)", () => {
  it("prints a step header with its place and name", () => {
    expect(render([start(1, 2, "build")])).toBe("==> [1/2] build\n");
  });

  it("names an unnamed step by its id", () => {
    expect(render([{ type: "step-start", stepId: "compile", index: 2, total: 3, at }])).toBe(
      "==> [2/3] step compile\n",
    );
  });

  it("prints a whole step: header, output, footer", () => {
    const text = render([start(1, 2, "build"), output("hello\n"), end()]);
    expect(text).toBe("==> [1/2] build\nhello\n<== [1/2] exit 0 in 12 ms\n");
  });

  it("passes stderr text through unchanged", () => {
    const text = render([start(1, 1, "s"), output("out\n"), output("err\n", "stderr")]);
    expect(text).toBe("==> [1/1] s\nout\nerr\n");
    expect(text).not.toContain("\u001b[");
  });

  it("inserts a newline before the footer when the output did not end with one", () => {
    const text = render([start(1, 2, "build"), output("no newline"), end()]);
    expect(text).toBe("==> [1/2] build\nno newline\n<== [1/2] exit 0 in 12 ms\n");
  });

  it("does not double the newline when the output ended with one, and ignores empty output", () => {
    const text = render([start(1, 2, "build"), output("line\n"), output(""), end()]);
    expect(text).toBe("==> [1/2] build\nline\n<== [1/2] exit 0 in 12 ms\n");
  });

  it("inserts a newline before the next header too", () => {
    const text = render([start(1, 2, "a"), output("partial"), start(2, 2, "b")]);
    expect(text).toBe("==> [1/2] a\npartial\n==> [2/2] b\n");
  });

  it("shows a failing exit code and a duration in seconds", () => {
    const text = render([end({ status: "failed", exitCode: 3, durationMs: 2_345 })]);
    expect(text).toBe("<== [1/2] exit 3 in 2.3 s\n");
  });

  it("shows the reason and signal of a step that timed out", () => {
    const text = render([
      end({
        status: "failed",
        exitCode: null,
        signal: "SIGTERM",
        reason: "timeout",
        durationMs: 500,
        message: "step timed out after 500 ms",
      }),
    ]);
    expect(text).toBe("<== [1/2] timeout (SIGTERM) in 500 ms - step timed out after 500 ms\n");
  });

  it("shows the reason alone when there is no signal", () => {
    const text = render([end({ status: "failed", exitCode: null, reason: "cancelled", durationMs: 7 })]);
    expect(text).toBe("<== [1/2] cancelled in 7 ms\n");
  });

  it("prints the job-end line for success", () => {
    expect(render([{ type: "job-end", status: "succeeded", reason: "exit", durationMs: 1_500 }])).toBe(
      "=== job succeeded in 1.5 s\n",
    );
  });

  it("says in words why a job failed: what the reason means and whom the cause blames", () => {
    const text = render([
      {
        type: "job-end",
        status: "failed",
        reason: "exit",
        cause: "user",
        message: "step 2 exited with 1",
        durationMs: 40,
      },
    ]);
    expect(text).toBe(
      "=== job failed in 40 ms: a step exited with a non-zero code (exit, user: the job's own commands failed; running it again unchanged will fail the same way)\n=== step 2 exited with 1\n",
    );
  });

  it("says a platform failure is not the job's fault, without a duration", () => {
    const text = render([{ type: "job-end", status: "error", reason: "agent-lost", cause: "platform" }]);
    expect(text).toBe(
      "=== job error in 0 ms: the agent was lost before the job ended (agent-lost, platform: the platform failed the job, not its commands; running it again may succeed)\n",
    );
  });

  it("says the reason is unknown when a failed job has none", () => {
    expect(render([{ type: "job-end", status: "failed", durationMs: 1 }])).toBe(
      "=== job failed in 1 ms: unknown reason\n",
    );
  });

  it("ends the last output line before the job-end line", () => {
    const text = render([output("tail"), { type: "job-end", status: "succeeded", durationMs: 3 }]);
    expect(text).toBe("tail\n=== job succeeded in 3 ms\n");
  });

  it("prints the assignment status and nothing for other statuses", () => {
    const text = render([
      { type: "status", status: "queued", at },
      { type: "status", status: "assigned", at, agent: "agent-7" },
      { type: "status", status: "running", at },
    ]);
    expect(text).toBe("--- job assigned to agent agent-7\n");
  });
});

describe("createRenderer (colour)", () => {
  it("paints stderr red and leaves stdout alone, ending the colour before each newline", () => {
    const text = render([output("out\n"), output("err 1\nerr 2\n", "stderr")], true);
    expect(text).toBe("out\n\u001b[31merr 1\u001b[39m\n\u001b[31merr 2\u001b[39m\n");
  });

  it("never leaves a colour open across a newline, in any line it paints", () => {
    const text = render(
      [
        {
          type: "status",
          status: "assigned",
          at,
          agent: "a",
          logs: { region: "r", group: "g", stream: "s", url: "u" },
        },
        start(1, 1, "s"),
        output("x\ny", "stderr"),
        end({ status: "failed", exitCode: 2 }),
        { type: "job-end", status: "failed", reason: "exit", cause: "user", message: "m\nn", durationMs: 1 },
      ],
      true,
    );
    for (const line of text.split("\n")) {
      const opens = line.match(new RegExp(`${ESC}\\[(?:1|2|31|32|36)m`, "g"))?.length ?? 0;
      const closes = line.match(new RegExp(`${ESC}\\[(?:22|39)m`, "g"))?.length ?? 0;
      expect({ line, balanced: opens === closes }).toEqual({ line, balanced: true });
    }
    expect(text).toContain("\u001b[1m\u001b[36m==> [1/1] s\u001b[39m\u001b[22m\n");
  });
});

describe("colorEnabled", () => {
  const tty = { isTTY: true, hasColors: () => true };
  const pipe = { isTTY: false };
  it.each([
    ["a terminal", tty, {}, true],
    ["a pipe", pipe, {}, false],
    ["a dumb terminal", { isTTY: true }, { TERM: "dumb" }, false],
    ["NO_COLOR=1 on a terminal", tty, { NO_COLOR: "1" }, false],
    ["NO_COLOR empty (ignored, as no-color.org says)", tty, { NO_COLOR: "" }, true],
    ["NODE_DISABLE_COLORS on a terminal", tty, { NODE_DISABLE_COLORS: "1" }, false],
    ["FORCE_COLOR=1 on a pipe", pipe, { FORCE_COLOR: "1" }, true],
    ["FORCE_COLOR empty on a pipe", pipe, { FORCE_COLOR: "" }, true],
    ["FORCE_COLOR=3 on a pipe", pipe, { FORCE_COLOR: "3" }, true],
    ["FORCE_COLOR=0 on a terminal", tty, { FORCE_COLOR: "0" }, false],
    ["FORCE_COLOR=false on a terminal", tty, { FORCE_COLOR: "false" }, false],
    ["FORCE_COLOR=1 beating NO_COLOR (as Node does)", pipe, { FORCE_COLOR: "1", NO_COLOR: "1" }, true],
  ])("%s", (_name, stream, env, expected) => {
    expect(colorEnabled(stream, env as NodeJS.ProcessEnv)).toBe(expected);
  });
});

describe("renderOutcome", () => {
  const record = (status: JobRecord["status"], steps: JobRecord["steps"]): JobRecord => ({
    id: "j",
    labels: [],
    status,
    retry: { infrastructure: 0 },
    attempts: [],
    submittedAt: at,
    logBytes: 0,
    steps,
  });

  it("lists the failed step with how it ended and every skipped step", () => {
    const text = renderOutcome(
      record("failed", [
        { id: "1", name: "Build", status: "succeeded", reason: "exit", exitCode: 0 },
        { id: "2", name: "Test", status: "failed", reason: "exit", exitCode: 3 },
        { id: "3", name: "Deploy", status: "skipped" },
        { id: "notify", status: "skipped" },
      ]),
      false,
    );
    expect(text).toBe(
      "=== failed: [2/4] Test (exit 3)\n=== skipped: [3/4] Deploy\n=== skipped: [4/4] step notify\n",
    );
  });

  it("says nothing for a job that succeeded", () => {
    expect(renderOutcome(record("succeeded", [{ id: "1", status: "succeeded" }]), false)).toBe("");
  });

  it("paints each line on its own", () => {
    const text = renderOutcome(record("failed", [{ id: "1", status: "skipped" }]), true);
    expect(text).toBe("\u001b[2m=== skipped: [1/1] step 1\u001b[22m\n");
  });

  it("announces a retry: the attempt, its agent and platform, and why the previous one ended", () => {
    let out = "";
    const render = createRenderer({ write: (text) => (out += text), color: false });
    const attempt = {
      type: "attempt" as const,
      at: "t",
      agent: "a-1",
      platform: "ecs",
      labels: [],
      logOffset: 0,
    };
    render({ ...attempt, attempt: 1 });
    render({
      ...attempt,
      attempt: 2,
      agent: "a-2",
      template: "fargate",
      retryOf: { cause: "interrupted", message: "SIGTERM" },
    });
    expect(out).toBe(
      "--- attempt 2 on agent a-2 (ecs, fargate): the previous one ended interrupted: SIGTERM\n",
    );
  });
});

describe("createRenderer: artifacts", () => {
  const listing = { entries: 2, skipped: [], skippedCount: 0, unmatched: [] as string[], attempt: 1, at };
  it("says what was kept, and the patterns that matched nothing (a typo shows)", () => {
    expect(
      render([{ type: "artifacts", status: "stored", ...listing, bytes: 2048, sha256: "a".repeat(64) }]),
    ).toBe("--- artifacts: 2 entries, 2.0 KiB\n");
    expect(
      render([
        {
          type: "artifacts",
          status: "stored",
          ...listing,
          unmatched: ["dsit/**"],
          skippedCount: 1,
          bytes: 2048,
          sha256: "a".repeat(64),
        },
      ]),
    ).toBe(
      "--- artifacts: 2 entries, 2.0 KiB; matched nothing: dsit/**; 1 left out (links leaving the workspace, special files)\n",
    );
  });

  it("says why they were refused, naming the entry", () => {
    expect(
      render([
        {
          type: "artifacts",
          status: "failed",
          ...listing,
          code: "AGENT_ERR_ARCHIVE_TOO_MANY_ENTRIES",
          message: "too many",
          entry: "dist/x",
        },
      ]),
    ).toBe("--- artifacts refused: AGENT_ERR_ARCHIVE_TOO_MANY_ENTRIES (entry dist/x): too many\n");
  });
});

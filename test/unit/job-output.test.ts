import { describe, expect, it } from "vitest";
import {
  createLogger,
  type Job,
  type JobEventTarget,
  JobLogLines,
  type JobOutcome,
  JobOutputTee,
  type StepOutcome,
} from "../../agent-core/index.ts";

const job: Job = {
  id: "j1",
  name: "build",
  env: {},
  mask: [],
  steps: [
    { id: "s1", name: "Compile", run: "true", env: {}, continueOnError: false },
    { id: "s2", run: "true", env: {}, continueOnError: false },
  ],
};
const ended = (overrides: Partial<StepOutcome> = {}): StepOutcome => ({
  exitCode: 0,
  signal: null,
  durationMs: 12,
  reason: "exit",
  stdoutBytes: 3,
  stderrBytes: 0,
  peakRssBytes: null,
  ...overrides,
});
const flow = { hasRoom: () => true, waitForRoom: () => Promise.resolve() };

function recorder(): JobEventTarget & { events: unknown[][] } {
  const events: unknown[][] = [];
  return {
    events,
    stepStart: (...args) => void events.push(["stepStart", ...args]),
    output: (...args) => void events.push(["output", args[0], args[1], args[2], args[3].toString()]),
    stepEnd: (...args) => void events.push(["stepEnd", ...args]),
  };
}

describe("the output tee", () => {
  it("sends every event to each destination, and writes the headers and footers once, for the lines", () => {
    const lines: string[] = [];
    const events = recorder();
    const tee = new JobOutputTee({
      job,
      agentName: "agent-1",
      events: [events],
      lines: [new JobLogLines({ write: (line) => lines.push(line) })],
      flow,
      logger: createLogger({ write: () => {} }),
    });
    tee.jobStart();
    tee.stepStart("s1", 1_000);
    tee.output("s1", "stdout", 0, Buffer.from("hi\n"));
    tee.stepEnd("s1", ended());
    tee.stepStart("s2", 2_000);
    tee.stepEnd("s2", ended({ exitCode: null, signal: "SIGTERM", reason: "cancelled", message: "stopped" }));
    tee.jobEnd({
      status: "failed",
      reason: "cancelled",
      durationMs: 40,
      steps: [],
      agentPeakRssBytes: 1,
      diskUsedBytes: null,
      message: "stopped",
    } as JobOutcome);
    expect(lines).toEqual([
      "=== job j1 (build) on agent agent-1",
      "==> [1/2] Compile",
      "hi",
      "<== [1/2] Compile: exit 0 in 12 ms",
      "==> [2/2] step s2",
      "<== [2/2] step s2: cancelled (SIGTERM) in 12 ms - stopped",
      "=== job failed (cancelled) in 40 ms: stopped",
    ]);
    expect(events.events.map((e) => e[0])).toEqual([
      "stepStart",
      "output",
      "stepEnd",
      "stepStart",
      "stepEnd",
    ]);
    expect(events.events[1]).toEqual(["output", "s1", "stdout", 0, "hi\n"]);
    expect(tee.flow).toBe(flow);
  });

  it("a destination that throws is counted and warned about once; the others still get everything", () => {
    const warnings: string[] = [];
    const healthy = recorder();
    const broken: JobEventTarget = {
      stepStart: () => {
        throw new Error("sink down");
      },
      output: () => {
        throw new Error("sink down");
      },
      stepEnd: () => {
        throw new Error("sink down");
      },
    };
    const tee = new JobOutputTee({
      job,
      agentName: "a",
      events: [broken, healthy],
      lines: [],
      flow,
      logger: createLogger({ write: (line) => warnings.push(line) }),
    });
    tee.stepStart("s1", 1);
    tee.output("s1", "stderr", 0, Buffer.from("x"));
    tee.stepEnd("s1", ended());
    expect(healthy.events).toHaveLength(3);
    expect(tee.failures).toBe(3);
    expect(warnings).toHaveLength(1);
    expect(JSON.parse(warnings[0]!)).toMatchObject({ level: "warn", error: { message: "sink down" } });
  });
});

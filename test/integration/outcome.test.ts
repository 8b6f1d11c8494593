import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CloseCode, ExitCode, RESUME_HEADER, runAgent, signalExitMs } from "../../agent-core/index.ts";
import {
  type AgentTraffic,
  ackEverything,
  fakeController,
  rawAgent,
  waitForType,
} from "../support/fake-peers.ts";
import { agentConfigFor, captureLogger, spawnEntrypoint, startController } from "../support/harness.ts";

/** The step: a background process that ignores SIGTERM, and a foreground one. */
const STUBBORN = "(trap '' TERM; exec sleep 30) & echo started $!; sleep 30";

/** Starts the real container entrypoint bundle with short timings. */
function entrypoint(url: string, secret: string, name: string) {
  return spawnEntrypoint(["-url", url, "-secret", secret, "-name", name], {
    AGENT_GRACE_MS: "200",
    AGENT_DRAIN_MS: "200",
    AGENT_RECONNECT_TIMEOUT_MS: "300",
    AGENT_CONNECT_TIMEOUT_MS: "3000",
  });
}

/** True while `pid` is a live process (a zombie counts as gone). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** The pid the step printed (`started <pid>`), from the output frames the controller got. */
function backgroundPid(binary: Buffer[]): number {
  const text = binary.map((frame) => frame.subarray(16 + frame.readUInt16BE(2)).toString()).join("");
  return Number(/started (\d+)/.exec(text)?.[1]);
}

describe("the process never exits before its outcome is decided", () => {
  it.each([
    ["a background process that ignores SIGTERM", STUBBORN],
    ["a plain exec sleep", "echo started $$; exec sleep 30"],
  ])(
    "controller closes with 1000 mid-job (%s): exit 3 CONNECTION_LOST, every process killed, summary written",
    async (_what, run) => {
      let traffic: AgentTraffic | undefined;
      const fake = await fakeController((socket, t) => {
        traffic = t;
        ackEverything(socket);
        void waitForType(t, "hello").then(async () => {
          socket.send(JSON.stringify({ v: 1, type: "job", job: { id: "j1", steps: [{ id: "s1", run }] } }));
          while (t.binary.length === 0) await new Promise((r) => setTimeout(r, 10));
          socket.close(CloseCode.normal, "controller is done with you");
        });
      });
      try {
        const { code, lines } = await entrypoint(fake.url, "secret-of-test", "closed-on").done;
        expect(code).toBe(ExitCode.controllerFailure);
        expect(lines.at(-1)).toMatchObject({
          msg: "agent finished",
          exitCode: ExitCode.controllerFailure,
          code: "AGENT_ERR_CONNECTION_LOST",
        });
        const pid = backgroundPid(traffic!.binary);
        expect(pid).toBeGreaterThan(0);
        expect(alive(pid)).toBe(false);
      } finally {
        await fake.close();
      }
    },
  );

  it("the reference controller stopped mid-job, 20 times: exit 3 all 20 times, nothing left running", async () => {
    const once = async (i: number) => {
      const ctl = await startController();
      try {
        const name = `stopped-${i}`;
        const record = ctl.controller.submit({ steps: [{ run: STUBBORN }] });
        const run = entrypoint(ctl.controller.url, ctl.controller.secretFor(name), name);
        for await (const event of ctl.client.events(record.id)) if (event.type === "output") break;
        const pid = Number(/started (\d+)/.exec((await ctl.client.log(record.id)).toString())?.[1]);
        await ctl.controller.stop();
        const { code, lines } = await run.done;
        return { code, last: lines.at(-1), pid, stillAlive: alive(pid) };
      } finally {
        await ctl.close().catch(() => {});
      }
    };
    const results = [];
    // Four at a time: 20 stops in a few seconds on two cores.
    for (let batch = 0; batch < 5; batch++) {
      results.push(...(await Promise.all([0, 1, 2, 3].map((j) => once(batch * 4 + j)))));
    }
    expect(results.map((r) => r.code)).toEqual(Array(20).fill(ExitCode.controllerFailure));
    for (const result of results) {
      expect(result.last).toMatchObject({ msg: "agent finished", code: "AGENT_ERR_CONNECTION_LOST" });
      expect(result.pid).toBeGreaterThan(0);
      expect(result.stillAlive).toBe(false);
    }
  });
});

describe("a signal while the controller is gone", () => {
  it.each([1, 2])(
    "SIGTERM x%s while the agent resumes a dropped session: exit 143 by itself, summary written, before the last-resort timer, nothing left",
    async (signals) => {
      const name = `term-resuming-${signals}`;
      let traffic: AgentTraffic | undefined;
      const fake = await fakeController((socket, t) => {
        traffic = t;
        ackEverything(socket);
        void waitForType(t, "hello").then(async () => {
          socket.send(
            JSON.stringify({ v: 1, type: "job", job: { id: "j1", steps: [{ id: "s1", run: STUBBORN }] } }),
          );
          while (t.binary.length === 0) await new Promise((r) => setTimeout(r, 10));
          socket.terminate();
          void fake.close(); // gone for good: the agent keeps trying to resume
        });
      });
      const graceMs = 300;
      const drainMs = 200;
      const run = spawnEntrypoint(["-url", fake.url, "-secret", "secret-of-test", "-name", name], {
        AGENT_GRACE_MS: String(graceMs),
        AGENT_DRAIN_MS: String(drainMs),
        AGENT_RECONNECT_TIMEOUT_MS: "60000",
        AGENT_MODE: "native",
      });
      // Resuming: the connection dropped after the first output.
      while (traffic === undefined || fake.closes.length === 0) await new Promise((r) => setTimeout(r, 10));
      const pid = backgroundPid(traffic.binary);
      run.child.kill("SIGTERM");
      if (signals === 2) run.child.kill("SIGTERM");
      const { code, lines } = await run.done;
      expect(code).toBe(ExitCode.sigterm);
      // Ended by its own bounded wait (the job's end could not be reported), not by the backstop.
      expect(lines.some((l) => l.msg === "shutdown took too long; exiting")).toBe(false);
      expect(lines.at(-1)).toMatchObject({
        msg: "agent finished",
        exitCode: ExitCode.sigterm,
        code: "AGENT_ERR_CONNECTION_LOST",
        summary: expect.stringMatching(
          /^interrupted, and the end of job j1 could not be reported within 4000 ms/,
        ),
      });
      expect(alive(pid)).toBe(false);
      expect(signalExitMs({ graceMs, drainMs })).toBe(graceMs + drainMs + 5_000);
    },
  );
});

describe("the job's end when its ack is lost", () => {
  /**
   * A fake controller that takes the job's end, drops the connection instead of acknowledging
   * it, and answers the resume with `onResume`.
   */
  async function ackLost(onResume: ((socket: import("ws").WebSocket, jobEndSeq: number) => void) | "gone") {
    let connections = 0;
    let jobEndSeq = 0;
    const fake = await fakeController((socket, traffic) => {
      connections++;
      if (connections === 1) {
        // Registered before the acker: job-end is never acknowledged.
        socket.on("message", (data, isBinary) => {
          if (isBinary) return;
          const message = JSON.parse(data.toString()) as { type: string; seq: number };
          if (message.type === "job-end") {
            jobEndSeq = message.seq;
            acks.stop();
            if (onResume === "gone") void fake.close();
            else socket.terminate();
          }
        });
        const acks = ackEverything(socket);
        void waitForType(traffic, "hello").then(() =>
          socket.send(
            JSON.stringify({ v: 1, type: "job", job: { id: "j1", steps: [{ id: "s1", run: "echo done" }] } }),
          ),
        );
        return;
      }
      if (onResume !== "gone") void waitForType(traffic, "hello").then(() => onResume(socket, jobEndSeq));
    });
    return fake;
  }

  it("the controller stored it and says so on resume: exit by the job's outcome (0), not 3", async () => {
    const fake = await ackLost((socket, seq) =>
      socket.send(JSON.stringify({ v: 1, type: "resume", jobId: "j1", seq, ended: true })),
    );
    try {
      const { logger, entries } = captureLogger();
      const outcome = await runAgent(
        agentConfigFor({ url: fake.url, secretFor: () => "fake-secret" } as never, "ack-lost"),
        {
          logger,
        },
      );
      expect(outcome.exitCode).toBe(ExitCode.ok);
      expect(outcome.error).toBeUndefined();
      expect(entries().some((e) => e.msg === "session resumed" && e.jobEnded === true)).toBe(true);
      await expect.poll(() => fake.closes.at(-1)?.code).toBe(CloseCode.normal);
    } finally {
      await fake.close();
    }
  });

  it("the controller refuses the resume (4007): AGENT_ERR_CONNECTION_LOST, exit 3", async () => {
    const fake = await ackLost((socket) => socket.close(CloseCode.resumeRefused, "cannot resume job j1"));
    try {
      const { logger } = captureLogger();
      const outcome = await runAgent(
        agentConfigFor({ url: fake.url, secretFor: () => "fake-secret" } as never, "refused"),
        {
          logger,
        },
      );
      expect(outcome.exitCode).toBe(ExitCode.controllerFailure);
      expect(outcome.error?.code).toBe("AGENT_ERR_CONNECTION_LOST");
      expect(outcome.job?.status).toBe("succeeded");
    } finally {
      await fake.close();
    }
  });

  it("the controller never comes back after job-end: AGENT_ERR_CONNECTION_LOST (not an ack timeout), exit 3", async () => {
    const fake = await ackLost("gone");
    try {
      const { logger } = captureLogger();
      const started = Date.now();
      const config = agentConfigFor({ url: fake.url, secretFor: () => "fake-secret" } as never, "orphaned", {
        reconnectTimeoutMs: 500,
      });
      const outcome = await runAgent(config, { logger });
      expect(outcome.exitCode).toBe(ExitCode.controllerFailure);
      expect(outcome.error?.code).toBe("AGENT_ERR_CONNECTION_LOST");
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await fake.close();
    }
  });

  it("the reference controller answers a resume of a job its agent ended with `resume` ended: true", async () => {
    const ctl = await startController();
    try {
      const name = "ended-agent";
      const record = ctl.controller.submit({ steps: [{ id: "s1", run: "true" }] });
      const first = await rawAgent(ctl.controller, name);
      first.hello();
      const job = (await first.next("job")).job as { id: string };
      first.sendJson({
        v: 1,
        type: "step-start",
        seq: 1,
        jobId: job.id,
        stepId: "s1",
        startedAt: Date.now(),
      });
      first.sendJson({
        v: 1,
        type: "step-end",
        seq: 2,
        jobId: job.id,
        stepId: "s1",
        exitCode: 0,
        signal: null,
        durationMs: 1,
        reason: "exit",
        stdoutBytes: 0,
        stderrBytes: 0,
      });
      first.sendJson({
        v: 1,
        type: "job-end",
        seq: 3,
        jobId: job.id,
        status: "succeeded",
        reason: "exit",
        durationMs: 2,
      });
      expect((await ctl.controller.waitForJob(record.id)).status).toBe("succeeded");
      first.socket.terminate(); // as if the ack never reached the agent
      const second = await rawAgent(ctl.controller, name, { [RESUME_HEADER]: job.id });
      second.sendJson({
        v: 1,
        type: "hello",
        agent: { name, labels: [], runtime: "local", version: "test" },
        limits: { deadlineAt: null, diskBudgetBytes: null },
        capabilities: [],
        resume: { jobId: job.id },
      });
      expect(await second.next("resume")).toEqual({
        v: 1,
        type: "resume",
        jobId: job.id,
        seq: 3,
        ended: true,
      });
      second.socket.close(CloseCode.normal, "job done");
      expect((await second.closed).code).toBe(CloseCode.normal);
      // A job that ended without its agent's job-end (cancelled while queued) is still refused.
      const other = ctl.controller.submit({ steps: [{ run: "true" }] });
      ctl.controller.cancel(other.id);
      const third = await rawAgent(ctl.controller, "another", { [RESUME_HEADER]: other.id });
      third.sendJson({
        v: 1,
        type: "hello",
        agent: { name: "another", labels: [], runtime: "local", version: "test" },
        limits: { deadlineAt: null, diskBudgetBytes: null },
        capabilities: [],
        resume: { jobId: other.id },
      });
      expect((await third.closed).code).toBe(CloseCode.resumeRefused);
    } finally {
      await ctl.close();
    }
  });
});

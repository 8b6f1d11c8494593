import { describe, expect, it } from "vitest";
import { CloseCode, ExitCode, runAgent } from "../../agent-core/index.ts";
import {
  type AgentTraffic,
  ackEverything,
  fakeController,
  sendInOneRead,
  waitForType,
} from "../support/fake-peers.ts";
import { agentConfigFor, captureLogger, spawnEntrypoint } from "../support/harness.ts";

const jobOf = (id: string, run: string) => ({
  v: 1,
  type: "job",
  job: { id, steps: [{ id: "s1", run }] },
});

/** An in-process agent of a fake controller, with short timings. */
function agentOf(url: string, name: string, overrides = {}) {
  return agentConfigFor({ url, secretFor: () => "secret-of-test" } as never, name, overrides);
}

async function until(predicate: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const started = Date.now();
  while (!predicate()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Starts the real container entrypoint bundle (a fresh process). */
function entrypoint(url: string, name: string) {
  return spawnEntrypoint(["-url", url, "-secret", "secret-of-test", "-name", name], {
    AGENT_GRACE_MS: "300",
    AGENT_DRAIN_MS: "200",
  });
}

describe("frames that arrive together meet the right state", () => {
  it("a job sent right behind the 101, before the agent's hello, is run and not dropped", async () => {
    const fake = await fakeController((socket) => {
      ackEverything(socket);
      // Before any hello: while the agent is still measuring its disk for it.
      socket.send(JSON.stringify(jobOf("early", "echo ran early")));
    });
    try {
      const { logger } = captureLogger();
      const outcome = await runAgent(agentOf(fake.url, "early-bird", { idleTimeoutMs: 3_000 }), { logger });
      expect(outcome.exitCode).toBe(ExitCode.ok);
      expect(outcome.jobId).toBe("early");
      expect(outcome.job?.steps[0]?.outcome).toMatchObject({ reason: "exit", exitCode: 0, stdoutBytes: 10 });
    } finally {
      await fake.close();
    }
  });

  it("a second job in the same read is refused with 4003; the first job's step is stopped; exit 3", async () => {
    const fake = await fakeController((socket, traffic) => {
      void waitForType(traffic, "hello").then(() =>
        sendInOneRead(socket, [jobOf("j1", "sleep 30"), jobOf("j2", "echo other")]),
      );
    });
    try {
      const { logger } = captureLogger();
      const started = Date.now();
      const outcome = await runAgent(agentOf(fake.url, "twice"), { logger });
      expect(outcome.exitCode).toBe(ExitCode.controllerFailure);
      expect(outcome.error).toMatchObject({ code: "AGENT_ERR_PROTOCOL", closeCode: CloseCode.outOfOrder });
      expect(outcome.error?.message).toMatch(/a second "job" \(j2\) while job j1 runs/);
      await until(() => fake.closes.length > 0, "the close");
      expect(fake.closes[0]?.code).toBe(CloseCode.outOfOrder);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await fake.close();
    }
  });

  it("resume + cancel in the same read: the session is resumed and the job cancelled, not a protocol error", async () => {
    let connections = 0;
    const fake = await fakeController((socket, traffic) => {
      connections++;
      if (connections === 1) {
        ackEverything(socket);
        void waitForType(traffic, "hello").then(async () => {
          socket.send(JSON.stringify(jobOf("j1", "echo started; sleep 30")));
          await until(() => traffic.binary.length > 0, "output");
          socket.terminate(); // a dropped connection (1006): the agent resumes
        });
        return;
      }
      const acks = ackEverything(socket);
      void waitForType(traffic, "hello").then((hello) => {
        expect(hello.resume).toEqual({ jobId: "j1" });
        sendInOneRead(socket, [
          { v: 1, type: "resume", jobId: "j1", seq: 2 },
          { v: 1, type: "cancel", jobId: "j1", reason: "cancelled while away" },
        ]);
        void acks;
      });
    });
    try {
      const { logger, entries } = captureLogger();
      const outcome = await runAgent(agentOf(fake.url, "resumer"), { logger });
      expect(outcome.exitCode).toBe(ExitCode.jobFailed);
      expect(outcome.job).toMatchObject({ status: "failed", reason: "cancelled" });
      expect(entries().some((e) => e.msg === "session resumed")).toBe(true);
      expect(entries().some((e) => e.msg === "protocol error; closing the session")).toBe(false);
      expect(fake.closes.at(-1)?.code).toBe(CloseCode.normal);
    } finally {
      await fake.close();
    }
  });

  it("a cancel that arrives while the first step is being started stops it", async () => {
    let traffic: AgentTraffic | undefined;
    const fake = await fakeController((socket, t) => {
      traffic = t;
      ackEverything(socket);
      socket.on("message", (data, isBinary) => {
        if (!isBinary && JSON.parse(data.toString()).type === "step-start") {
          socket.send(JSON.stringify({ v: 1, type: "cancel", jobId: "j1", reason: "at once" }));
        }
      });
      void waitForType(t, "hello").then(() =>
        socket.send(JSON.stringify(jobOf("j1", "sleep 3; echo should-not-run"))),
      );
    });
    try {
      const { code } = await entrypoint(fake.url, "cancel-at-start").done;
      expect(code).toBe(ExitCode.jobFailed);
      const jobEnd = await waitForType(traffic!, "job-end");
      expect(jobEnd).toMatchObject({ status: "failed", reason: "cancelled" });
      expect(traffic!.binary).toHaveLength(0);
    } finally {
      await fake.close();
    }
  });

  it("a SIGTERM that arrives while the first step is being started stops it: interrupted, exit 143", async () => {
    let traffic: AgentTraffic | undefined;
    let run: ReturnType<typeof entrypoint> | undefined;
    const fake = await fakeController((socket, t) => {
      traffic = t;
      ackEverything(socket);
      socket.on("message", (data, isBinary) => {
        if (!isBinary && JSON.parse(data.toString()).type === "step-start") run?.child.kill("SIGTERM");
      });
      void waitForType(t, "hello").then(() =>
        socket.send(JSON.stringify(jobOf("j1", "sleep 3; echo should-not-run"))),
      );
    });
    try {
      run = entrypoint(fake.url, "sigterm-at-start");
      const { code, lines } = await run.done;
      expect(code).toBe(ExitCode.sigterm);
      expect(await waitForType(traffic!, "job-end")).toMatchObject({
        status: "failed",
        reason: "interrupted",
      });
      expect(traffic!.binary).toHaveLength(0);
      expect(lines.at(-1)).toMatchObject({ msg: "agent finished", exitCode: ExitCode.sigterm });
    } finally {
      await fake.close();
    }
  });
});

describe("a resume that never succeeds says why", () => {
  it("a controller that closes every resumed session (1013): the summary names that close, not only the last attempt's timeout", async () => {
    let connections = 0;
    const fake = await fakeController((socket, traffic) => {
      connections++;
      if (connections > 1) {
        void waitForType(traffic, "hello").then(() => socket.close(1013, "try again later"));
        return;
      }
      ackEverything(socket);
      void waitForType(traffic, "hello").then(async () => {
        socket.send(JSON.stringify(jobOf("j1", "sleep 30")));
        await waitForType(traffic, "step-start");
        socket.terminate();
      });
    });
    try {
      const { logger } = captureLogger();
      const outcome = await runAgent(agentOf(fake.url, "try-later", { reconnectTimeoutMs: 1_500 }), {
        logger,
      });
      expect(outcome.exitCode).toBe(ExitCode.controllerFailure);
      expect(outcome.error?.code).toBe("AGENT_ERR_CONNECTION_LOST");
      expect(connections).toBeGreaterThan(1);
      expect(outcome.summary).toMatch(
        /the controller closed the resumed session \(code 1013: try again later\)/,
      );
    } finally {
      await fake.close();
    }
  });
});

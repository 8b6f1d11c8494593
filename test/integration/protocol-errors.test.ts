import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CloseCode, ExitCode, runAgent } from "../../agent-core/index.ts";
import { fakeController, rawAgent, waitForType } from "../support/fake-peers.ts";
import { agentConfigFor, captureLogger, startController, type TestController } from "../support/harness.ts";

describe("the controller against a misbehaving agent", () => {
  let ctl: TestController;
  beforeEach(async () => {
    ctl = await startController();
  });
  afterEach(async () => {
    await ctl.close();
  });

  /** After any bad agent, the controller still serves a real agent end to end. */
  async function controllerStillWorks() {
    const record = ctl.controller.submit({ steps: [{ run: "echo still alive" }] });
    const { logger } = captureLogger();
    const outcome = await runAgent(agentConfigFor(ctl.controller, `good-${record.id}`), { logger });
    expect(outcome.exitCode).toBe(ExitCode.ok);
    expect((await ctl.client.log(record.id)).toString()).toBe("still alive\n");
  }

  it.each([
    ["malformed JSON", "{not json", CloseCode.malformed],
    ["a JSON array", "[1,2]", CloseCode.malformed],
    ["an unknown message type", JSON.stringify({ v: 1, type: "bogus" }), CloseCode.unknownType],
    ["an unsupported version", JSON.stringify({ v: 2, type: "hello" }), CloseCode.unsupportedVersion],
    [
      "an invalid hello",
      JSON.stringify({ v: 1, type: "hello", agent: { name: 5 } }),
      CloseCode.invalidMessage,
    ],
    [
      "a message out of order (step-start before any job)",
      JSON.stringify({ v: 1, type: "step-start", seq: 1, jobId: "j", stepId: "1", startedAt: 1 }),
      CloseCode.outOfOrder,
    ],
  ])("closes the session on %s with a protocol close code and a diagnostic", async (_what, payload, code) => {
    const agent = await rawAgent(ctl.controller, "bad-agent");
    agent.socket.send(payload);
    const closed = await agent.closed;
    expect(closed.code).toBe(code);
    expect(closed.reason.length).toBeGreaterThan(0);
    expect(
      ctl.log
        .entries()
        .some((e) => e.msg === "agent broke the protocol; closing its session" && e.closeCode === code),
    ).toBe(true);
    await controllerStillWorks();
  });

  it("closes with 1009 on a frame over maxPayload", async () => {
    const agent = await rawAgent(ctl.controller, "big-agent");
    agent.socket.send(Buffer.alloc(2 * 1024 * 1024));
    expect((await agent.closed).code).toBe(CloseCode.messageTooBig);
    await controllerStillWorks();
  });

  it("keeps the output that arrived before an agent broke the protocol mid-job", async () => {
    // No retry: the job ends with this attempt (a retry would run it again on another agent).
    const record = ctl.controller.submit({
      retry: { infrastructure: 0 },
      steps: [{ id: "s1", run: "true" }],
    });
    const agent = await rawAgent(ctl.controller, "mid-job");
    agent.hello();
    const job = (await agent.next("job")).job as { id: string };
    expect(job.id).toBe(record.id);
    agent.sendJson({ v: 1, type: "step-start", seq: 1, jobId: job.id, stepId: "s1", startedAt: Date.now() });
    agent.output(2, "s1", 0, "partial output\n");
    agent.output(4, "s1", 15, "gap in seq\n");
    expect((await agent.closed).code).toBe(CloseCode.outOfOrder);
    const final = await ctl.controller.waitForJob(record.id);
    expect(final).toMatchObject({ status: "error", reason: "agent-lost", cause: "platform" });
    expect((await ctl.client.log(record.id)).toString()).toBe("partial output\n");
  });

  it("rejects a step-end whose byte counts differ from what arrived", async () => {
    const record = ctl.controller.submit({
      retry: { infrastructure: 0 },
      steps: [{ id: "s1", run: "true" }],
    });
    const agent = await rawAgent(ctl.controller, "miscount");
    agent.hello();
    const job = (await agent.next("job")).job as { id: string };
    agent.sendJson({ v: 1, type: "step-start", seq: 1, jobId: job.id, stepId: "s1", startedAt: Date.now() });
    agent.output(2, "s1", 0, "abc");
    agent.sendJson({
      v: 1,
      type: "step-end",
      seq: 3,
      jobId: job.id,
      stepId: "s1",
      exitCode: 0,
      signal: null,
      durationMs: 1,
      reason: "exit",
      stdoutBytes: 99,
      stderrBytes: 0,
    });
    const closed = await agent.closed;
    expect(closed.code).toBe(CloseCode.invalidMessage);
    expect(closed.reason).toMatch(/99/);
    expect((await ctl.controller.waitForJob(record.id)).status).toBe("error");
  });

  it("acknowledges the highest contiguous seq", async () => {
    ctl.controller.submit({ steps: [{ id: "s1", run: "true" }] });
    const agent = await rawAgent(ctl.controller, "acker");
    agent.hello();
    const job = (await agent.next("job")).job as { id: string };
    agent.sendJson({ v: 1, type: "step-start", seq: 1, jobId: job.id, stepId: "s1", startedAt: Date.now() });
    agent.output(2, "s1", 0, "x");
    agent.output(3, "s1", 1, "y");
    await expect
      .poll(() => agent.received.filter((m) => (m as { type: string }).type === "ack").at(-1))
      .toEqual({ v: 1, type: "ack", seq: 3 });
    agent.socket.close();
  });
});

describe("the agent against a misbehaving controller", () => {
  const cases: [string, (send: (text: string) => void) => void, number][] = [
    ["malformed JSON", (send) => send("{oops"), CloseCode.malformed],
    [
      "an unknown message type",
      (send) => send(JSON.stringify({ v: 1, type: "reboot" })),
      CloseCode.unknownType,
    ],
    [
      "an invalid job",
      (send) => send(JSON.stringify({ v: 1, type: "job", job: { id: "j1", steps: [] } })),
      CloseCode.invalidMessage,
    ],
    [
      "a cancel before any job",
      (send) => send(JSON.stringify({ v: 1, type: "cancel", jobId: "j1" })),
      CloseCode.outOfOrder,
    ],
  ];

  it.each(cases)(
    "closes on %s and exits with the controller-failure code",
    async (_what, misbehave, code) => {
      const fake = await fakeController((socket, traffic) => {
        void waitForType(traffic, "hello").then(() => misbehave((text) => socket.send(text)));
      });
      try {
        const { logger, entries } = captureLogger();
        const outcome = await runAgent(
          agentConfigFor({ url: fake.url, secretFor: () => "fake-secret" } as never, "agent-x"),
          { logger },
        );
        expect(outcome.exitCode).toBe(ExitCode.controllerFailure);
        expect(outcome.error?.code).toBe("AGENT_ERR_PROTOCOL");
        await expect.poll(() => fake.closes[0]?.code).toBe(code);
        expect(
          entries().some((e) => e.level === "error" && e.msg === "protocol error; closing the session"),
        ).toBe(true);
      } finally {
        await fake.close();
      }
    },
  );

  it("closes with 1009 when the controller sends a frame over maxPayload, and reports 1009", async () => {
    const fake = await fakeController((socket, traffic) => {
      void waitForType(traffic, "hello").then(() => socket.send(Buffer.alloc(200_000)));
    });
    try {
      const { logger } = captureLogger();
      const config = agentConfigFor({ url: fake.url, secretFor: () => "fake-secret" } as never, "agent-y", {
        maxPayloadBytes: 65_536,
      });
      const outcome = await runAgent(config, { logger });
      expect(outcome.exitCode).toBe(ExitCode.controllerFailure);
      await expect.poll(() => fake.closes[0]?.code).toBe(CloseCode.messageTooBig);
      // Reported as what it is (1009), not as the 1006 of a connection that stopped being read.
      expect(outcome.error).toMatchObject({ code: "AGENT_ERR_PROTOCOL", closeCode: CloseCode.messageTooBig });
      expect(outcome.summary).toMatch(/Max payload size exceeded/);
    } finally {
      await fake.close();
    }
  });

  it("stops the step when the controller breaks the protocol mid-job, after delivering the output so far", async () => {
    const fake = await fakeController((socket, traffic) => {
      void waitForType(traffic, "hello").then(async () => {
        socket.send(
          JSON.stringify({
            v: 1,
            type: "job",
            job: { id: "j1", steps: [{ id: "s1", run: "echo before; sleep 30" }] },
          }),
        );
        const started = Date.now();
        while (traffic.binary.length === 0 && Date.now() - started < 5_000)
          await new Promise((r) => setTimeout(r, 10));
        socket.send("not json");
      });
    });
    try {
      const { logger } = captureLogger();
      const started = Date.now();
      const outcome = await runAgent(
        agentConfigFor({ url: fake.url, secretFor: () => "fake-secret" } as never, "agent-z"),
        { logger },
      );
      expect(outcome.exitCode).toBe(ExitCode.controllerFailure);
      expect(outcome.job?.steps[0]?.outcome.reason).toBe("error");
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await fake.close();
    }
  });

  it("gives up on an unreachable controller after connectTimeoutMs", async () => {
    const fake = await fakeController(() => {});
    const url = fake.url;
    await fake.close();
    const { logger } = captureLogger();
    const outcome = await runAgent(
      agentConfigFor({ url, secretFor: () => "fake-secret" } as never, "agent-u", { connectTimeoutMs: 600 }),
      { logger },
    );
    expect(outcome.exitCode).toBe(ExitCode.controllerFailure);
    expect(outcome.error?.code).toBe("AGENT_ERR_CONTROLLER_UNREACHABLE");
  });
});

describe("authentication", () => {
  it("refuses a wrong secret with 403; the agent exits with the refused code and does not retry", async () => {
    const ctl = await startController();
    try {
      const { logger, entries } = captureLogger();
      const config = agentConfigFor(ctl.controller, "intruder", {
        secret: "0".repeat(64),
        connectTimeoutMs: 30_000,
      });
      const started = Date.now();
      const outcome = await runAgent(config, { logger });
      expect(outcome.exitCode).toBe(ExitCode.refused);
      expect(outcome.error?.code).toBe("AGENT_ERR_CONTROLLER_REFUSED");
      expect(outcome.summary).toMatch(/HTTP 403/);
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(ctl.log.entries().filter((e) => e.msg === "agent refused")).toHaveLength(1);
      expect(entries().some((e) => e.msg === "controller not reachable yet; retrying")).toBe(false);
      expect(JSON.stringify(entries())).not.toContain("0".repeat(64));
    } finally {
      await ctl.close();
    }
  });

  it("refuses a second agent with the same name (409)", async () => {
    const ctl = await startController();
    try {
      const first = await rawAgent(ctl.controller, "twin");
      const { logger } = captureLogger();
      const outcome = await runAgent(agentConfigFor(ctl.controller, "twin"), { logger });
      expect(outcome.exitCode).toBe(ExitCode.refused);
      expect(outcome.summary).toMatch(/HTTP 409/);
      first.socket.close();
    } finally {
      await ctl.close();
    }
  });
});

describe("the controller going away mid-job", () => {
  it("stops the step and exits with the controller-failure code when the connection drops", async () => {
    const fake = await fakeController((socket, traffic) => {
      void waitForType(traffic, "hello").then(async () => {
        socket.send(
          JSON.stringify({
            v: 1,
            type: "job",
            job: { id: "j1", steps: [{ id: "s1", run: "echo before; sleep 30" }] },
          }),
        );
        while (traffic.binary.length === 0) await new Promise((r) => setTimeout(r, 10));
        socket.terminate();
      });
    });
    try {
      const { logger, entries } = captureLogger();
      const started = Date.now();
      const outcome = await runAgent(
        agentConfigFor({ url: fake.url, secretFor: () => "fake-secret" } as never, "agent-drop", {
          reconnectTimeoutMs: 0,
        }),
        { logger },
      );
      expect(outcome.exitCode).toBe(ExitCode.controllerFailure);
      expect(outcome.error?.code).toBe("AGENT_ERR_CONNECTION_LOST");
      expect(outcome.job?.steps[0]?.outcome).toMatchObject({ reason: "error", stdoutBytes: 7 });
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(
        entries().some((e) => e.msg === "connection to the controller lost during the job; resuming"),
      ).toBe(true);
      expect(
        entries().some((e) => /did not come back within 0 ms; stopping the job/.test(String(e.msg))),
      ).toBe(true);
    } finally {
      await fake.close();
    }
  });

  it("drops a controller that stops answering pings (missed-pong timeout)", async () => {
    const fake = await fakeController((socket, traffic) => {
      void waitForType(traffic, "hello").then(() => {
        socket.send(
          JSON.stringify({ v: 1, type: "job", job: { id: "j1", steps: [{ id: "s1", run: "sleep 30" }] } }),
        );
        // Stop reading the socket: pings go unanswered, as with a frozen or partitioned controller.
        (socket as unknown as { _socket: { pause(): void } })._socket.pause();
      });
    });
    try {
      const { logger, entries } = captureLogger();
      const config = agentConfigFor({ url: fake.url, secretFor: () => "fake-secret" } as never, "agent-hb", {
        heartbeatIntervalMs: 50,
        heartbeatTimeoutMs: 300,
        reconnectTimeoutMs: 0,
      });
      const outcome = await runAgent(config, { logger });
      expect(outcome.exitCode).toBe(ExitCode.controllerFailure);
      expect(entries().some((e) => e.msg === "no pong from the controller; dropping the connection")).toBe(
        true,
      );
    } finally {
      await fake.close();
    }
  });
});

describe("controller-side consistency", () => {
  let ctl: TestController;
  beforeEach(async () => {
    ctl = await startController();
  });
  afterEach(async () => {
    await ctl.close();
  });

  it("refuses an agent speaking another protocol version with 426 during the upgrade", async () => {
    const { default: WebSocket } = await import("ws");
    const socket = new WebSocket(`${ctl.controller.url.replace(/^http/, "ws")}agents/v1`, {
      headers: {
        "node-name": "future",
        "secret-key": ctl.controller.secretFor("future"),
        "x-agent-protocol": "2",
      },
    });
    socket.on("error", () => {});
    const status = await new Promise<number>((resolve) => {
      socket.once("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      socket.once("open", () => resolve(101));
    });
    expect(status).toBe(426);
    socket.terminate();
  });

  it("rejects a job-end claiming success before every step ran", async () => {
    const record = ctl.controller.submit({
      steps: [
        { id: "a", run: "true" },
        { id: "b", run: "true" },
      ],
    });
    const agent = await rawAgent(ctl.controller, "liar");
    agent.hello();
    const job = (await agent.next("job")).job as { id: string };
    agent.sendJson({
      v: 1,
      type: "job-end",
      seq: 1,
      jobId: job.id,
      status: "succeeded",
      reason: "exit",
      durationMs: 1,
    });
    const closed = await agent.closed;
    expect(closed.code).toBe(CloseCode.invalidMessage);
    expect(closed.reason).toMatch(/0 of 2 steps ran/);
    // No step ran, so nothing is lost by giving the job to another agent.
    await expect.poll(() => ctl.controller.getJob(record.id)?.status).toBe("queued");
  });

  it("requeues a job whose agent leaves before starting it, and another agent runs it", async () => {
    const record = ctl.controller.submit({ steps: [{ run: "echo second agent" }] });
    const first = await rawAgent(ctl.controller, "flaky");
    first.hello();
    await first.next("job");
    first.socket.close(CloseCode.normal, "idle timeout: no job arrived");
    await first.closed;
    await expect.poll(() => ctl.controller.getJob(record.id)?.status).toBe("queued");
    const { logger } = captureLogger();
    const outcome = await runAgent(agentConfigFor(ctl.controller, "steady"), { logger });
    expect(outcome.exitCode).toBe(ExitCode.ok);
    expect(await ctl.controller.waitForJob(record.id)).toMatchObject({
      status: "succeeded",
      agent: { name: "steady" },
    });
  });
});

describe("a controller that stops acknowledging", () => {
  it("is dropped after the ack timeout, even though it answers pings", async () => {
    const fake = await fakeController((socket, traffic) => {
      void waitForType(traffic, "hello").then(() =>
        socket.send(
          JSON.stringify({
            v: 1,
            type: "job",
            job: { id: "j1", steps: [{ id: "s1", run: "echo hi; sleep 30" }] },
          }),
        ),
      );
    });
    try {
      const { logger, entries } = captureLogger();
      const config = agentConfigFor(
        { url: fake.url, secretFor: () => "fake-secret" } as never,
        "agent-noack",
        {
          heartbeatIntervalMs: 50,
          ackTimeoutMs: 400,
        },
      );
      const started = Date.now();
      const outcome = await runAgent(config, { logger });
      expect(outcome.exitCode).toBe(ExitCode.controllerFailure);
      expect(Date.now() - started).toBeLessThan(5_000);
      await expect.poll(() => fake.closes[0]?.code).toBe(CloseCode.ackTimeout);
      expect(
        entries().some((e) => e.msg === "the controller stopped acknowledging; closing the session"),
      ).toBe(true);
    } finally {
      await fake.close();
    }
  });
});

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ExitCode, runAgent } from "../../agent-core/index.ts";
import { buildTemplates, parseControllerConfig } from "../../controller/config.ts";
import { LocalProvisioner } from "../../controller/index.ts";
import { rawAgent } from "../support/fake-peers.ts";
import {
  agentConfigFor,
  captureLogger,
  ENTRYPOINT,
  FIXTURES,
  startController,
  type TestController,
  tempDir,
} from "../support/harness.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function controllerWith(
  overrides: Parameters<typeof startController>[0] = {},
): Promise<TestController> {
  const ctl = await startController(overrides);
  cleanups.push(() => ctl.close());
  return ctl;
}

/** A local provisioner whose first `failures` launches hang or die before connecting. */
function flakyProvisioner(mode: "hang" | "die", failures: number) {
  const dir = tempDir("flaky-");
  cleanups.push(dir.remove);
  return new LocalProvisioner({
    command: [process.execPath, join(FIXTURES, "flaky-launch.mjs")],
    logDir: join(dir.path, "agents"),
    env: {
      LAUNCH_COUNTER: join(dir.path, "launches"),
      LAUNCH_FAILURES: String(failures),
      LAUNCH_MODE: mode,
      REAL_ENTRYPOINT: ENTRYPOINT,
      AGENT_GRACE_MS: "500",
    },
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const pidOf = (ref: string | undefined) => Number(/^pid (\d+)$/.exec(ref ?? "")?.[1]);

describe("infrastructure retries", () => {
  it("stops an agent that never connects, records why, and relaunches within the budget", async () => {
    const ctl = await controllerWith({
      overrides: { provisioner: flakyProvisioner("hang", 1), connectTimeoutMs: 4_000 },
    });
    const record = ctl.controller.submit({ steps: [{ run: "echo on the second agent" }] });
    const final = await ctl.controller.waitForJob(record.id);
    expect(final.status).toBe("succeeded");
    expect(final.attempts.map((a) => a.cause)).toEqual(["never-connected", "succeeded"]);
    expect(final.attempts[0]!.message).toMatch(/did not connect within 4000 ms; stopped/);
    expect(final.attempts[0]).toMatchObject({ platform: "local", template: "default" });
    expect(final.attempts[1]!.agent).not.toBe(final.attempts[0]!.agent);
    await expect.poll(() => isAlive(pidOf(final.attempts[0]!.platformRef))).toBe(false);
    expect((await ctl.client.log(record.id)).toString()).toBe("on the second agent\n");
  });

  it("fails an attempt at once when its agent dies before connecting, with the platform's reason", async () => {
    const ctl = await controllerWith({
      overrides: { provisioner: flakyProvisioner("die", 99), connectTimeoutMs: 60_000 },
    });
    const started = Date.now();
    const record = ctl.controller.submit({ retry: { infrastructure: 1 }, steps: [{ run: "true" }] });
    const final = await ctl.controller.waitForJob(record.id);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(final).toMatchObject({ status: "error", reason: "provision-failed", cause: "platform" });
    expect(final.message).toMatch(/after 2 attempts; last: .* exited with code 9/);
    expect(final.attempts.map((a) => a.cause)).toEqual([
      "stopped-before-connecting",
      "stopped-before-connecting",
    ]);
    const agentLog = /agent log: (\S+)\)/.exec(final.attempts[1]!.message ?? "")?.[1];
    expect(readFileSync(agentLog!, "utf8")).toMatch(/CannotPullContainerError/);
  });

  it("never retries a user failure", async () => {
    const ctl = await controllerWith({ provision: true });
    const record = ctl.controller.submit({ retry: { infrastructure: 3 }, steps: [{ run: "exit 3" }] });
    const final = await ctl.controller.waitForJob(record.id);
    expect(final).toMatchObject({ status: "failed", reason: "exit", cause: "user" });
    expect(final.attempts).toHaveLength(1);
    expect(final.attempts[0]!.cause).toBe("user");
  });

  it("retries a job whose agent was interrupted mid-step (SIGTERM, as Spot does), keeping both attempts", async () => {
    const marks = tempDir("marks-");
    cleanups.push(marks.remove);
    const ctl = await controllerWith({ provision: true });
    const mark = join(marks.path, "first-attempt-ran");
    const record = ctl.controller.submit({
      steps: [
        {
          run: `if [ -e ${mark} ]; then echo second; else touch ${mark}; echo first; sleep 30; fi`,
        },
      ],
    });
    await expect.poll(() => ctl.controller.getJob(record.id)?.logBytes ?? 0, { timeout: 15_000 }).toBe(6);
    process.kill(pidOf(ctl.controller.getJob(record.id)?.attempts[0]?.platformRef), "SIGTERM");
    const final = await ctl.controller.waitForJob(record.id);
    expect(final.status).toBe("succeeded");
    expect(final.attempts.map((a) => a.cause)).toEqual(["interrupted", "succeeded"]);
    expect(final.attempts[1]).toMatchObject({ n: 2, logOffset: 6, platform: "local" });
    expect(final.attempts.every((a) => a.launchedAt && a.connectedAt && a.assignedAt && a.endedAt)).toBe(
      true,
    );
    expect((await ctl.client.log(record.id)).toString()).toBe("first\nsecond\n");
    const events = [];
    for await (const event of ctl.client.events(record.id, false)) events.push(event);
    expect(events.filter((e) => e.type === "attempt")).toMatchObject([
      { attempt: 1 },
      { attempt: 2, retryOf: { cause: "interrupted" } },
    ]);
  });

  it("ends the job once the budget is spent, naming the last cause", async () => {
    const ctl = await controllerWith({ overrides: { resumeWindowMs: 300 } });
    const record = ctl.controller.submit({
      retry: { infrastructure: 0 },
      steps: [{ id: "s1", run: "true" }],
    });
    const agent = await rawAgent(ctl.controller, "vanishing");
    agent.hello();
    await agent.next("job");
    agent.socket.terminate();
    const final = await ctl.controller.waitForJob(record.id);
    expect(final).toMatchObject({ status: "error", reason: "agent-lost", cause: "platform" });
    expect(final.attempts).toMatchObject([{ agent: "vanishing", cause: "agent-lost", platform: "local" }]);
    expect(final.message).toMatch(/did not resume within 300 ms/);
  });
});

describe("single-use agent names", () => {
  it("refuses a session for a name whose job ended, so a leaked secret is worthless", async () => {
    const ctl = await controllerWith();
    const { logger } = captureLogger();
    ctl.controller.submit({ steps: [{ run: "true" }] });
    expect((await runAgent(agentConfigFor(ctl.controller, "one-job"), { logger })).exitCode).toBe(
      ExitCode.ok,
    );
    ctl.controller.submit({ steps: [{ run: "echo must not run on one-job" }] });
    const again = await runAgent(agentConfigFor(ctl.controller, "one-job"), { logger });
    expect(again.exitCode).toBe(ExitCode.refused);
    expect(again.error?.message).toMatch(/410.*single-use/);
    expect(ctl.log.entries().some((e) => e.msg === "agent refused" && e.status === 410)).toBe(true);
  });

  it("lets a spent name in only to resume its ended job, which it confirms ended, and takes nothing else", async () => {
    const ctl = await controllerWith();
    const record = ctl.controller.submit({ steps: [{ run: "true" }] });
    const { logger } = captureLogger();
    expect((await runAgent(agentConfigFor(ctl.controller, "resumer"), { logger })).exitCode).toBe(
      ExitCode.ok,
    );
    const jobEndSeq = ctl.controller.getJob(record.id)!.attempts[0]!.jobEndSeq;
    expect(jobEndSeq).toBeGreaterThan(0);
    const hello = (resume?: string) => ({
      v: 1,
      type: "hello",
      agent: { name: "resumer", labels: [], runtime: "local", version: "test" },
      limits: { deadlineAt: null, diskBudgetBytes: null },
      capabilities: [],
      ...(resume ? { resume: { jobId: resume } } : {}),
    });
    // A resume after a lost ack: told that its job-end is stored.
    const resuming = await rawAgent(ctl.controller, "resumer", { "x-agent-resume": record.id });
    resuming.sendJson(hello(record.id));
    expect(await resuming.next("resume")).toEqual({
      v: 1,
      type: "resume",
      jobId: record.id,
      seq: jobEndSeq,
      ended: true,
    });
    resuming.socket.close();
    await resuming.closed;
    // Let in to resume, but asking for a new job instead: refused.
    const sly = await rawAgent(ctl.controller, "resumer", { "x-agent-resume": record.id });
    sly.sendJson(hello());
    expect((await sly.closed).code).toBe(4003);
    ctl.controller.submit({ steps: [{ run: "echo not for a spent name" }] });
    // Naming another job: refused at the upgrade.
    await expect(rawAgent(ctl.controller, "resumer", { "x-agent-resume": "another-job" })).rejects.toThrow(
      /410/,
    );
  });

  it("gives a launched agent only the job it was launched for", async () => {
    const ctl = await controllerWith({ provision: true });
    const first = ctl.controller.submit({ steps: [{ run: "echo first" }] });
    const second = ctl.controller.submit({ steps: [{ run: "echo second" }] });
    const [a, b] = await Promise.all([
      ctl.controller.waitForJob(first.id),
      ctl.controller.waitForJob(second.id),
    ]);
    expect(a.status).toBe("succeeded");
    expect(b.status).toBe("succeeded");
    expect(a.agent?.name.startsWith(`${first.id}-1-`)).toBe(true);
    expect(b.agent?.name.startsWith(`${second.id}-1-`)).toBe(true);
  });
});

describe("the per-job log cap", () => {
  it("stops a job whose output reaches it and fails it clearly, keeping the log up to the cap", async () => {
    const ctl = await controllerWith({ overrides: { maxLogBytes: 256 * 1024 } });
    const record = ctl.controller.submit({
      retry: { infrastructure: 2 },
      steps: [
        { argv: ["node", join(FIXTURES, "write-bytes-slowly.mjs"), String(64 * 1024 * 1024), "65536", "2"] },
      ],
    });
    const { logger } = captureLogger();
    const outcome = await runAgent(agentConfigFor(ctl.controller, "chatty"), { logger });
    expect(outcome.exitCode).toBe(ExitCode.jobFailed);
    const final = await ctl.controller.waitForJob(record.id);
    expect(final).toMatchObject({
      status: "failed",
      reason: "log-limit",
      cause: "user",
      logBytes: 256 * 1024,
    });
    expect(final.message).toMatch(/cap of 262144 bytes/);
    expect(final.attempts).toHaveLength(1);
    expect((await ctl.client.log(record.id)).length).toBe(256 * 1024);
  });
});

describe("overflow of a deadline", () => {
  /** Two local templates: `short` agents stop at a 4 s deadline (as a Lambda would), `long` ones have none. */
  async function shortAndLong(overflow: boolean) {
    const dir = tempDir("overflow-");
    cleanups.push(dir.remove);
    const { logger } = captureLogger();
    const env = { AGENT_GRACE_MS: "300", AGENT_DRAIN_MS: "200" };
    const config = parseControllerConfig({
      clouds: [
        { name: "brief", type: "local", env: { ...env, AGENT_MAX_DURATION_MS: "4000" } },
        { name: "roomy", type: "local", env },
      ],
      templates: [
        { name: "short", cloud: "brief", labels: ["short"], ...(overflow ? { overflowLabel: "long" } : {}) },
        { name: "long", cloud: "roomy", labels: ["long"] },
      ],
    });
    const templates = await buildTemplates(config, {
      logger,
      defaultLocalCommand: () => [process.execPath, ENTRYPOINT],
      agentLogDir: join(dir.path, "agents"),
    });
    return controllerWith({ overrides: { templates } });
  }

  it("moves a job that outlives its template's deadline to the overflow label, where it succeeds", async () => {
    const ctl = await shortAndLong(true);
    const record = ctl.controller.submit({
      labels: ["short"],
      retry: { infrastructure: 0 },
      steps: [{ run: "echo start; sleep 6; echo finished" }],
    });
    const final = await ctl.controller.waitForJob(record.id);
    expect(final.status).toBe("succeeded");
    expect(final.overflow).toEqual({ from: "short", label: "long" });
    expect(final.attempts.map((a) => [a.template, a.cause, a.labels])).toEqual([
      ["short", "deadline", ["short"]],
      ["long", "succeeded", ["long"]],
    ]);
    // The whole job ran again on the long agent; what the short one wrote before its deadline comes first.
    expect((await ctl.client.log(record.id)).toString()).toMatch(/^(start\n)?start\nfinished\n$/);
    expect(final.attempts[1]!.logOffset).toBe(final.logBytes - 15);
  });

  it("fails a job with reason deadline when its template has no overflow label", async () => {
    const ctl = await shortAndLong(false);
    const record = ctl.controller.submit({ labels: ["short"], steps: [{ run: "sleep 6" }] });
    const final = await ctl.controller.waitForJob(record.id);
    expect(final).toMatchObject({ status: "failed", reason: "deadline", cause: "platform" });
    expect(final.attempts).toHaveLength(1);
  });
});

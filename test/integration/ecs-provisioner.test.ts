import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { buildTemplates, parseControllerConfig } from "../../controller/config.ts";
import { Controller, ControllerClient, type JobRecord } from "../../controller/index.ts";
import { fetchArtifacts } from "../../controller/workspace-cli.ts";
import { type FakeEcs, startFakeEcs } from "../support/fake-ecs.ts";
import { captureLogger, ENTRYPOINT, tempDir } from "../support/harness.ts";
import { rawTar } from "../support/tar-builder.ts";

const CREDENTIALS = { accessKeyId: "AKIDTEST", secretAccessKey: "test-secret" };
const AGENT_ENV = { AGENT_GRACE_MS: "500", AGENT_DRAIN_MS: "300", AGENT_LOG_LEVEL: "debug" };

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Setup {
  controller: Controller;
  ecs: FakeEcs;
  log: ReturnType<typeof captureLogger>;
}

/** A fake ECS, and a controller whose config file has one ECS template per `templates` entry. */
async function setup(
  templates: Record<string, unknown>[],
  controllerConfig: Record<string, unknown> = {},
): Promise<Setup> {
  const data = tempDir("ecs-");
  cleanups.push(data.remove);
  const ecs = await startFakeEcs({
    logDir: join(data.path, "tasks"),
    clusters: [{ name: "ci", capacityProviders: ["FARGATE", "FARGATE_SPOT"] }],
    taskDefinitions: [
      {
        name: "jnlp-agent:3",
        containerName: "agent",
        behaviour: { kind: "agent", entrypoint: [process.execPath, ENTRYPOINT] },
        environment: AGENT_ENV,
      },
      {
        name: "slow-start:1",
        containerName: "agent",
        behaviour: { kind: "agent", entrypoint: [process.execPath, ENTRYPOINT], hangFirst: 1 },
        environment: AGENT_ENV,
      },
      {
        name: "bad-image:1",
        containerName: "agent",
        behaviour: {
          kind: "fail-to-start",
          stoppedReason:
            "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref",
          afterMs: 300,
        },
      },
    ],
    stopTimeoutMs: 5_000,
  });
  cleanups.push(() => ecs.close());
  const config = parseControllerConfig({
    clouds: [
      { name: "aws", type: "aws", region: "eu-west-1", endpoints: { ecs: ecs.endpoint }, maxAttempts: 5 },
    ],
    templates: templates.map((template, index) => ({
      name: `fargate-${index + 1}`,
      cloud: "aws",
      ...template,
      ecs: {
        cluster: "ci",
        taskDefinition: "jnlp-agent:3",
        container: "agent",
        capacityProvider: "FARGATE",
        subnets: ["subnet-0a1b2c"],
        securityGroups: ["sg-0d1e2f"],
        pollInterval: "200ms",
        ...(template.ecs as Record<string, unknown>),
      },
    })),
    ...controllerConfig,
  });
  const log = captureLogger();
  const controller = await Controller.start({
    dataDir: data.path,
    logger: log.logger,
    templates: await buildTemplates(config, {
      logger: log.logger,
      defaultLocalCommand: () => [process.execPath, ENTRYPOINT],
      agentLogDir: join(data.path, "agents"),
      awsCredentials: CREDENTIALS,
    }),
    ...(config.retry ? { retry: config.retry } : {}),
    ...(config.connectTimeout !== undefined ? { connectTimeoutMs: config.connectTimeout } : {}),
  });
  cleanups.push(() => controller.stop({ endJobs: true }));
  return { controller, ecs, log };
}

const taskOf = (ecs: FakeEcs, record: JobRecord, attempt = 0) =>
  ecs.tasks.get(record.attempts[attempt]!.platformRef!)!;

describe("the ECS provisioner against a loopback ECS (real @aws-sdk/client-ecs)", () => {
  it("runs a job on a Fargate task: capacity provider, awsvpc, the amazon-ecs override with the secret in the environment, tags", async () => {
    const { controller, ecs } = await setup([
      { labels: ["fargate", "linux"], ecs: { tags: { team: "ci" } } },
    ]);
    const record = controller.submit({
      labels: ["fargate"],
      steps: [{ run: "echo on fargate; echo ${JENKINS_SECRET:-no secret}" }],
    });
    const final = await controller.waitForJob(record.id);
    expect(final.status).toBe("succeeded");
    const attempt = final.attempts[0]!;
    expect(attempt).toMatchObject({ platform: "ecs", template: "fargate-1", cause: "succeeded" });
    const task = taskOf(ecs, final);
    expect(task.request).toMatchObject({
      cluster: "ci",
      taskDefinition: "jnlp-agent:3",
      capacityProviderStrategy: [{ capacityProvider: "FARGATE", weight: 1 }],
      networkConfiguration: {
        awsvpcConfiguration: {
          subnets: ["subnet-0a1b2c"],
          securityGroups: ["sg-0d1e2f"],
          assignPublicIp: "DISABLED",
        },
      },
      overrides: {
        containerOverrides: [{ name: "agent", command: ["-url", controller.url, "-name", attempt.agent] }],
      },
      startedBy: "ephemeral-build-agent",
    });
    expect(task.env.JENKINS_SECRET).toBe(controller.secretFor(attempt.agent));
    // The reference controller says what it is: the agent skips auto mode's request.
    expect(task.env.AGENT_MODE).toBe("native");
    const override = (task.request.overrides as { containerOverrides: { command: string[] }[] })
      .containerOverrides[0]!;
    expect(override.command).not.toContain(controller.secretFor(attempt.agent));
    expect(task.request.tags).toEqual(
      expect.arrayContaining([
        { key: "team", value: "ci" },
        { key: "agent-job", value: record.id },
        { key: "agent-name", value: attempt.agent },
        { key: "agent-labels", value: "fargate linux" },
        { key: "agent-template", value: "fargate-1" },
      ]),
    );
    expect(final.agent).toMatchObject({ runtime: "ecs", labels: ["fargate", "linux"] });
    expect((await readLog(controller, record.id)).toString()).toBe("on fargate\nno secret\n");
    expect(ecs.violations).toEqual([]);
    expect(ecs.requests.every((r) => r.signed)).toBe(true);
  });

  it("passes -url URL SECRET NAME in the command, as the amazon-ecs plugin does, when the template says so", async () => {
    const { controller, ecs } = await setup([
      { ecs: { secretIn: "command", launchType: "FARGATE", capacityProvider: undefined } },
    ]);
    const record = controller.submit({ steps: [{ run: "true" }] });
    const final = await controller.waitForJob(record.id);
    expect(final.status).toBe("succeeded");
    const agent = final.attempts[0]!.agent;
    expect(taskOf(ecs, final).request).toMatchObject({
      launchType: "FARGATE",
      overrides: {
        containerOverrides: [{ command: ["-url", controller.url, controller.secretFor(agent), agent] }],
      },
    });
    expect(taskOf(ecs, final).request.capacityProviderStrategy).toBeUndefined();
  });

  it("fails an attempt at once when its task stops before connecting, with the task's stoppedReason", async () => {
    const { controller } = await setup([{ connectTimeout: "5m", ecs: { taskDefinition: "bad-image:1" } }]);
    const started = Date.now();
    const record = controller.submit({ retry: { infrastructure: 0 }, steps: [{ run: "true" }] });
    const final = await controller.waitForJob(record.id);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(final).toMatchObject({ status: "error", reason: "provision-failed", cause: "platform" });
    expect(final.attempts[0]).toMatchObject({ cause: "stopped-before-connecting" });
    expect(final.attempts[0]!.message).toMatch(/CannotPullContainerError.*\[TaskFailedToStart\]/);
    expect(final.message).toMatch(/CannotPullContainerError/);
  });

  it("stops a task whose agent never connects (StopTask) and launches another within the budget", async () => {
    // The first task never connects; the second is a real agent process, which must start and
    // connect within the same timeout on a loaded machine (1.5 s was not always enough).
    const { controller, ecs } = await setup([
      { connectTimeout: "5s", ecs: { taskDefinition: "slow-start:1" } },
    ]);
    const record = controller.submit({ steps: [{ run: "echo second task" }] });
    const final = await controller.waitForJob(record.id);
    expect(final.status).toBe("succeeded");
    expect(final.attempts.map((a) => a.cause)).toEqual(["never-connected", "succeeded"]);
    const first = taskOf(ecs, final, 0);
    await expect.poll(() => first.lastStatus).toBe("STOPPED");
    expect(first).toMatchObject({ stopCode: "UserInitiated", stoppedReason: "did not connect in time" });
    expect(
      ecs.requests.filter((r) => r.operation === "StopTask" && r.status === 200).length,
    ).toBeGreaterThanOrEqual(1);
  });

  it("asks StopTask again for a task it gave up until ECS takes it (throttled past the SDK's retries): no orphan", async () => {
    const { controller, ecs, log } = await setup([
      { connectTimeout: "1500ms", ecs: { taskDefinition: "slow-start:1" } },
    ]);
    // maxAttempts is 5: the first StopTask fails for good.
    ecs.failNext("StopTask", "ThrottlingException", 5);
    const record = controller.submit({ retry: { infrastructure: 0 }, steps: [{ run: "true" }] });
    const final = await controller.waitForJob(record.id);
    expect(final.attempts.map((a) => a.cause)).toEqual(["never-connected"]);
    const task = taskOf(ecs, final, 0);
    await expect.poll(() => task.lastStatus, { timeout: 20_000 }).toBe("STOPPED");
    expect(task).toMatchObject({ stopCode: "UserInitiated", stoppedReason: "did not connect in time" });
    const stops = ecs.requests.filter((r) => r.operation === "StopTask").map((r) => r.errorType ?? r.status);
    expect(stops).toEqual([...Array(5).fill("ThrottlingException"), 200]);
    expect(log.entries().some((entry) => entry.msg === "StopTask failed; will ask again")).toBe(true);
  });

  it("retries RunTask answered with throttling and 5xx, with backoff, and starts one task", async () => {
    const { controller, ecs } = await setup([{}]);
    ecs.failNext("RunTask", "ThrottlingException", 2);
    ecs.failNext("RunTask", "ServerException", 1);
    const record = controller.submit({ steps: [{ run: "true" }] });
    const final = await controller.waitForJob(record.id);
    expect(final.status).toBe("succeeded");
    expect(ecs.requests.filter((r) => r.operation === "RunTask").map((r) => r.errorType ?? r.status)).toEqual(
      ["ThrottlingException", "ThrottlingException", "ServerException", 200],
    );
    expect(ecs.tasks.size).toBe(1);
    expect(final.attempts).toHaveLength(1);
  });

  it("ends an attempt whose task dies mid-job (OOM) at once, with the task's reason, without waiting out the resume window", async () => {
    const marks = tempDir("oom-");
    cleanups.push(marks.remove);
    const mark = join(marks.path, "ran-once");
    const { controller, ecs } = await setup([{}]);
    const record = controller.submit({
      steps: [{ run: `if [ -e ${mark} ]; then echo again; else touch ${mark}; echo first; sleep 30; fi` }],
    });
    await expect.poll(() => controller.getJob(record.id)?.logBytes ?? 0, { timeout: 20_000 }).toBe(6);
    const killedAt = Date.now();
    taskOf(ecs, controller.getJob(record.id)!).process!.kill("SIGKILL");
    const final = await controller.waitForJob(record.id);
    expect(final.status).toBe("succeeded");
    expect(final.attempts.map((a) => a.cause)).toEqual(["agent-lost", "succeeded"]);
    expect(final.attempts[0]!.message).toMatch(/Essential container in task exited.*exit code 137/);
    // The resume window is 90 s; the task's STOPPED state ended the attempt long before.
    expect(Date.parse(final.attempts[0]!.endedAt!) - killedAt).toBeLessThan(30_000);
    expect((await readLog(controller, record.id)).toString()).toBe("first\nagain\n");
  });

  it("retries a job whose Fargate Spot task is interrupted mid-step, and records both attempts", async () => {
    const marks = tempDir("spot-");
    cleanups.push(marks.remove);
    const mark = join(marks.path, "ran-once");
    const { controller, ecs } = await setup([{ ecs: { capacityProvider: "FARGATE_SPOT" } }]);
    const record = controller.submit({
      steps: [{ run: `if [ -e ${mark} ]; then echo second; else touch ${mark}; echo first; sleep 30; fi` }],
    });
    const final = await interruptedOnce(controller, ecs, record.id, 6);
    expect(final.attempts[0]!.agent).not.toBe(final.attempts[1]!.agent);
    expect(taskOf(ecs, final, 0)).toMatchObject({
      stopCode: "SpotInterruption",
      capacityProviderName: "FARGATE_SPOT",
    });
    expect((await readLog(controller, record.id)).toString()).toBe("first\nsecond\n");
  });
});

describe("transfers across a Spot interruption", () => {
  it("re-seeds the retried attempt's workspace and keeps only its artifacts, not the interrupted one's", async () => {
    const marks = tempDir("spot-seed-");
    cleanups.push(marks.remove);
    const mark = join(marks.path, "ran-once");
    const { controller, ecs } = await setup([{ ecs: { capacityProvider: "FARGATE_SPOT" } }]);
    const seed = rawTar([
      { path: "src/", type: "Directory" },
      { path: "src/seed.txt", body: "seeded\n" },
    ]);
    const upload = await controller.uploadWorkspace(Readable.from([seed]));
    const record = controller.submit({
      workspace: { upload: upload.id },
      // `always`: the interrupted attempt sends its artifacts too, which must not be the job's.
      artifacts: { paths: ["out"], when: "always" },
      steps: [
        {
          run: `mkdir out && cat src/seed.txt && if [ -e ${mark} ]; then echo second > out/which; else touch ${mark} src/left-by-first; echo first > out/which; sleep 30; fi; ls src`,
        },
      ],
    });
    const final = await interruptedOnce(controller, ecs, record.id, 7);
    // Both attempts pulled the whole seed into a fresh workspace: nothing the first left is there.
    expect((await readLog(controller, record.id)).toString()).toBe("seeded\nseeded\nseed.txt\n");
    expect(final.transfers?.workspace).toMatchObject({ status: "done", sha256: upload.sha256 });
    // The interrupted attempt's artifacts were received, then dropped for the retry's.
    const journal = readFileSync(join(controller.outputPath(record.id), "../events.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { type: string; attempt?: number; status?: string });
    expect(journal.filter((e) => e.type === "artifacts").map((e) => [e.attempt, e.status])).toEqual([
      [1, "stored"],
      [2, "stored"],
    ]);
    expect(final.artifacts).toMatchObject({ status: "stored", attempt: 2 });
    const out = tempDir("spot-artifacts-");
    cleanups.push(out.remove);
    await fetchArtifacts(new ControllerClient(controller.url), record.id, out.path);
    expect(readFileSync(join(out.path, "out/which"), "utf8")).toBe("second\n");
    expect(taskOf(ecs, final, 0)).toMatchObject({ stopCode: "SpotInterruption" });
  });
});

/**
 * Interrupts the job's first task (Spot) once its log has `logBytes`, and checks that the retry
 * on a second task succeeded; returns the final record.
 */
async function interruptedOnce(
  controller: Controller,
  ecs: FakeEcs,
  id: string,
  logBytes: number,
): Promise<JobRecord> {
  await expect.poll(() => controller.getJob(id)?.logBytes ?? 0, { timeout: 20_000 }).toBe(logBytes);
  ecs.interrupt(controller.getJob(id)!.attempts[0]!.platformRef!);
  const final = await controller.waitForJob(id);
  expect(final.status).toBe("succeeded");
  expect(final.attempts.map((a) => [a.platform, a.cause])).toEqual([
    ["ecs", "interrupted"],
    ["ecs", "succeeded"],
  ]);
  return final;
}

async function readLog(controller: Controller, id: string): Promise<Buffer> {
  const res = await fetch(new URL(`api/v1/jobs/${id}/log`, controller.url));
  return Buffer.from(await res.arrayBuffer());
}

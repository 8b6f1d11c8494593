import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ControllerClient, type JobRecord } from "../../controller/index.ts";
import { type ServeProcess, startServe } from "../support/controller-process.ts";
import { type FakeEcs, startFakeEcs } from "../support/fake-ecs.ts";
import { createAgentFunction, type FakeLambda, startFakeLambda } from "../support/fake-lambda.ts";
import { ENTRYPOINT, tempDir, until } from "../support/harness.ts";

/**
 * `controller serve --config` as an operator runs it: the built bundle in its own process, a
 * config file with a Lambda template and an ECS/Fargate template, the AWS SDK clients pointed
 * at the loopback Lambda and ECS endpoints, credentials from the environment.
 */

const FUNCTION = "jnlp-agent-git-bash";
const AWS_ENV = { AWS_ACCESS_KEY_ID: "AKIDSERVE", AWS_SECRET_ACCESS_KEY: "serve-secret" };
const TERMINAL = ["succeeded", "failed", "error", "cancelled"];

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Setup {
  serve: ServeProcess;
  client: ControllerClient;
  lambda: FakeLambda;
  ecs: FakeEcs;
  dataDir: string;
  configPath: string;
}

async function serveWithAws(options: { lambdaTimeoutMs?: number } = {}): Promise<Setup> {
  const data = tempDir("serve-aws-");
  cleanups.push(data.remove);
  const lambda = await startFakeLambda({ idleSandboxMs: 1_000 });
  cleanups.push(() => lambda.close());
  createAgentFunction(lambda, FUNCTION, options.lambdaTimeoutMs ?? 30_000);
  const ecs = await startFakeEcs({
    logDir: join(data.path, "tasks"),
    taskDefinitions: [
      {
        name: "jnlp-agent:3",
        containerName: "agent",
        behaviour: { kind: "agent", entrypoint: [process.execPath, ENTRYPOINT] },
        environment: { AGENT_GRACE_MS: "300", AGENT_DRAIN_MS: "200" },
      },
      { name: "hang:1", containerName: "agent", behaviour: { kind: "hang" } },
      {
        name: "bad-image:1",
        containerName: "agent",
        behaviour: {
          kind: "fail-to-start",
          stoppedReason: "CannotPullContainerError: pull image manifest has been retried 5 time(s)",
          afterMs: 300,
        },
      },
    ],
  });
  cleanups.push(() => ecs.close());
  const configPath = join(data.path, "controller.yml");
  writeFileSync(
    configPath,
    `# as docs/controller.md shows it, pointed at loopback endpoints
dataDir: ${join(data.path, "data")}
retry: { infrastructure: 2 }
clouds:
  - name: aws
    type: aws
    region: eu-west-1
    endpoints: { ecs: "${ecs.endpoint}", lambda: "${lambda.endpoint}" }
templates:
  - name: lambda-git
    cloud: aws
    labels: [lambda, git, bash]
    connectTimeout: 20s
    overflowLabel: fargate
    lambda: { function: ${FUNCTION}, qualifier: live }
  - name: fargate
    cloud: aws
    labels: [fargate, git, bash, node]
    connectTimeout: 30s
    ecs:
      cluster: default
      taskDefinition: jnlp-agent:3
      container: agent
      capacityProvider: FARGATE_SPOT
      subnets: [subnet-0a1b2c3d]
      securityGroups: [sg-0e1f2a3b]
      secretIn: environment
      tags: { team: ci }
      pollInterval: 200ms
  - name: stuck
    cloud: aws
    labels: [stuck]
    connectTimeout: 4s
    ecs: { cluster: default, taskDefinition: "hang:1", container: agent, capacityProvider: FARGATE, subnets: [subnet-0a1b2c3d], pollInterval: 200ms }
  - name: bad-image
    cloud: aws
    labels: [bad-image]
    connectTimeout: 5m
    ecs: { cluster: default, taskDefinition: "bad-image:1", container: agent, capacityProvider: FARGATE, subnets: [subnet-0a1b2c3d], pollInterval: 200ms }
`,
  );
  const serve = await startServe(["--config", configPath, "--port", "0"], AWS_ENV);
  cleanups.push(async () => {
    serve.child.kill("SIGKILL");
    await serve.exited;
  });
  return { serve, client: new ControllerClient(serve.url), lambda, ecs, dataDir: data.path, configPath };
}

/** Polls the API until the job has ended (bounded). */
async function ended(client: ControllerClient, id: string, timeoutMs = 40_000): Promise<JobRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const record = await client.get(id);
    if (TERMINAL.includes(record.status)) return record;
    if (Date.now() > deadline)
      throw new Error(`job ${id} still ${record.status} after ${timeoutMs} ms: ${JSON.stringify(record)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("controller serve --config with AWS templates (the built bundle, loopback Lambda and ECS)", () => {
  it("runs a job on a Lambda label and one on a Fargate label", async () => {
    const { client, lambda, ecs, serve } = await serveWithAws();
    const onLambda = await client.submit({ labels: ["lambda"], steps: [{ run: "echo on lambda" }] });
    const onFargate = await client.submit({ labels: ["fargate"], steps: [{ run: "echo on fargate" }] });
    const [a, b] = await Promise.all([ended(client, onLambda.id), ended(client, onFargate.id)]);
    expect(a, serve.stderr()).toMatchObject({ status: "succeeded" });
    expect(a.attempts[0]).toMatchObject({ platform: "lambda", template: "lambda-git", cause: "succeeded" });
    expect(b).toMatchObject({ status: "succeeded" });
    expect(b.attempts[0]).toMatchObject({ platform: "ecs", template: "fargate", cause: "succeeded" });
    expect((await client.log(onLambda.id)).toString()).toBe("on lambda\n");
    expect((await client.log(onFargate.id)).toString()).toBe("on fargate\n");
    expect(lambda.invocations).toHaveLength(1);
    expect(ecs.tasks.size).toBe(1);
    expect(ecs.violations).toEqual([]);
    expect(serve.stderr()).not.toMatch(/internal error|\n\s+at /);
  });

  it("takes up a launch whose answer it never stored (killed while RunTask was answered): the task is found by its clientToken, watched and stopped", async () => {
    const { serve, client, ecs, configPath, dataDir } = await serveWithAws();
    // ECS starts the tasks, but the controller dies before it hears their ARNs.
    ecs.answerLater("RunTask", 60_000, 2);
    const stuck = await client.submit({
      labels: ["stuck"],
      retry: { infrastructure: 0 },
      steps: [{ run: "true" }],
    });
    const bad = await client.submit({
      labels: ["bad-image"],
      retry: { infrastructure: 0 },
      steps: [{ run: "true" }],
    });
    await until(() => ecs.tasks.size === 2, 15_000, "both tasks to be started");
    serve.child.kill("SIGKILL");
    await serve.exited;
    // The records as submitted: their lazy write after the launch (within 200 ms) never came.
    const jobsDir = join(dataDir, "data", "jobs");
    for (const id of readdirSync(jobsDir)) {
      const path = join(jobsDir, id, "job.json");
      const record = JSON.parse(readFileSync(path, "utf8")) as JobRecord;
      writeFileSync(path, JSON.stringify({ ...record, attempts: [], status: "queued" }));
    }
    const restarted = await startServe(["--config", configPath, "--port", String(serve.port)], AWS_ENV);
    cleanups.push(async () => {
      restarted.child.kill("SIGKILL");
      await restarted.exited;
    });
    const restartedAt = Date.now();
    const taskFor = (record: JobRecord) =>
      [...ecs.tasks.values()].find((task) =>
        (task.request.tags as { key: string; value: string }[]).some(
          (tag) => tag.key === "agent-name" && tag.value === record.attempts[0]!.agent,
        ),
      );
    // The task that failed to start fails the attempt with its reason, not after its 5 min connectTimeout.
    const badEnd = await ended(client, bad.id);
    expect(Date.now() - restartedAt).toBeLessThan(30_000);
    expect(badEnd.attempts[0]).toMatchObject({
      cause: "stopped-before-connecting",
      platformRef: taskFor(badEnd)!.taskArn,
    });
    expect(badEnd.attempts[0]!.message).toMatch(/CannotPullContainerError/);
    // The task whose agent never connects is stopped: no orphan.
    const stuckEnd = await ended(client, stuck.id);
    expect(stuckEnd.attempts[0]).toMatchObject({
      cause: "never-connected",
      platformRef: taskFor(stuckEnd)!.taskArn,
    });
    await expect.poll(() => taskFor(stuckEnd)!.lastStatus, { timeout: 10_000 }).toBe("STOPPED");
    expect(taskFor(stuckEnd)).toMatchObject({
      stopCode: "UserInitiated",
      stoppedReason: "did not connect in time",
    });
    // Asked again with the same clientToken: no second task.
    expect(ecs.tasks.size).toBe(2);
    expect(ecs.violations).toEqual([]);
    expect(restarted.stderr()).not.toMatch(/internal error|\n\s+at /);
  });
});

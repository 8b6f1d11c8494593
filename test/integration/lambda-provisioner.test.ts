import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { buildTemplates, parseControllerConfig } from "../../controller/config.ts";
import { Controller } from "../../controller/index.ts";
import { type FakeEcs, startFakeEcs } from "../support/fake-ecs.ts";
import { createAgentFunction, type FakeLambda, startFakeLambda } from "../support/fake-lambda.ts";
import { captureLogger, ENTRYPOINT, tempDir } from "../support/harness.ts";

const CREDENTIALS = { accessKeyId: "AKIDTEST", secretAccessKey: "test-secret" };
const FUNCTION = "jnlp-agent-git-bash";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A fake Lambda running the real handler bundle (function `jnlp-agent-git-bash`, alias `live`
 * on version 1, timeout `timeoutMs`), a fake ECS running the container entrypoint, and a
 * controller whose config has a Lambda template (labels lambda, git; overflow to fargate) and a
 * Fargate template.
 */
async function setup(
  timeoutMs: number,
): Promise<{ controller: Controller; lambda: FakeLambda; ecs: FakeEcs }> {
  const data = tempDir("lambda-prov-");
  cleanups.push(data.remove);
  const lambda = await startFakeLambda({ idleSandboxMs: 1_000 });
  cleanups.push(() => lambda.close());
  createAgentFunction(lambda, FUNCTION, timeoutMs);
  const ecs = await startFakeEcs({
    logDir: join(data.path, "tasks"),
    taskDefinitions: [
      {
        name: "jnlp-agent:3",
        containerName: "agent",
        behaviour: { kind: "agent", entrypoint: [process.execPath, ENTRYPOINT] },
        environment: { AGENT_GRACE_MS: "300", AGENT_DRAIN_MS: "200" },
      },
    ],
  });
  cleanups.push(() => ecs.close());
  const config = parseControllerConfig({
    clouds: [
      {
        name: "aws",
        type: "aws",
        region: "eu-west-1",
        endpoints: { lambda: lambda.endpoint, ecs: ecs.endpoint },
      },
    ],
    templates: [
      {
        name: "lambda-git",
        cloud: "aws",
        labels: ["lambda", "git"],
        overflowLabel: "fargate",
        connectTimeout: "20s",
        lambda: { function: FUNCTION, qualifier: "live" },
      },
      {
        name: "fargate",
        cloud: "aws",
        labels: ["fargate", "git"],
        ecs: {
          cluster: "default",
          taskDefinition: "jnlp-agent:3",
          container: "agent",
          capacityProvider: "FARGATE",
          subnets: ["subnet-1"],
          pollInterval: "200ms",
        },
      },
    ],
  });
  const { logger } = captureLogger();
  const controller = await Controller.start({
    dataDir: data.path,
    logger,
    templates: await buildTemplates(config, {
      logger,
      defaultLocalCommand: () => [process.execPath, ENTRYPOINT],
      agentLogDir: join(data.path, "agents"),
      awsCredentials: CREDENTIALS,
    }),
  });
  cleanups.push(() => controller.stop({ endJobs: true }));
  return { controller, lambda, ecs };
}

async function logOf(controller: Controller, id: string): Promise<string> {
  const res = await fetch(new URL(`api/v1/jobs/${id}/log`, controller.url));
  return res.text();
}

describe("the Lambda provisioner against a loopback Lambda (real @aws-sdk/client-lambda, real handler bundle)", () => {
  it("runs a job routed to a Lambda label: an asynchronous Invoke of the alias with the plugin's payload and the mode", async () => {
    const { controller, lambda } = await setup(30_000);
    const record = controller.submit({ labels: ["lambda"], steps: [{ run: "echo on lambda" }] });
    const final = await controller.waitForJob(record.id);
    expect(final.status).toBe("succeeded");
    expect(final.attempts[0]).toMatchObject({
      platform: "lambda",
      template: "lambda-git",
      cause: "succeeded",
    });
    expect(final.agent).toMatchObject({ runtime: "lambda" });
    expect(await logOf(controller, record.id)).toBe("on lambda\n");
    const agent = final.attempts[0]!.agent;
    const invocation = lambda.invocations.find(
      (i) => (i.event as { node_name?: string }).node_name === agent,
    )!;
    expect(invocation).toMatchObject({ invocationType: "Event", qualifier: "live", executedVersion: "1" });
    expect(invocation.event).toEqual({
      url: controller.url,
      node_secret: controller.secretFor(agent),
      node_name: agent,
      mode: "native",
      labels: ["lambda", "git"],
    });
    expect(final.attempts[0]!.platformRef).toContain(`${FUNCTION}:live request ${invocation.requestId}`);
    expect(lambda.faults).toEqual([]);
  });

  it("retries a throttled Invoke with backoff and starts one agent", async () => {
    const { controller, lambda } = await setup(30_000);
    lambda.failNext(2, "TooManyRequestsException", "Invoke");
    const record = controller.submit({ labels: ["lambda"], steps: [{ run: "true" }] });
    expect((await controller.waitForJob(record.id)).status).toBe("succeeded");
    const invokes = lambda.requests.filter((r) => r.operation === "Invoke");
    expect(invokes.map((r) => r.status)).toEqual([429, 429, 202]);
    expect(lambda.invocations).toHaveLength(1);
  });

  it("moves a job longer than the Lambda deadline to the Fargate label, where it succeeds", async () => {
    const { controller, ecs } = await setup(6_000);
    const record = controller.submit({
      labels: ["lambda", "git"],
      steps: [{ run: "echo begin; sleep 7; echo done" }],
    });
    const final = await controller.waitForJob(record.id);
    expect(final.status).toBe("succeeded");
    expect(final.overflow).toEqual({ from: "lambda-git", label: "fargate" });
    expect(final.attempts.map((a) => [a.platform, a.template, a.cause])).toEqual([
      ["lambda", "lambda-git", "deadline"],
      ["ecs", "fargate", "succeeded"],
    ]);
    expect(ecs.tasks.size).toBe(1);
    expect(await logOf(controller, record.id)).toMatch(/^(begin\n)?begin\ndone\n$/);
  });
});

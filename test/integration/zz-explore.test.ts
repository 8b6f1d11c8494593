import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { ControllerClient, type JobRecord } from "../../controller/index.ts";
import { type ServeProcess, startServe } from "../support/controller-process.ts";
import { startFakeEcs } from "../support/fake-ecs.ts";
import { startFakeLambda } from "../support/fake-lambda.ts";
import { ENTRYPOINT, FIXTURES, tempDir } from "../support/harness.ts";

const AWS_ENV = { AWS_ACCESS_KEY_ID: "AKIDSERVE", AWS_SECRET_ACCESS_KEY: "serve-secret" };
const TERMINAL = ["succeeded", "failed", "error", "cancelled"];
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c(); });

async function ended(client: ControllerClient, id: string, timeoutMs = 60_000): Promise<JobRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const record = await client.get(id);
    if (TERMINAL.includes(record.status)) return record;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${record.status}: ${JSON.stringify(record)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

it("explore", async () => {
  const data = tempDir("explore-");
  const lambda = await startFakeLambda({ idleSandboxMs: 1_000 });
  cleanups.push(() => lambda.close());
  lambda.createFunction({ name: "fn", timeoutMs: 60_000, environment: { AGENT_DEADLINE_MARGIN_MS: "1000", AGENT_CLOUDWATCH: "off", AGENT_LABELS: "git bash", AGENT_GRACE_MS: "300", AGENT_DRAIN_MS: "200" }, maximumRetryAttempts: 0 });
  lambda.setAlias("fn", "live", lambda.publish("fn"));
  const ecs = await startFakeEcs({ logDir: join(data.path, "tasks"), taskDefinitions: [
    { name: "jnlp-agent:3", containerName: "agent", behaviour: { kind: "agent", entrypoint: [process.execPath, ENTRYPOINT] }, environment: { AGENT_GRACE_MS: "300", AGENT_DRAIN_MS: "200" } },
    { name: "bad:1", containerName: "agent", behaviour: { kind: "fail-to-start", stoppedReason: "CannotPullContainerError: nope", afterMs: 300 } },
  ] });
  cleanups.push(() => ecs.close());
  const configPath = join(data.path, "controller.yml");
  writeFileSync(configPath, `dataDir: ${join(data.path, "data")}
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
    lambda: { function: fn, qualifier: live }
  - name: bad
    cloud: aws
    labels: [bad]
    ecs: { cluster: default, taskDefinition: "bad:1", container: agent, capacityProvider: FARGATE, subnets: [subnet-1], securityGroups: [sg-1], pollInterval: 200ms }
  - name: fargate
    cloud: aws
    labels: [fargate, git, bash, node]
    connectTimeout: 30s
    ecs: { cluster: default, taskDefinition: "jnlp-agent:3", container: agent, capacityProvider: FARGATE_SPOT, subnets: [subnet-1], securityGroups: [sg-1], pollInterval: 200ms }
`);
  let serve: ServeProcess = await startServe(["--config", configPath, "--port", "0"], AWS_ENV);
  cleanups.push(async () => { serve.child.kill("SIGKILL"); await serve.exited; });
  const client = new ControllerClient(serve.url);
  const size = 3 * 1024 * 1024;
  const step = { argv: ["node", join(FIXTURES, "write-bytes-slowly.mjs"), String(size), "16384", "20"] };
  const onLambda = await client.submit({ labels: ["lambda"], steps: [step] });
  const onFargate = await client.submit({ labels: ["fargate"], steps: [step] });
  const bad = await client.submit({ labels: ["bad"], retry: { infrastructure: 1 }, steps: [{ run: "true" }] });
  const t0 = Date.now();
  while (!(ecs.tasks.size >= 1 && lambda.invocations.length >= 1)) await new Promise((r) => setTimeout(r, 5));
  console.log("launched after", Date.now() - t0);
  serve.child.kill("SIGKILL");
  await serve.exited;
  const firstErr = serve.stderr();
  await new Promise((r) => setTimeout(r, 4000));
  serve = await startServe(["--config", configPath, "--port", String(serve.port)], AWS_ENV);
  const [a, b, c] = await Promise.all([ended(client, onLambda.id), ended(client, onFargate.id), ended(client, bad.id)]);
  console.log(JSON.stringify({ a, b, c }, null, 1).slice(0, 6000));
  console.log(firstErr.slice(-3000));
  console.log(serve.stderr().slice(-6000));
  expect((await client.log(onLambda.id)).length).toBe(size);
  expect((await client.log(onFargate.id)).length).toBe(size);
  console.log(ecs.violations, lambda.invocations.length, [...ecs.tasks.values()].map((t) => [t.lastStatus, t.stoppedReason]));
}, 120_000);

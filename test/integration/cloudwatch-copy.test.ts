import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { cloudWatchSettings, ExitCode, MAX_EVENT_MESSAGE_BYTES, runAgent } from "../../agent-core/index.ts";
import { startFakeCloudWatch } from "../support/fake-cloudwatch.ts";
import {
  agentConfigFor,
  captureLogger,
  FIXTURES,
  startController,
  type TestController,
  tempDir,
} from "../support/harness.ts";
import { tcpProxy } from "../support/tcp-proxy.ts";

// The SDK warns in plain text on Node < 22; the wrappers turn it off the same way.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";

let ctl: TestController;
let cloud: Awaited<ReturnType<typeof startFakeCloudWatch>>;
beforeEach(async () => {
  ctl = await startController();
  cloud = await startFakeCloudWatch();
});
afterEach(async () => {
  await cloud.close();
  await ctl.close();
});

const GROUP = "/ephemeral-agent/local";

function copyOptions(name: string) {
  const settings = cloudWatchSettings(
    { AGENT_CLOUDWATCH: "on", AWS_REGION: "eu-west-1", AGENT_LOG_GROUP: GROUP },
    "local",
    name,
  );
  return { settings, clientConfig: cloud.clientConfig };
}

const lines = (name: string) => (cloud.events(GROUP, name) ?? []).map((e) => e.message);

describe("the CloudWatch copy of the job log", () => {
  it("holds the whole job log in order, masked, and the controller's job log says where it is", async () => {
    const name = "cw-agent";
    const job = ctl.controller.submit({
      name: "copied",
      secrets: { TOKEN: "hunter2-is-secret" },
      steps: [
        { name: "Greet", run: "echo hello; echo token=$TOKEN; printf 'no newline'" },
        { run: "echo oops >&2; exit 3" },
      ],
    });
    const { logger } = captureLogger();
    const outcome = await runAgent(agentConfigFor(ctl.controller, name), {
      logger,
      cloudWatch: copyOptions(name),
    });
    expect(outcome.exitCode).toBe(ExitCode.jobFailed);
    expect(outcome.logs).toMatchObject({
      region: "eu-west-1",
      group: GROUP,
      stream: name,
      summary: { sentEvents: 10, droppedEvents: 0 },
    });
    expect(lines(name)).toEqual([
      `=== job ${job.id} (copied) on agent ${name}`,
      "==> [1/2] Greet",
      "hello",
      "token=***",
      "no newline",
      expect.stringMatching(/^<== \[1\/2\] Greet: exit 0 in \d+ ms$/),
      "==> [2/2] step 2",
      "oops",
      expect.stringMatching(/^<== \[2\/2\] step 2: exit 3 in \d+ ms$/),
      expect.stringMatching(/^=== job failed \(exit\) in \d+ ms$/),
    ]);
    const record = await ctl.controller.waitForJob(job.id);
    expect(record.agent?.logs).toEqual({
      region: "eu-west-1",
      group: GROUP,
      stream: name,
      url: expect.stringContaining(
        "eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups",
      ),
    });
    const events = [];
    for await (const event of ctl.client.events(job.id, false)) events.push(event);
    expect(events.find((e) => e.type === "status" && e.status === "assigned")).toMatchObject({
      logs: { stream: name },
    });
  });

  it("cuts one 16 MiB line without a newline into events as it arrives (each within the event limit)", async () => {
    // 48 MiB (the input) in test/unit/job-log-lines.test.ts; here end to end, smaller.
    const name = "cw-long-line";
    const size = 16 * 1_048_576;
    const job = ctl.controller.submit({ steps: [{ run: `head -c ${size} /dev/zero | tr '\\0' x` }] });
    const { logger } = captureLogger();
    const outcome = await runAgent(agentConfigFor(ctl.controller, name), {
      logger,
      cloudWatch: copyOptions(name),
    });
    expect(outcome.exitCode).toBe(ExitCode.ok);
    expect((await ctl.controller.waitForJob(job.id)).steps[0]).toMatchObject({ stdoutBytes: size });
    const stored = lines(name);
    const body = stored.filter((line) => line.startsWith("x"));
    expect(body.length).toBeGreaterThan(0);
    for (const line of body) expect(Buffer.byteLength(line)).toBeLessThanOrEqual(MAX_EVENT_MESSAGE_BYTES);
    // The sink's memory bound may drop some pieces under this burst: counted, never silently.
    const summary = outcome.logs?.summary;
    const pieces = Math.ceil(size / MAX_EVENT_MESSAGE_BYTES);
    expect(body.length + (summary?.droppedEvents ?? 0)).toBe(pieces);
    expect(stored.at(-2)).toMatch(/^<== \[1\/1\] step 1: exit 0 in \d+ ms$/);
  });

  it("is complete when the controller never comes back", async () => {
    const proxy = await tcpProxy(ctl.controller.url);
    const dir = tempDir("cw-");
    try {
      const record = join(dir.path, "record.txt");
      const name = "cw-orphan";
      const job = ctl.controller.submit({
        steps: [{ argv: ["node", join(FIXTURES, "tick-and-record.mjs"), record] }],
      });
      const { logger } = captureLogger();
      const config = agentConfigFor(ctl.controller, name, { url: proxy.url, reconnectTimeoutMs: 500 });
      const running = runAgent(config, { logger, cloudWatch: copyOptions(name) });
      await expect.poll(() => ctl.controller.getJob(job.id)?.logBytes ?? 0).toBeGreaterThan(2_000);
      await proxy.close();
      const outcome = await running;
      expect(outcome.exitCode).toBe(ExitCode.controllerFailure);
      expect(outcome.logs?.summary).toMatchObject({ droppedEvents: 0 });
      // Every line the step wrote before it was stopped is in CloudWatch, in order; the controller has fewer.
      const written = readFileSync(record, "utf8").trimEnd().split("\n");
      const copied = lines(name).filter((line) => line.startsWith("tick "));
      expect(copied.slice(0, written.length)).toEqual(written);
      expect(copied.length - written.length).toBeLessThanOrEqual(1);
      expect((await ctl.client.log(job.id)).toString().split("\n").length).toBeLessThan(written.length);
    } finally {
      await proxy.close().catch(() => {});
      dir.remove();
    }
  });
});

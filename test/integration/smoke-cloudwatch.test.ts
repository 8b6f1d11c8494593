import { InvokeCommand, LambdaClient } from "@aws-sdk/client-lambda";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SmokeReport } from "../../lambda-handler/index.ts";
import { type FakeCloudWatch, startFakeCloudWatch } from "../support/fake-cloudwatch.ts";
import { startFakeLambda } from "../support/fake-lambda.ts";
import { closedPort } from "../support/harness.ts";

/**
 * The smoke test's CloudWatch check, run by the real handler bundle in the fake Lambda: when it
 * fails, its detail names the likely cause (a missing permission, no network).
 */

// A 5 s deadline for the checks, and 5 s of slack before the function's timeout.
const ENV = { AGENT_SMOKE_TOOLS: "bash", AGENT_DEADLINE_MARGIN_MS: "5000" };

let cloud: FakeCloudWatch;
beforeAll(async () => {
  cloud = await startFakeCloudWatch();
  cloud.createGroup("/ephemeral-agent/lambda");
});
afterAll(async () => {
  await cloud.close();
});

async function smokeWith(endpoint: string): Promise<{ report: SmokeReport | null; errorMessage: string }> {
  const lambda = await startFakeLambda({ extraEnv: { AWS_ENDPOINT_URL_CLOUDWATCH_LOGS: endpoint } });
  const client = new LambdaClient(lambda.clientConfig);
  try {
    lambda.createFunction({ name: "jnlp-agent-cw", timeoutMs: 10_000, environment: ENV });
    const output = await client.send(
      new InvokeCommand({ FunctionName: "jnlp-agent-cw", Payload: Buffer.from('{"smoke":true}') }),
    );
    const payload = JSON.parse(Buffer.from(output.Payload!).toString()) as
      | SmokeReport
      | { errorMessage: string };
    if ("smoke" in payload) return { report: payload, errorMessage: "" };
    const message = payload.errorMessage;
    return {
      report: JSON.parse(message.slice(message.indexOf("\n") + 1)) as SmokeReport,
      errorMessage: message,
    };
  } finally {
    client.destroy();
    await lambda.close();
  }
}

const cloudwatchCheck = (report: SmokeReport | null) => report?.checks.find((c) => c.name === "cloudwatch");

describe("the smoke test's CloudWatch check", () => {
  it("passes when the role may write", async () => {
    const { report } = await smokeWith(cloud.endpoint);
    expect(cloudwatchCheck(report)).toMatchObject({
      ok: true,
      detail: expect.stringContaining("wrote a line"),
    });
  });

  it("names a missing permission when the service refuses access", async () => {
    cloud.failNext(Number.POSITIVE_INFINITY, "AccessDeniedException");
    try {
      const { report, errorMessage } = await smokeWith(cloud.endpoint);
      expect(errorMessage).toMatch(/^AGENT_ERR_SMOKE_FAILED: .*\(cloudwatch\)/);
      expect(cloudwatchCheck(report)).toMatchObject({
        ok: false,
        detail: expect.stringMatching(
          /refused\): a missing permission: the role needs logs:CreateLogStream and logs:PutLogEvents on \/ephemeral-agent\/lambda \(AccessDeniedException/,
        ),
      });
    } finally {
      cloud.clearFailures();
    }
  });

  it("names the network when CloudWatch Logs cannot be reached", async () => {
    const { report } = await smokeWith(`http://127.0.0.1:${await closedPort()}`);
    expect(cloudwatchCheck(report)).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/: no network: logs\.us-east-1\.amazonaws\.com could not be reached/),
    });
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode } from "../../agent-core/index.ts";
import type { InvocationSummary, SmokeReport } from "../../lambda-handler/index.ts";
import {
  type FakeLambdaRuntime,
  type InvokeResult,
  startFakeLambdaRuntime,
} from "../support/fake-lambda-runtime.ts";
import { startController, type TestController } from "../support/harness.ts";
import { type Container, IMAGES, startContainer } from "./support/image.ts";

/**
 * The default image in Lambda mode: started with AWS_LAMBDA_RUNTIME_API (and the variables Lambda
 * sets), on a read-only root with a writable /tmp and Lambda's own uid, against the loopback
 * Runtime API. One warm container serves every invocation in turn, as a Lambda sandbox does.
 */
let ctl: TestController;
let api: FakeLambdaRuntime;
let container: Container;

beforeAll(async () => {
  ctl = await startController();
  api = await startFakeLambdaRuntime();
  container = await startContainer(IMAGES.default, {
    lambda: true,
    env: {
      AWS_LAMBDA_RUNTIME_API: api.address,
      AWS_LAMBDA_FUNCTION_NAME: "jnlp-agent-git-bash",
      AWS_LAMBDA_FUNCTION_VERSION: "$LATEST",
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "256",
      AWS_LAMBDA_LOG_GROUP_NAME: "/aws/lambda/jnlp-agent-git-bash",
      AWS_LAMBDA_LOG_STREAM_NAME: "2026/11/30/[$LATEST]image",
      AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: "AKIAEXAMPLE",
      AWS_SECRET_ACCESS_KEY: "role-secret-access-key-value",
      AWS_SESSION_TOKEN: "role-session-token",
      AGENT_CLOUDWATCH: "off",
      AGENT_LABELS: "git bash",
      AGENT_SMOKE_TOOLS: "bash,git",
      AGENT_DEADLINE_MARGIN_MS: "3000",
      AGENT_DEADLINE_STEP_START_MIN_MS: "1000",
      AGENT_GRACE_MS: "1000",
    },
  });
  const ready = await Promise.race([
    api.ready(),
    container.exited.then((exit) => ({ kind: "exited" as const, exit })),
  ]);
  expect(ready, container.stderr()).toEqual({ kind: "next" });
}, 60_000);

afterAll(async () => {
  await container?.remove();
  await api?.close();
  await ctl?.close();
});

function responseOf(result: InvokeResult): unknown {
  expect(result.status, `${JSON.stringify(result)}\n${container.stderr()}`).toBe("response");
  return (result as Extract<InvokeResult, { status: "response" }>).body;
}

describe("the default image, Lambda mode (Runtime API)", () => {
  it("answers a smoke invocation: tools present, /tmp writable, the controller reachable", async () => {
    const report = responseOf(await api.invoke({ smoke: true, url: ctl.controller.url })) as SmokeReport;
    expect(report).toMatchObject({
      smoke: true,
      ok: true,
      runtime: "lambda",
      function: { name: "jnlp-agent-git-bash", memoryMb: 256 },
    });
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.checks.map((c) => c.name)).toEqual(
      expect.arrayContaining(["tmp-writable", "tool:bash", "tool:git", "controller"]),
    );
  });

  it("runs a job from the Jenkins plugin's payload {url, node_secret, node_name} against the reference controller", async () => {
    const name = "image.lambda-abcdef";
    const job = ctl.controller.submit({
      steps: [
        {
          run: [
            'test -z "${AWS_SECRET_ACCESS_KEY:-}${AWS_LAMBDA_RUNTIME_API:-}"',
            'test "$(id -u)" = 993',
            "git init -q repo && cd repo && git -c user.email=a@b -c user.name=a commit -q --allow-empty -m one",
            'echo "commits=$(git rev-list --count HEAD) home=$HOME"',
          ].join("\n"),
        },
      ],
    });
    const result = await api.invoke(
      { url: ctl.controller.url, node_secret: ctl.controller.secretFor(name), node_name: name },
      { timeoutMs: 120_000 },
    );
    const summary = responseOf(result) as InvocationSummary;
    expect(summary).toMatchObject({
      agent: name,
      jobId: job.id,
      result: "succeeded",
      exitCode: ExitCode.ok,
      logs: { requestId: result.requestId },
    });
    const log = (await ctl.client.log(job.id)).toString("utf8");
    expect(log).toMatch(/commits=1 home=\/tmp\//);
    expect((await ctl.controller.waitForJob(job.id)).agent?.labels).toEqual(["git", "bash"]);
  });

  it("turns an invalid event into an invocation error, and keeps serving", async () => {
    const result = await api.invoke({ url: "ftp://example", node_secret: "s3cr3t-s3cr3t", node_name: "x" });
    expect(result.status).toBe("error");
    const { error } = result as Extract<InvokeResult, { status: "error" }>;
    expect(error).toMatchObject({ headerType: "ConfigError", errorType: "ConfigError" });
    expect(error.errorMessage).toMatch(/^AGENT_ERR_CONFIG: [\s\S]*- url: /);
    expect(JSON.stringify(error)).not.toContain("s3cr3t-s3cr3t");
    expect(container.stderr()).not.toContain("s3cr3t-s3cr3t");
  });

  it("ends a long step with reason deadline before Lambda-Runtime-Deadline-Ms", async () => {
    const name = "deadline.lambda-abcdef";
    const job = ctl.controller.submit({ steps: [{ run: "sleep 300" }, { run: "echo never" }] });
    const result = await api.invoke(
      { url: ctl.controller.url, node_secret: ctl.controller.secretFor(name), node_name: name },
      { timeoutMs: 12_000 },
    );
    const summary = responseOf(result) as InvocationSummary;
    expect(result.endedAt).toBeLessThan(result.deadlineMs);
    expect(summary).toMatchObject({
      result: "failed",
      reason: "deadline",
      exitCode: ExitCode.deadline,
      failedStepId: "1",
    });
    expect(summary.limits.deadlineAt).toBeLessThanOrEqual(result.deadlineMs - 3_000);
    expect((await ctl.controller.waitForJob(job.id)).steps[0]).toMatchObject({ reason: "deadline" });
    // Every call the runtime made followed the documented API.
    expect(api.violations).toEqual([]);
  });
});

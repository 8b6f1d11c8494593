import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SmokeReport } from "../../lambda-handler/index.ts";
import { type FakeCloudWatch, startFakeCloudWatch } from "../support/fake-cloudwatch.ts";
import { startController, type TestController, tempDir } from "../support/harness.ts";
import { type OslsRun, osls as oslsIn } from "../support/osls.ts";

/**
 * `osls invoke local` must run the bundle's smoke test and a job, as the Serverless Framework
 * loads the handler, with dummy credentials and the CloudWatch Logs copy pointed at the fake
 * service. (Packaging is lambda-osls.test.ts.)
 */
let scratch: ReturnType<typeof tempDir>;
beforeAll(() => {
  scratch = tempDir("osls-invoke-");
});
afterAll(() => {
  scratch.remove();
});

describe("osls invoke local: the smoke test through the real bundle", () => {
  let ctl: TestController;
  let cloud: FakeCloudWatch;
  beforeAll(async () => {
    ctl = await startController();
    cloud = await startFakeCloudWatch();
    cloud.createGroup("/ephemeral-agent/lambda");
  });
  afterAll(async () => {
    await cloud.close();
    await ctl.close();
  });

  /** osls invoke local sets AWS_LAMBDA_FUNCTION_NAME, so the CloudWatch copy is on, as on Lambda. */
  const osls = (args: string[], home: string) =>
    oslsIn(args, home, { env: { AWS_ENDPOINT_URL_CLOUDWATCH_LOGS: cloud.endpoint } });

  /** The JSON osls prints: the handler's result, or `{errorMessage, errorType}`. */
  function printed(run: OslsRun): Record<string, unknown> {
    const start = run.stdout.indexOf("{");
    expect(start, `${run.stdout}\n${run.stderr}`).toBeGreaterThanOrEqual(0);
    return JSON.parse(run.stdout.slice(start)) as Record<string, unknown>;
  }

  it("jnlp-agent-git-bash passes its smoke test", async () => {
    const run = await osls(
      ["invoke", "local", "-f", "jnlp-agent-git-bash", "--data", '{"smoke":true}'],
      scratch.path,
    );
    expect(run.code, run.stderr).toBe(0);
    const report = printed(run) as unknown as SmokeReport;
    expect(report).toMatchObject({ smoke: true, ok: true, runtime: "lambda" });
    expect(report.function.name).toBe("jnlp-agent-git-bash");
    expect(report.checks.map((c) => c.name)).toEqual([
      "tmp-writable",
      "tmp-space",
      "tool:bash",
      "tool:git",
      "controller",
      "cloudwatch",
    ]);
    expect(report.checks.find((c) => c.name === "tmp-space")?.detail).toContain("declared 2048 MB");
    expect(report.checks.find((c) => c.name === "cloudwatch")).toMatchObject({ ok: true });
    expect(cloud.events("/ephemeral-agent/lambda", "smoke-test")?.[0]?.message).toMatch(
      /CloudWatch Logs writable/,
    );
  });

  it("jnlp-agent-git-bash-node also checks node, and the controller when given a url", async () => {
    const data = JSON.stringify({ smoke: true, url: ctl.controller.url });
    const run = await osls(
      ["invoke", "local", "-f", "jnlp-agent-git-bash-node", "--data", data],
      scratch.path,
    );
    expect(run.code, run.stderr).toBe(0);
    const report = printed(run) as unknown as SmokeReport;
    expect(report.ok).toBe(true);
    expect(report.checks.map((c) => c.name)).toContain("tool:node");
    expect(report.checks.find((c) => c.name === "controller")).toMatchObject({
      ok: true,
      detail: expect.stringContaining("HTTP 403"),
    });
  });

  it("runs a job from the Jenkins plugin's payload and prints the summary", async () => {
    const name = "osls.lambda-abcdef";
    const record = ctl.controller.submit({
      steps: [{ run: 'test -z "${AWS_SECRET_ACCESS_KEY:-}" && git --version && echo "HOME=$HOME"' }],
    });
    const data = JSON.stringify({
      url: ctl.controller.url,
      node_secret: ctl.controller.secretFor(name),
      node_name: name,
    });
    const run = await osls(["invoke", "local", "-f", "jnlp-agent-git-bash", "--data", data], scratch.path);
    expect(run.code, run.stderr).toBe(0);
    expect(printed(run)).toMatchObject({
      agent: name,
      jobId: record.id,
      result: "succeeded",
      exitCode: 0,
      logs: { group: "/aws/lambda/jnlp-agent-git-bash" },
    });
    expect((await ctl.controller.waitForJob(record.id)).agent?.labels).toEqual(["git", "bash"]);
    // The work dir is this run's own TMPDIR's (test runs sharing the machine cannot remove it).
    expect((await ctl.client.log(record.id)).toString()).toContain(
      `HOME=${join(scratch.path, "lambda-agent", "home")}\n`,
    );
    expect(`${run.stdout}${run.stderr}`).not.toContain(ctl.controller.secretFor(name));
  });

  it("fails the invocation when a check fails, with the report in the error", async () => {
    const run = await osls(
      [
        "invoke",
        "local",
        "-f",
        "jnlp-agent-git-bash",
        "--data",
        '{"smoke":true}',
        "--env",
        "AGENT_SMOKE_TOOLS=bash,git,definitely-not-installed",
      ],
      scratch.path,
    );
    expect(run.code).toBe(1);
    // (errorType is the class name, which the minified bundle does not keep: the code is the contract.)
    const error = printed(run) as { errorMessage: string };
    const [first, json] = [
      error.errorMessage.split("\n")[0],
      error.errorMessage.slice(error.errorMessage.indexOf("\n") + 1),
    ];
    expect(first).toBe(
      "AGENT_ERR_SMOKE_FAILED: smoke test failed: 1 of 7 checks failed (tool:definitely-not-installed)",
    );
    expect((JSON.parse(json) as SmokeReport).ok).toBe(false);
  });

  it("rejects a malformed event as AGENT_ERR_CONFIG", async () => {
    const run = await osls(
      [
        "invoke",
        "local",
        "-f",
        "jnlp-agent-git-bash",
        "--data",
        '{"url":"ftp://x","node_secret":"s3cr3t-s3cr3t"}',
      ],
      scratch.path,
    );
    expect(run.code).toBe(1);
    const error = printed(run) as { errorMessage: string };
    expect(error.errorMessage).toMatch(/^AGENT_ERR_CONFIG: /);
    expect(error.errorMessage).toContain("\n  - url: must be an http(s):// or ws(s):// URL");
    expect(error.errorMessage).toContain("\n  - node_name: missing");
    expect(`${run.stdout}${run.stderr}`).not.toContain("s3cr3t-s3cr3t");
  });
});

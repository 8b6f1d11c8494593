import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode } from "../../agent-core/index.ts";
import type { InvocationSummary, SmokeReport } from "../../lambda-handler/index.ts";
import {
  type FakeLambdaRuntime,
  type InvokeResult,
  startFakeLambdaRuntime,
} from "../support/fake-lambda-runtime.ts";
import { startController, type TestController } from "../support/harness.ts";
import { expectSecretNowhere, PROC_SCAN_SCRIPT, procScanStep } from "../support/proc-scan.ts";
import { bareRepository, type GitServer, sshKeyPair, startGitSsh } from "./support/git-servers.ts";
import { type Container, IMAGES, startContainer } from "./support/image.ts";

/**
 * The default image in Lambda mode: started with AWS_LAMBDA_RUNTIME_API (and the variables Lambda
 * sets), on a read-only root with a writable /tmp and Lambda's own uid, against the loopback
 * Runtime API. One warm container serves every invocation in turn, as a Lambda sandbox does.
 */
let ctl: TestController;
let api: FakeLambdaRuntime;
let container: Container;
let repos: string;
let ssh: GitServer;
const deployKey = sshKeyPair();
const SCAN = "/opt/probe/proc-secret-scan.sh";

beforeAll(async () => {
  repos = mkdtempSync(join(tmpdir(), "image-lambda-repos-"));
  bareRepository(repos, "app");
  ssh = await startGitSsh(repos, deployKey.public);
  ctl = await startController();
  api = await startFakeLambdaRuntime();
  container = await startContainer(IMAGES.default, {
    lambda: true,
    files: { [SCAN]: { content: readFileSync(PROC_SCAN_SCRIPT), mode: 0o755 } },
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
  await ssh?.close();
  rmSync(repos, { recursive: true, force: true });
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

  it("runs git over ssh as Lambda's user, whom the image's passwd does not list: ssh's ~ is the step's HOME", async () => {
    // OpenSSH exits at once ("No user exists for uid 993") when the user running it has no
    // passwd entry, and takes ~/.ssh from that entry's home, not from $HOME.
    const name = "ssh.lambda-abcdef";
    const job = ctl.controller.submit({
      env: { DEPLOY_KEY: deployKey.private },
      steps: [
        {
          run: [
            'test "$(id -u)" = 993 && id -un >/dev/null && whoami >/dev/null',
            'test "$(getent passwd "$(id -u)" | cut -d: -f6)" = "$HOME" && echo home-ok',
            "mkdir -p ~/.ssh && chmod 700 ~/.ssh",
            'printf "%s\\n" "$DEPLOY_KEY" > ~/.ssh/id_ed25519 && chmod 600 ~/.ssh/id_ed25519',
            `ssh-keyscan -p ${ssh.port} -t ed25519 127.0.0.1 2>/dev/null > ~/.ssh/known_hosts`,
            `GIT_SSH_COMMAND="ssh -o BatchMode=yes" git clone -q ${ssh.url}app.git app && cat app/README`,
          ].join("\n"),
        },
      ],
    });
    const result = await api.invoke(
      { url: ctl.controller.url, node_secret: ctl.controller.secretFor(name), node_name: name },
      { timeoutMs: 120_000 },
    );
    const summary = responseOf(result) as InvocationSummary;
    const log = (await ctl.client.log(job.id)).toString("utf8");
    expect(summary, log).toMatchObject({ jobId: job.id, result: "succeeded", exitCode: ExitCode.ok });
    expect(log).toContain("home-ok\nhello from app\n");
  });

  it("leaves nothing of one job running into the next, warm: what a step started with setsid is gone", async () => {
    // The sandbox is reused: a process left by one job would run beside the next (and read it).
    const scan = `for p in /proc/[0-9]*; do case "$(tr '\\0' ' ' < "$p/cmdline" 2>/dev/null)" in "sleep 607 "*) echo "left: $p";; esac; done; echo scanned`;
    const steps = [
      [
        {
          run: "setsid sleep 607 </dev/null >/dev/null 2>&1 & (setsid sleep 607 </dev/null >/dev/null 2>&1 &); echo started",
        },
      ],
      [{ run: scan }],
    ];
    const logs: string[] = [];
    for (const [n, jobSteps] of steps.entries()) {
      const name = `warm${n}.lambda-abcdef`;
      const job = ctl.controller.submit({ steps: jobSteps });
      const result = await api.invoke(
        { url: ctl.controller.url, node_secret: ctl.controller.secretFor(name), node_name: name },
        { timeoutMs: 60_000 },
      );
      expect(responseOf(result)).toMatchObject({ jobId: job.id, result: "succeeded" });
      logs.push((await ctl.client.log(job.id)).toString("utf8"));
    }
    expect(logs).toEqual(["started\n", "scanned\n"]);
  });

  it("keeps the event's node_secret out of every process's /proc environ and cmdline, PID 1's included", async () => {
    const name = "scan.lambda-abcdef";
    const secret = ctl.controller.secretFor(name);
    const job = ctl.controller.submit({
      steps: [{ run: procScanStep(SCAN, secret) }, { run: 'echo "pid1=$(cat /proc/1/comm)"' }],
    });
    const result = await api.invoke(
      { url: ctl.controller.url, node_secret: secret, node_name: name },
      { timeoutMs: 60_000 },
    );
    expect(responseOf(result)).toMatchObject({ jobId: job.id, result: "succeeded" });
    const log = (await ctl.client.log(job.id)).toString("utf8");
    expectSecretNowhere(log, { pid1: true });
    expect(log).toContain("pid1=tini\n");
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

import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Readable } from "node:stream";
import type { Context } from "aws-lambda";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ExitCode, filesystemSpace } from "../../agent-core/index.ts";
import {
  contextFor,
  createHandler,
  type InvocationSummary,
  type SmokeReport,
  SmokeTestFailedError,
} from "../../lambda-handler/index.ts";
import { fakeController, waitForType } from "../support/fake-peers.ts";
import { startController, type TestController, tempDir } from "../support/harness.ts";
import { slowPeer } from "../support/slow-peer.ts";
import { rawTar } from "../support/tar-builder.ts";

let ctl: TestController;
let root: ReturnType<typeof tempDir>;
beforeAll(async () => {
  ctl = await startController();
  root = tempDir("lambda-handler-");
});
afterAll(async () => {
  await ctl.close();
  root.remove();
});

const ROLE_SECRET = "role-secret-access-key-value";

/** The function's environment, as Lambda would give it (plus short timings for tests). */
function functionEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    AWS_REGION: "eu-west-1",
    AWS_ACCESS_KEY_ID: "AKIAEXAMPLE",
    AWS_SECRET_ACCESS_KEY: ROLE_SECRET,
    AWS_SESSION_TOKEN: "role-session-token",
    AWS_LAMBDA_RUNTIME_API: "127.0.0.1:9001",
    AGENT_DEADLINE_MARGIN_MS: "2000",
    AGENT_GRACE_MS: "500",
    AGENT_DRAIN_MS: "300",
    AGENT_CONNECT_TIMEOUT_MS: "5000",
    AGENT_ACK_TIMEOUT_MS: "5000",
    AGENT_LABELS: "git bash",
    ...extra,
  };
}

/** Lambda's context, as the image's Runtime API loop makes it, for an invocation that times out `remainingMs` from now. */
function context(remainingMs: number): Context {
  return contextUntil(Date.now() + remainingMs);
}

/**
 * The same, for an invocation that times out at `deadlineMs` (epoch ms). Tests that compare
 * times with the invocation's end take it from here: `Date.now() + getRemainingTimeInMillis()`
 * reads the clock twice and can land a millisecond before the real end.
 */
function contextUntil(deadlineMs: number): Context {
  return contextFor(
    {
      requestId: "req-1",
      deadlineMs,
      invokedFunctionArn: "arn:aws:lambda:eu-west-1:123456789012:function:jnlp-agent-git-bash",
      traceId: undefined,
      clientContext: undefined,
      identity: undefined,
      tenantId: undefined,
      body: "{}",
      notes: [],
    },
    {
      AWS_LAMBDA_FUNCTION_NAME: "jnlp-agent-git-bash",
      AWS_LAMBDA_FUNCTION_VERSION: "$LATEST",
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "256",
      AWS_LAMBDA_LOG_GROUP_NAME: "/aws/lambda/jnlp-agent-git-bash",
      AWS_LAMBDA_LOG_STREAM_NAME: "2026/01/01/[$LATEST]abc",
    },
  );
}

function makeHandler(env: Record<string, string> = {}) {
  const lines: string[] = [];
  const handler = createHandler({ env: () => functionEnv(env), write: (line) => lines.push(line) });
  return { handler, lines, entries: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

function asSummary(result: InvocationSummary | SmokeReport): InvocationSummary {
  if ("smoke" in result) throw new Error("expected an invocation summary, got a smoke report");
  return result;
}

let seq = 0;
function workDir(): string {
  seq += 1;
  return join(root.path, `work-${seq}`);
}

function payload(name: string, extra: Record<string, unknown> = {}) {
  return { url: ctl.controller.url, node_secret: ctl.controller.secretFor(name), node_name: name, ...extra };
}

describe("Lambda handler: agent invocations (in process, real controller)", () => {
  it("runs one job from the Jenkins plugin's payload and returns the summary", async () => {
    const name = "build.lambda-abcdef";
    const dir = workDir();
    const record = ctl.controller.submit({
      steps: [{ run: "echo from lambda; echo HOME=$HOME" }, { run: "printf 'err' >&2" }],
    });
    const ctx = context(900_000);
    const { handler, entries, lines } = makeHandler({ AGENT_LOG_LEVEL: "debug" });
    const summary = asSummary(await handler(payload(name, { work_dir: dir }), ctx));
    expect(lines.join("")).not.toContain(ctl.controller.secretFor(name));
    expect(ctx.callbackWaitsForEmptyEventLoop).toBe(false);
    expect(summary).toMatchObject({
      agent: name,
      runtime: "lambda",
      jobId: record.id,
      result: "succeeded",
      reason: "exit",
      exitCode: ExitCode.ok,
      exitName: "ok",
      errorCode: null,
      failedStepId: null,
      logs: {
        group: "/aws/lambda/jnlp-agent-git-bash",
        stream: "2026/01/01/[$LATEST]abc",
        requestId: "req-1",
        jobLog: `${ctl.controller.url.replace(/\/?$/, "/")}api/v1/jobs/${record.id}/log`,
      },
    });
    expect(summary.steps).toEqual([
      expect.objectContaining({ id: "1", exitCode: 0, reason: "exit", stdoutBytes: expect.any(Number) }),
      expect.objectContaining({ id: "2", exitCode: 0, reason: "exit", stdoutBytes: 0, stderrBytes: 3 }),
    ]);
    expect(summary.outputBytes.total).toBe(summary.outputBytes.stdout + 3);
    const t = summary.timings;
    expect(t.invokedAt).toBeLessThanOrEqual(t.connectedAt!);
    expect(t.connectedAt!).toBeLessThanOrEqual(t.jobStartedAt!);
    expect(t.jobStartedAt!).toBeLessThanOrEqual(t.jobEndedAt!);
    expect(t.jobEndedAt!).toBeLessThanOrEqual(t.returnedAt);
    expect(t.totalMs).toBe(t.returnedAt - t.invokedAt);
    expect(summary.limits.diskBudgetBytes).toBeGreaterThan(0);

    const job = await ctl.controller.waitForJob(record.id);
    expect(job.agent).toMatchObject({ runtime: "lambda", labels: ["git", "bash"] });
    const log = (await ctl.client.log(record.id)).toString();
    expect(log).toContain(`HOME=${join(dir, "home")}`);
    expect(entries().find((e) => e.msg === "invocation summary")).toMatchObject({ requestId: "req-1" });
    expect(existsSync(dir)).toBe(false);
  });

  it("handles an event that arrives as a JSON string", async () => {
    const name = "string.lambda-abcdef";
    const record = ctl.controller.submit({ steps: [{ run: "true" }] });
    const { handler, entries } = makeHandler();
    const summary = asSummary(
      await handler(JSON.stringify(payload(name, { work_dir: workDir() })), context(900_000)),
    );
    expect(summary).toMatchObject({ jobId: record.id, result: "succeeded" });
    expect(entries().some((e) => e.msg === "the event arrived as a JSON string and was parsed")).toBe(true);
  });

  it("stops a job that outlives the invocation with reason deadline, and returns before the time runs out", async () => {
    const name = "deadline.lambda-abcdef";
    const record = ctl.controller.submit({ steps: [{ run: "sleep 60" }, { run: "echo never" }] });
    const remainingMs = 7_000;
    const timeoutAt = Date.now() + remainingMs;
    const ctx = contextUntil(timeoutAt);
    const { handler } = makeHandler({
      AGENT_DEADLINE_MARGIN_MS: "2000",
      AGENT_DEADLINE_STEP_START_MIN_MS: "1000",
    });
    const summary = asSummary(await handler(payload(name, { work_dir: workDir() }), ctx));
    // Returned before Lambda's timeout, and the agent's deadline was the margin before it.
    expect(Date.now()).toBeLessThan(timeoutAt);
    expect(summary.timings.returnedAt).toBeLessThan(timeoutAt);
    expect(summary.limits.deadlineAt).toBeLessThanOrEqual(timeoutAt - 2_000);
    // The agent itself (job stopped, job-end acknowledged) finished by its deadline.
    expect(summary.timings.jobEndedAt!).toBeLessThanOrEqual(summary.limits.deadlineAt);
    expect(summary).toMatchObject({
      jobId: record.id,
      result: "failed",
      reason: "deadline",
      exitCode: ExitCode.deadline,
      exitName: "deadline",
      failedStepId: "1",
    });
    expect(summary.steps).toEqual([expect.objectContaining({ id: "1", reason: "deadline" })]);
    const job = await ctl.controller.waitForJob(record.id);
    expect(job.steps[0]).toMatchObject({ reason: "deadline" });
  });

  it("runs warm: two invocations in one process both succeed and leave nothing behind", async () => {
    const dir = workDir();
    const { handler } = makeHandler();
    // A step that fails if anything of an earlier job (HOME, TMPDIR, workspace) or the role's
    // credentials reached it, and that leaves files everywhere it may write.
    const script = [
      'test ! -e "$HOME/marker"',
      'test -z "$(ls -A "$TMPDIR")"',
      'test -z "${AWS_SECRET_ACCESS_KEY:-}${AWS_SESSION_TOKEN:-}${AWS_ACCESS_KEY_ID:-}"',
      'test -z "${AWS_LAMBDA_RUNTIME_API:-}"',
      'touch "$HOME/marker" "$TMPDIR/temp-file"',
      "git config --global user.name lambda-test",
      "mkdir -p out && echo built > out/file",
      "env",
    ].join("\n");
    for (const n of [1, 2]) {
      const record = ctl.controller.submit({ steps: [{ run: script }] });
      const summary = asSummary(
        await handler(payload(`warm-${n}.lambda-abcdef`, { work_dir: dir }), context(900_000)),
      );
      expect(summary, summary.summary).toMatchObject({ jobId: record.id, result: "succeeded" });
      expect(existsSync(dir)).toBe(false);
      const log = (await ctl.client.log(record.id)).toString();
      expect(log).not.toContain(ROLE_SECRET);
    }
  });

  it("runs warm with caches: the second invocation hits what the first wrote; another branch's never sees it; seed and artifacts go through", async () => {
    const dir = workDir();
    const { handler } = makeHandler();
    const run = async (n: number, branch: string, script: string) => {
      // An upload seeds one job.
      const upload = await ctl.controller.uploadWorkspace(
        Readable.from([rawTar([{ path: "src/seed.txt", body: "seeded\n" }])]),
      );
      const record = ctl.controller.submit({
        repository: "github.com/acme/app",
        branch,
        caches: ["npm"],
        workspace: { upload: upload.id },
        artifacts: { paths: ["out"], when: "always" },
        steps: [{ run: script }],
      });
      const summary = asSummary(
        await handler(payload(`cache-${n}.lambda-abcdef`, { work_dir: dir }), context(900_000)),
      );
      expect(summary, summary.summary).toMatchObject({ jobId: record.id, result: "succeeded" });
      return ctl.controller.waitForJob(record.id);
    };
    const write =
      'cat src/seed.txt && mkdir out && cp src/seed.txt out/ && echo warm > "$npm_config_cache/marker"';
    expect(await run(1, "main", write)).toMatchObject({
      caches: { hits: [], misses: ["npm"] },
      transfers: { workspace: { status: "done" }, artifacts: { status: "done", entries: 2 } },
      artifacts: { status: "stored" },
    });
    expect(await run(2, "main", 'test "$(cat "$npm_config_cache/marker")" = warm')).toMatchObject({
      caches: { hits: ["npm"], misses: [] },
    });
    expect(await run(3, "feature/x", 'test ! -e "$npm_config_cache/marker"')).toMatchObject({
      cacheTrust: "github.com/acme/app@unprotected",
      caches: { hits: [], misses: ["npm"], evictions: [expect.objectContaining({ reason: "trust" })] },
    });
    // What outlives the invocations is the caches, and nothing else of the jobs.
    expect(readdirSync(dir)).toEqual(["caches"]);
  });

  it("removes what an invocation stopped at its timeout left behind, and says so", async () => {
    const dir = workDir();
    mkdirSync(join(dir, "workspace", "old-job-1234"), { recursive: true });
    writeFileSync(join(dir, "workspace", "old-job-1234", "big.bin"), "x");
    mkdirSync(join(dir, "home"), { recursive: true });
    writeFileSync(join(dir, "home", ".git-credentials"), "https://user:token@example.com");
    const record = ctl.controller.submit({ steps: [{ run: 'test ! -e "$HOME/.git-credentials"' }] });
    const { handler, entries } = makeHandler();
    const summary = asSummary(
      await handler(payload("left.lambda-abcdef", { work_dir: dir }), context(900_000)),
    );
    expect(summary).toMatchObject({ jobId: record.id, result: "succeeded" });
    expect(entries().find((e) => String(e.msg).startsWith("removed leftovers"))).toMatchObject({
      leftovers: [join(dir, "workspace"), join(dir, "home")],
    });
    expect(existsSync(dir)).toBe(false);
  });

  it("fails with AGENT_ERR_WORKSPACE when the work dir cannot be prepared", async () => {
    const blocker = join(root.path, "a-file");
    writeFileSync(blocker, "not a directory");
    const { handler } = makeHandler();
    const error = await handler(
      payload("ws.lambda-abcdef", { work_dir: join(blocker, "work") }),
      context(900_000),
    ).then(
      () => undefined,
      (e: unknown) => e as Error & { code?: string },
    );
    expect(error).toMatchObject({ code: "AGENT_ERR_WORKSPACE", name: "WorkspaceError" });
    expect(error?.message).toMatch(/^AGENT_ERR_WORKSPACE: cannot prepare the work dir /);
  });

  it("reports a refused agent (wrong secret) in the summary, without a job", async () => {
    const { handler } = makeHandler();
    const summary = asSummary(
      await handler(
        {
          url: ctl.controller.url,
          node_secret: "0".repeat(64),
          node_name: "wrong.lambda-abcdef",
          work_dir: workDir(),
        },
        context(900_000),
      ),
    );
    expect(summary).toMatchObject({
      result: "error",
      jobId: null,
      exitCode: ExitCode.refused,
      exitName: "refused",
      errorCode: "AGENT_ERR_CONTROLLER_REFUSED",
      steps: [],
    });
    expect(summary.summary).not.toContain("0".repeat(64));
  });
});

describe("Lambda handler: malformed invocations fail fast with every problem listed", () => {
  const SECRET = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6";
  const events: { name: string; event: unknown; env?: Record<string, string>; fields: string[] }[] = [
    { name: "no event", event: undefined, fields: ["(event)"] },
    { name: "an array", event: ["u", SECRET, "n"], fields: ["(event)"] },
    {
      name: "the plugin's payload with an unescaped quote",
      event: `{"url": "http://h/", "node_secret": "${SECRET}", "node_name": "x"y"}`,
      fields: ["(event)"],
    },
    { name: "an empty object", event: {}, fields: ["node_name", "node_secret", "url"] },
    { name: "wrong types", event: { url: 5, node_secret: 7 }, fields: ["node_name", "node_secret", "url"] },
    {
      name: "an unknown field and a bad work dir",
      event: { url: "http://h/", node_secret: SECRET, node_name: "n", token: SECRET, work_dir: "/var/task" },
      fields: ["token", "work_dir"],
    },
    {
      name: "a bad deadline margin",
      event: { url: "http://h/", node_secret: SECRET, node_name: "n" },
      env: { AGENT_DEADLINE_MARGIN_MS: "-5" },
      fields: ["AGENT_DEADLINE_MARGIN_MS"],
    },
    {
      name: "a margin longer than the remaining time",
      event: { url: "http://h/", node_secret: SECRET, node_name: "n" },
      env: { AGENT_DEADLINE_MARGIN_MS: "3600000" },
      fields: ["AGENT_DEADLINE_MARGIN_MS"],
    },
  ];

  for (const c of events) {
    it(c.name, async () => {
      const { handler, entries } = makeHandler(c.env);
      const started = Date.now();
      const error = await handler(c.event, context(900_000)).then(
        () => undefined,
        (e: unknown) => e as Error & { code?: string; problems?: { field: string }[] },
      );
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(error?.code).toBe("AGENT_ERR_CONFIG");
      expect(error?.name).toBe("ConfigError");
      expect(error?.message).toMatch(/^AGENT_ERR_CONFIG: /);
      expect(error?.problems?.map((p) => p.field).sort()).toEqual(c.fields);
      expect(error?.message).not.toContain(SECRET);
      const logged = entries().find((e) => e.msg === "invalid invocation");
      expect(logged).toMatchObject({ level: "error", code: "AGENT_ERR_CONFIG" });
      expect(JSON.stringify(entries())).not.toContain(SECRET);
    });
  }
});

describe("Lambda handler: docs/deploy.md's error example", () => {
  it("is word for word what the handler raises for that event", async () => {
    const doc = readFileSync(join(import.meta.dirname, "../../docs/deploy.md"), "utf8");
    const example = /`AGENT_ERR_CONFIG` lists every problem[\s\S]*?```text\n([\s\S]*?)\n```/.exec(doc)?.[1];
    expect(example).toBeDefined();
    const { handler } = makeHandler({ AGENT_DEADLINE_MARGIN_MS: "soon" });
    const event = { url: 5, node_secret: 12_345_678, node_name: "build.lambda-abcdef", token: "t" };
    const error = await handler(event, context(900_000)).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toBe(example);
  });
});

describe("Lambda handler: echoed values are clipped", () => {
  it("a 1 MB unknown field name is not echoed in full into the error or the log", async () => {
    const huge = "f".repeat(1_048_576);
    const { handler, lines } = makeHandler();
    const error = await handler(
      { url: "http://h/", node_secret: "s3cret-value", node_name: "n", [huge]: 1, work_dir: `/tmp/${huge}` },
      context(900_000),
    ).then(
      () => undefined,
      (e: unknown) => e as Error & { problems?: { field: string; message: string }[] },
    );
    expect(error?.message).toMatch(/^AGENT_ERR_CONFIG: /);
    expect(error!.message.length).toBeLessThan(2_000);
    expect(error?.problems?.map((p) => p.field)).toContain(`${"f".repeat(60)}... (1048576 characters)`);
    expect(lines.join("").length).toBeLessThan(4_000);
  });
});

describe("Lambda handler: the summary comes before the invocation's deadline, whatever the peer does", () => {
  it("a peer that answers the upgrade one byte per second", async () => {
    const peer = await slowPeer(1_000);
    try {
      const timeoutAt = Date.now() + 5_000;
      const ctx = contextUntil(timeoutAt);
      const { handler } = makeHandler({
        AGENT_DEADLINE_MARGIN_MS: "2000",
        AGENT_CONNECT_TIMEOUT_MS: "60000",
      });
      const summary = asSummary(
        await handler(
          { url: peer.url, node_secret: "s3cret-value", node_name: "tarpit", work_dir: workDir() },
          ctx,
        ),
      );
      expect(Date.now()).toBeLessThan(timeoutAt);
      // The connect phase ends at the deadline, when the backstop interrupts too: either says it.
      expect(summary.result).toBe("error");
      expect(["AGENT_ERR_CONTROLLER_UNREACHABLE", "AGENT_ERR_INTERRUPTED"]).toContain(summary.errorCode);
    } finally {
      await peer.close();
    }
  });

  it("a peer that takes the job and never acknowledges anything, nor answers a resume", async () => {
    let connections = 0;
    const fake = await fakeController((socket, traffic) => {
      connections++;
      if (connections > 1) return; // a resume is never answered
      void waitForType(traffic, "hello").then(() =>
        socket.send(
          JSON.stringify({ v: 1, type: "job", job: { id: "j1", steps: [{ id: "s1", run: "sleep 60" }] } }),
        ),
      );
    });
    try {
      const timeoutAt = Date.now() + 6_000;
      const ctx = contextUntil(timeoutAt);
      const { handler } = makeHandler({
        AGENT_DEADLINE_MARGIN_MS: "2500",
        AGENT_DEADLINE_STEP_START_MIN_MS: "0",
        AGENT_ACK_TIMEOUT_MS: "30000",
        AGENT_RECONNECT_TIMEOUT_MS: "60000",
      });
      const summary = asSummary(
        await handler(
          { url: fake.url, node_secret: "s3cret-value", node_name: "silent", work_dir: workDir() },
          ctx,
        ),
      );
      expect(Date.now()).toBeLessThan(timeoutAt);
      expect(summary).toMatchObject({
        jobId: "j1",
        result: "failed",
        reason: "deadline",
        exitCode: ExitCode.controllerFailure,
      });
    } finally {
      await fake.close();
    }
  });
});

describe("Lambda handler: smoke mode", () => {
  let jenkins: Server;
  let closedPort: number;
  beforeAll(async () => {
    // Answers like a Jenkins controller: every response carries X-Jenkins.
    jenkins = createServer((_req, res) => {
      res.writeHead(404, { "X-Jenkins": "2.504.1", "Content-Type": "text/plain" });
      res.end("Not Found");
    });
    await new Promise<void>((resolve) => jenkins.listen(0, "127.0.0.1", resolve));
    const spare = createServer();
    await new Promise<void>((resolve) => spare.listen(0, "127.0.0.1", resolve));
    closedPort = (spare.address() as AddressInfo).port;
    await new Promise<void>((resolve) => spare.close(() => resolve()));
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => jenkins.close(() => resolve()));
  });
  afterEach(() => {
    expect(readdirSync(root.path).filter((d) => d.startsWith("smoke"))).toEqual([]);
  });

  function smokeDir(): string {
    seq += 1;
    return join(root.path, `smoke-${seq}`);
  }

  async function smokeFails(handlerResult: Promise<unknown>): Promise<SmokeReport> {
    const error = await handlerResult.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(SmokeTestFailedError);
    const failed = error as SmokeTestFailedError;
    expect(failed.code).toBe("AGENT_ERR_SMOKE_FAILED");
    expect(failed.message.split("\n")[0]).toBe(`AGENT_ERR_SMOKE_FAILED: ${failed.report.summary}`);
    expect(JSON.parse(failed.message.slice(failed.message.indexOf("\n") + 1))).toEqual(failed.report);
    return failed.report;
  }

  const check = (report: SmokeReport, name: string) => report.checks.find((c) => c.name === name);

  it("passes with a url: the work dir, the space, the tools and a protocol v1 controller", async () => {
    const { handler } = makeHandler({
      AGENT_SMOKE_TOOLS: "bash,git,node",
      AGENT_EPHEMERAL_STORAGE_MB: "512",
    });
    const report = (await handler(
      { smoke: true, url: ctl.controller.url, work_dir: smokeDir() },
      context(900_000),
    )) as SmokeReport;
    expect(report).toMatchObject({ smoke: true, ok: true, runtime: "lambda" });
    expect(report.function).toMatchObject({
      name: "jnlp-agent-git-bash",
      memoryMb: 256,
      region: "eu-west-1",
    });
    expect(report.checks.map((c) => c.name)).toEqual([
      "tmp-writable",
      "tmp-space",
      "tool:bash",
      "tool:git",
      "tool:node",
      "controller",
      "cloudwatch",
    ]);
    for (const c of report.checks) {
      expect(c).toEqual({
        name: c.name,
        ok: true,
        detail: expect.any(String),
        durationMs: expect.any(Number),
        ...(c.skipped ? { skipped: true } : {}),
      });
    }
    expect(check(report, "tool:git")?.detail).toMatch(/^git version /);
    expect(check(report, "tool:node")?.detail).toBe(process.version);
    expect(check(report, "controller")?.detail).toContain("HTTP 403");
    expect(check(report, "cloudwatch")).toMatchObject({ ok: true, skipped: true });
  });

  it("authenticates with node_name and node_secret, and takes no job", async () => {
    const name = "smoke.lambda-abcdef";
    const { handler } = makeHandler();
    const report = (await handler(
      { smoke: true, ...payload(name), work_dir: smokeDir() },
      context(900_000),
    )) as SmokeReport;
    expect(check(report, "controller")).toMatchObject({
      ok: true,
      detail: expect.stringContaining("HTTP 101"),
    });
    expect(JSON.stringify(report)).not.toContain(ctl.controller.secretFor(name));
    expect(ctl.controller.listAgents().map((a) => a.name)).not.toContain(name);
  });

  it("fails on a wrong secret, a Jenkins controller, an unreachable url and a missing tool", async () => {
    const { handler } = makeHandler({ AGENT_SMOKE_TOOLS: "bash,no-such-tool-here" });
    const wrong = await smokeFails(
      handler(
        {
          smoke: true,
          url: ctl.controller.url,
          node_name: "x.lambda-abcdef",
          node_secret: "f".repeat(64),
          work_dir: smokeDir(),
        },
        context(900_000),
      ),
    );
    expect(check(wrong, "controller")).toMatchObject({
      ok: false,
      detail: expect.stringContaining("HTTP 403"),
    });
    expect(check(wrong, "tool:no-such-tool-here")).toMatchObject({
      ok: false,
      detail: expect.stringContaining("not found"),
    });
    expect(check(wrong, "tool:bash")?.ok).toBe(true);
    expect(wrong.summary).toBe(
      "smoke test failed: 2 of 6 checks failed (tool:no-such-tool-here, controller)",
    );

    const port = (jenkins.address() as AddressInfo).port;
    const notV1 = await smokeFails(
      handler({ smoke: true, url: `http://127.0.0.1:${port}/`, work_dir: smokeDir() }, context(900_000)),
    );
    expect(check(notV1, "controller")?.detail).toContain("is a Jenkins controller (X-Jenkins: 2.504.1)");

    const unreachable = await smokeFails(
      handler(
        { smoke: true, url: `http://127.0.0.1:${closedPort}/`, work_dir: smokeDir() },
        context(900_000),
      ),
    );
    expect(check(unreachable, "controller")?.detail).toMatch(/cannot reach .*ECONNREFUSED/);
  });

  it("fails when /tmp is smaller than the function declares", async () => {
    const { handler } = makeHandler({ AGENT_EPHEMERAL_STORAGE_MB: "10240" });
    const space = filesystemSpace(root.path);
    // Only meaningful where the filesystem is below the declared 10 GiB, as in a Lambda with 512 MB.
    if (space.totalBytes >= 10_240 * 1_048_576 * 0.9) {
      const report = (await handler({ smoke: true, work_dir: smokeDir() }, context(900_000))) as SmokeReport;
      expect(check(report, "tmp-space")).toMatchObject({
        ok: true,
        detail: expect.stringContaining("declared 10240 MB"),
      });
      return;
    }
    const report = await smokeFails(handler({ smoke: true, work_dir: smokeDir() }, context(900_000)));
    expect(check(report, "tmp-space")?.detail).toContain("the filesystem is smaller");
  });
});

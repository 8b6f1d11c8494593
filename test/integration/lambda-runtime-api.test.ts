import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { join } from "node:path";
import type { Context, Handler } from "aws-lambda";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ExitCode } from "../../agent-core/index.ts";
import {
  type InvocationSummary,
  MAX_ERROR_BODY_BYTES,
  parseRuntimeApi,
  RuntimeApiClient,
  RuntimeApiError,
  RuntimeInitError,
  runBootstrap,
  runRuntimeLoop,
  type SmokeReport,
} from "../../lambda-handler/index.ts";
import {
  type FakeLambdaRuntime,
  type InvokeResult,
  startFakeLambdaRuntime,
} from "../support/fake-lambda-runtime.ts";
import { captureLogger, ROOT, startController, type TestController, tempDir } from "../support/harness.ts";

const BOOTSTRAP = join(ROOT, "dist/lambda/bootstrap.js");

let api: FakeLambdaRuntime;
let stop: AbortController;
let loop: Promise<void> | undefined;

afterEach(async () => {
  stop?.abort();
  await loop?.catch(() => {});
  loop = undefined;
  await api?.close();
});

/** Starts the in-process loop around `handler` against a fresh fake Runtime API. */
async function startLoop(handler: Handler | (() => never), env: Record<string, string> = {}) {
  api = await startFakeLambdaRuntime();
  stop = new AbortController();
  const log = captureLogger();
  const traceIds: (string | undefined)[] = [];
  loop = runRuntimeLoop({
    client: new RuntimeApiClient(api.address),
    init: () => handler as Handler,
    env,
    logger: log.logger,
    signal: stop.signal,
    onInvocation: (invocation) => traceIds.push(invocation.traceId),
  });
  return { log, traceIds };
}

function expectResponse(result: InvokeResult): unknown {
  expect(result.status, JSON.stringify(result)).toBe("response");
  return (result as Extract<InvokeResult, { status: "response" }>).body;
}

function expectError(result: InvokeResult) {
  expect(result.status, JSON.stringify(result)).toBe("error");
  return (result as Extract<InvokeResult, { status: "error" }>).error;
}

describe("the Runtime API loop, in process", () => {
  it("builds the context from every documented header and the function's environment", async () => {
    let seen: Context | undefined;
    let remainingAtStart = 0;
    const { traceIds } = await startLoop(
      async (_event: unknown, context: Context) => {
        seen = context;
        remainingAtStart = context.getRemainingTimeInMillis();
        return { ok: true };
      },
      {
        AWS_LAMBDA_FUNCTION_NAME: "jnlp-agent-git-bash",
        AWS_LAMBDA_FUNCTION_VERSION: "7",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "256",
        AWS_LAMBDA_LOG_GROUP_NAME: "/aws/lambda/jnlp-agent-git-bash",
        AWS_LAMBDA_LOG_STREAM_NAME: "2026/11/30/[7]abc",
      },
    );
    const arn = "arn:aws:lambda:eu-west-1:123456789012:function:jnlp-agent-git-bash:live";
    const result = await api.invoke(
      { hello: "world" },
      {
        timeoutMs: 30_000,
        functionArn: arn,
        clientContext: { client: { appTitle: "t" }, env: { platform: "p" } },
        identity: { cognitoIdentityId: "id-1", cognitoIdentityPoolId: "pool-1" },
        tenantId: "tenant-a",
      },
    );
    expect(expectResponse(result)).toEqual({ ok: true });
    expect(seen).toMatchObject({
      awsRequestId: result.requestId,
      invokedFunctionArn: arn,
      functionName: "jnlp-agent-git-bash",
      functionVersion: "7",
      memoryLimitInMB: "256",
      logGroupName: "/aws/lambda/jnlp-agent-git-bash",
      logStreamName: "2026/11/30/[7]abc",
      clientContext: { client: { appTitle: "t" }, env: { platform: "p" } },
      identity: { cognitoIdentityId: "id-1", cognitoIdentityPoolId: "pool-1" },
      tenantId: "tenant-a",
    });
    // The remaining time counts down to Lambda-Runtime-Deadline-Ms (an epoch time).
    expect(remainingAtStart).toBeGreaterThan(25_000);
    expect(remainingAtStart).toBeLessThanOrEqual(30_000);
    expect(seen!.getRemainingTimeInMillis()).toBeLessThanOrEqual(result.deadlineMs - result.endedAt + 50);
    expect(traceIds).toEqual([result.traceId]);
    expect(api.violations).toEqual([]);
  });

  it("serves invocations one after the other, warm, and reports a thrown error with its type", async () => {
    class ConfigError extends Error {
      constructor(message: string) {
        super(message);
        this.name = "ConfigError";
      }
    }
    await startLoop(async (event: { n: number }) => {
      if (event.n === 2) throw new ConfigError("AGENT_ERR_CONFIG: bad event");
      return { n: event.n };
    });
    expect(expectResponse(await api.invoke({ n: 1 }))).toEqual({ n: 1 });
    const error = expectError(await api.invoke({ n: 2 }));
    expect(error).toMatchObject({
      headerType: "ConfigError",
      errorType: "ConfigError",
      errorMessage: "AGENT_ERR_CONFIG: bad event",
    });
    expect(error.stackTrace.length).toBeGreaterThan(0);
    expect(error.stackTrace[0]).toMatch(/^at /);
    expect(expectResponse(await api.invoke({ n: 3 }))).toEqual({ n: 3 });
    expect(api.violations).toEqual([]);
  });

  it("takes callback-style handlers and the context's legacy done/succeed/fail; the first answer wins", async () => {
    await startLoop((event: { how: string }, context: Context, callback) => {
      if (event.how === "callback") callback(null, { via: "callback" });
      if (event.how === "callback-error") callback(new Error("boom"));
      if (event.how === "succeed") context.succeed({ via: "succeed" });
      if (event.how === "fail") context.fail("failed as a string");
      if (event.how === "twice") {
        callback(null, { first: true });
        callback(null, { second: true });
      }
    });
    expect(expectResponse(await api.invoke({ how: "callback" }))).toEqual({ via: "callback" });
    expect(expectError(await api.invoke({ how: "callback-error" }))).toMatchObject({
      errorType: "Error",
      errorMessage: "boom",
    });
    expect(expectResponse(await api.invoke({ how: "succeed" }))).toEqual({ via: "succeed" });
    expect(expectError(await api.invoke({ how: "fail" }))).toMatchObject({
      errorMessage: "failed as a string",
    });
    expect(expectResponse(await api.invoke({ how: "twice" }))).toEqual({ first: true });
    expect(api.violations).toEqual([]);
  });

  it("turns an event that is not JSON, and a result that cannot be JSON, into invocation errors", async () => {
    await startLoop(async (event: { circular?: boolean }) => {
      if (event.circular) {
        const value: Record<string, unknown> = {};
        value.self = value;
        return value;
      }
      return null;
    });
    expect(expectError(await api.invoke(undefined, { rawBody: "{not json" }))).toMatchObject({
      headerType: "Runtime.UnmarshalError",
      errorType: "Runtime.UnmarshalError",
    });
    expect(expectError(await api.invoke({ circular: true }))).toMatchObject({
      errorType: "Runtime.MarshalError",
      errorMessage: expect.stringContaining("circular"),
    });
    // undefined and null both answer `null`.
    expect(expectResponse(await api.invoke({}))).toBeNull();
    expect(api.violations).toEqual([]);
  });

  it("survives a response over 6 MB: Lambda fails that invocation, the next one works", async () => {
    const { log } = await startLoop(async (event: { big?: boolean }) =>
      event.big ? { data: "x".repeat(7 * 1024 * 1024) } : { small: true },
    );
    expect(expectError(await api.invoke({ big: true }))).toMatchObject({
      errorType: "Function.ResponseSizeTooLarge",
    });
    expect(expectResponse(await api.invoke({}))).toEqual({ small: true });
    expect(log.entries().find((e) => e.msg === "the Runtime API refused the response")).toMatchObject({
      status: 413,
    });
  });

  it("bounds what it posts as an error: a handler's 8 MB message still fails its invocation, clipped, and the runtime goes on", async () => {
    await startLoop(async (event: { huge?: boolean }) => {
      if (event.huge) throw new RangeError(`too much: ${"x".repeat(8 * 1024 * 1024)}`);
      return { ok: true };
    });
    const error = expectError(await api.invoke({ huge: true }, { timeoutMs: 20_000 }));
    expect(error).toMatchObject({ headerType: "RangeError", errorType: "RangeError" });
    expect(error.errorMessage).toMatch(/^too much: x+\.\.\. \(8388618 characters, clipped\)$/);
    expect(Buffer.byteLength(JSON.stringify(error))).toBeLessThanOrEqual(MAX_ERROR_BODY_BYTES);
    expect(expectResponse(await api.invoke({}))).toEqual({ ok: true });
    expect(api.violations).toEqual([]);
  });

  it("reports a failing init to /runtime/init/error and stops; Lambda serves it to the invocation", async () => {
    api = await startFakeLambdaRuntime();
    const log = captureLogger();
    const run = runRuntimeLoop({
      client: new RuntimeApiClient(api.address),
      init: () => {
        throw new TypeError("cannot load the handler");
      },
      env: {},
      logger: log.logger,
    });
    await expect(run).rejects.toBeInstanceOf(RuntimeInitError);
    expect(api.initError).toMatchObject({
      headerType: "TypeError",
      errorType: "TypeError",
      errorMessage: "cannot load the handler",
    });
    expect(expectError(await api.invoke({}))).toMatchObject({ errorMessage: "cannot load the handler" });
  });

  it("exits the loop on the API's 500 (container error), as the API asks", async () => {
    await startLoop(async () => ({}));
    await api.ready();
    api.breakWith(500);
    const failure = await loop!.then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(RuntimeApiError);
    expect(failure).toMatchObject({ status: 500, fatal: true, code: "AGENT_ERR_RUNTIME_API" });
  });

  it("rejects an AWS_LAMBDA_RUNTIME_API that is not host:port", () => {
    expect(parseRuntimeApi("127.0.0.1:9001")).toEqual({ host: "127.0.0.1", port: 9001 });
    expect(parseRuntimeApi("[::1]:9001")).toEqual({ host: "::1", port: 9001 });
    for (const bad of ["", "127.0.0.1", "http://127.0.0.1:9001", "host:0", "host:70000", "a b:1"]) {
      expect(() => parseRuntimeApi(bad), bad).toThrow(/AWS_LAMBDA_RUNTIME_API/);
    }
  });
});

describe("runBootstrap: init checks and exit codes", () => {
  it("exits 2 for an invalid AWS_LAMBDA_RUNTIME_API, naming it", async () => {
    const lines: string[] = [];
    const code = await runBootstrap({
      env: { AWS_LAMBDA_RUNTIME_API: "nope" },
      stderr: (t) => lines.push(t),
    });
    expect(code).toBe(ExitCode.badConfig);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: "error", code: "AGENT_ERR_CONFIG" });
    expect(lines[0]).toContain("AWS_LAMBDA_RUNTIME_API");
  });

  it("exits 3 when the Runtime API cannot be reached", async () => {
    const probe = createServer();
    probe.listen(0, "127.0.0.1");
    await once(probe, "listening");
    const { port } = probe.address() as { port: number };
    probe.close();
    await once(probe, "close");
    const lines: string[] = [];
    const code = await runBootstrap({
      env: { AWS_LAMBDA_RUNTIME_API: `127.0.0.1:${port}` },
      stderr: (t) => lines.push(t),
    });
    expect(code).toBe(ExitCode.controllerFailure);
    expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>)).toContainEqual(
      expect.objectContaining({ code: "AGENT_ERR_RUNTIME_API", status: null }),
    );
  });

  it("fails init on an invalid function environment: an init error naming the variable, exit 2", async () => {
    api = await startFakeLambdaRuntime();
    const code = await runBootstrap({
      env: { AWS_LAMBDA_RUNTIME_API: api.address, AGENT_DEADLINE_MARGIN_MS: "soon" },
      stderr: () => {},
    });
    expect(code).toBe(ExitCode.badConfig);
    expect(api.initError).toMatchObject({ headerType: "ConfigError", errorType: "ConfigError" });
    expect(api.initError!.errorMessage).toMatch(/^AGENT_ERR_CONFIG: .*\n {2}- AGENT_DEADLINE_MARGIN_MS: /);
  });
});

describe("dist/lambda/bootstrap.js as a process, against the loopback Runtime API", () => {
  let ctl: TestController;
  let scratch: ReturnType<typeof tempDir>;
  let child: ChildProcess | undefined;
  let stderr = "";

  beforeAll(async () => {
    ctl = await startController();
    scratch = tempDir("bootstrap-");
  });
  afterAll(async () => {
    await ctl.close();
    scratch.remove();
  });
  afterEach(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await once(child, "exit");
    }
    child = undefined;
  });

  async function startBootstrap(env: Record<string, string> = {}) {
    api = await startFakeLambdaRuntime();
    stderr = "";
    child = spawn(process.execPath, [BOOTSTRAP], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        TMPDIR: scratch.path,
        AWS_LAMBDA_RUNTIME_API: api.address,
        AWS_LAMBDA_FUNCTION_NAME: "jnlp-agent-git-bash",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "256",
        AWS_REGION: "us-east-1",
        AGENT_CLOUDWATCH: "off",
        AGENT_LABELS: "git bash",
        AGENT_DEADLINE_MARGIN_MS: "2000",
        AGENT_DEADLINE_STEP_START_MIN_MS: "500",
        AGENT_GRACE_MS: "500",
        AGENT_DRAIN_MS: "300",
        ...env,
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const ready = await api.ready();
    expect(ready.kind, stderr).toBe("next");
  }

  it("answers a smoke invocation, then runs a job from the Jenkins plugin's payload, warm", async () => {
    await startBootstrap();
    const smoke = expectResponse(await api.invoke({ smoke: true, url: ctl.controller.url })) as SmokeReport;
    expect(smoke).toMatchObject({
      smoke: true,
      ok: true,
      runtime: "lambda",
      function: { name: "jnlp-agent-git-bash", memoryMb: 256 },
    });

    const name = "runtime.lambda-abcdef";
    const record = ctl.controller.submit({
      steps: [{ run: 'echo "trace=${_X_AMZN_TRACE_ID:+set} api=${AWS_LAMBDA_RUNTIME_API:-hidden}"' }],
    });
    const result = await api.invoke({
      url: ctl.controller.url,
      node_secret: ctl.controller.secretFor(name),
      node_name: name,
    });
    const summary = expectResponse(result) as InvocationSummary;
    expect(summary).toMatchObject({
      agent: name,
      jobId: record.id,
      result: "succeeded",
      exitCode: 0,
      logs: { requestId: result.requestId },
    });
    const log = (await ctl.client.log(record.id)).toString("utf8");
    expect(log).toContain("api=hidden");
    expect(api.violations).toEqual([]);
  });

  it("turns an invalid event into an invocation error (ConfigError) without losing the runtime", async () => {
    await startBootstrap();
    const error = expectError(await api.invoke({ url: "ftp://x", node_secret: "s3cr3t-s3cr3t", extra: 1 }));
    expect(error).toMatchObject({ headerType: "ConfigError", errorType: "ConfigError" });
    expect(error.errorMessage).toMatch(/^AGENT_ERR_CONFIG: /);
    expect(error.errorMessage).toContain("- extra: unknown field");
    expect(JSON.stringify(error)).not.toContain("s3cr3t-s3cr3t");
    expect(stderr).not.toContain("s3cr3t-s3cr3t");
    // Still serving.
    expect(expectResponse(await api.invoke({ smoke: true }))).toMatchObject({ ok: true });
  });

  it("fails an invocation whose deadline has already passed at once, starting no agent, and keeps serving", async () => {
    await startBootstrap();
    const name = "late.lambda-abcdef";
    const result = await api.invoke(
      { url: ctl.controller.url, node_secret: ctl.controller.secretFor(name), node_name: name },
      { deadlineMs: Date.now() - 1_000, timeoutMs: 20_000 },
    );
    const error = expectError(result);
    expect(error).toMatchObject({ errorType: "ConfigError" });
    expect(error.errorMessage).toMatch(/remaining time \(0 ms\)/);
    expect(result.endedAt - result.takenAt!).toBeLessThan(5_000);
    expect(stderr).not.toContain('"agent starting"');
    expect(expectResponse(await api.invoke({ smoke: true }))).toMatchObject({ ok: true });
    expect(api.violations).toEqual([]);
  });

  it("answers a 3 MB event of 200,000 unknown fields with a bounded ConfigError, and keeps serving", async () => {
    await startBootstrap();
    const event = Object.fromEntries(Array.from({ length: 200_000 }, (_, i) => [`field${i}`, i]));
    const error = expectError(await api.invoke(event, { timeoutMs: 30_000 }));
    expect(error).toMatchObject({ headerType: "ConfigError", errorType: "ConfigError" });
    expect(error.errorMessage).toMatch(
      /^AGENT_ERR_CONFIG: .*\(200003 problems\):\n {2}- field0: unknown field/,
    );
    expect(error.errorMessage).toMatch(/\.\.\. and 199953 more problems$/);
    // The diagnostic line is bounded too (it goes to CloudWatch Logs).
    expect(Math.max(...stderr.split("\n").map((line) => line.length))).toBeLessThan(256 * 1024);
    expect(expectResponse(await api.invoke({ smoke: true }))).toMatchObject({ ok: true });
    expect(api.violations).toEqual([]);
  });

  it("ends a long step with reason deadline before Lambda-Runtime-Deadline-Ms", async () => {
    await startBootstrap();
    const name = "deadline.lambda-abcdef";
    const record = ctl.controller.submit({ steps: [{ run: "sleep 120" }, { run: "echo never" }] });
    const result = await api.invoke(
      { url: ctl.controller.url, node_secret: ctl.controller.secretFor(name), node_name: name },
      { timeoutMs: 8_000 },
    );
    const summary = expectResponse(result) as InvocationSummary;
    expect(result.endedAt).toBeLessThan(result.deadlineMs);
    expect(summary).toMatchObject({
      result: "failed",
      reason: "deadline",
      exitCode: ExitCode.deadline,
      failedStepId: "1",
    });
    expect(summary.limits.deadlineAt).toBeLessThanOrEqual(result.deadlineMs - 2_000);
    expect((await ctl.controller.waitForJob(record.id)).steps[0]).toMatchObject({ reason: "deadline" });
  });

  it("waits on a next that never answers, with no timeout of its own, and exits 143 on SIGTERM", async () => {
    await startBootstrap();
    // No invocation is queued: next blocks, as in a sandbox with nothing to do.
    const exited = once(child!, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
    const early = await Promise.race([
      exited,
      new Promise((resolve) => setTimeout(resolve, 1_500, "waiting")),
    ]);
    expect(early).toBe("waiting");
    child!.kill("SIGTERM");
    expect(await exited).toEqual([ExitCode.sigterm, null]);
    expect(api.violations).toEqual([]);
  });

  it("reports an init error for a broken function environment and exits 2", async () => {
    api = await startFakeLambdaRuntime();
    const proc = spawn(process.execPath, [BOOTSTRAP], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        AWS_LAMBDA_RUNTIME_API: api.address,
        AGENT_LOG_LEVEL: "loud",
      },
      stdio: "ignore",
    });
    const [code] = (await once(proc, "exit")) as [number];
    expect(code).toBe(ExitCode.badConfig);
    expect(api.initError?.errorMessage).toContain("AGENT_LOG_LEVEL");
    expect(expectError(await api.invoke({ smoke: true }))).toMatchObject({ errorType: "ConfigError" });
  });
});

import { statSync } from "node:fs";
import { join } from "node:path";
import {
  CreateAliasCommand,
  GetAliasCommand,
  GetFunctionCommand,
  InvokeCommand,
  type InvokeCommandOutput,
  LambdaClient,
  PublishVersionCommand,
  UpdateAliasCommand,
  UpdateFunctionCodeCommand,
  waitUntilFunctionUpdatedV2,
} from "@aws-sdk/client-lambda";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { SmokeReport } from "../../lambda-handler/index.ts";
import { bundleZip, type FakeLambda, startFakeLambda } from "../support/fake-lambda.ts";
import { FIXTURES, until } from "../support/harness.ts";

/**
 * The fake Lambda service, through the real SDK client: the documented calls, their errors, and
 * Invoke running real code (the agent's handler bundle, and small fixture handlers) in sandboxes.
 */

const FIXTURE_CODE = { dir: join(FIXTURES, "lambda-functions") };
/** The agent's handler with what a test machine lacks switched off: no CloudWatch, bash only. */
const AGENT_ENV = { AGENT_CLOUDWATCH: "off", AGENT_SMOKE_TOOLS: "bash", AGENT_DEADLINE_MARGIN_MS: "1000" };

let lambda: FakeLambda;
let client: LambdaClient;
let seq = 0;
const fresh = (prefix: string) => `${prefix}-${++seq}`;

beforeAll(async () => {
  lambda = await startFakeLambda({ updateDelayMs: 50, idleSandboxMs: 5_000 });
  client = new LambdaClient({ ...lambda.clientConfig, maxAttempts: 5 });
});
afterAll(async () => {
  client.destroy();
  await lambda.close();
});
afterEach(() => {
  lambda.clearFailures();
  lambda.onRequest = undefined;
  expect(lambda.faults).toEqual([]);
});

function payloadOf(output: InvokeCommandOutput): unknown {
  const text = Buffer.from(output.Payload ?? new Uint8Array()).toString("utf8");
  return text === "" ? undefined : JSON.parse(text);
}

function invoke(
  name: string,
  event: unknown,
  extra: Partial<ConstructorParameters<typeof InvokeCommand>[0]> = {},
) {
  return client.send(
    new InvokeCommand({ FunctionName: name, Payload: Buffer.from(JSON.stringify(event)), ...extra }),
  );
}

async function errorOf(
  promise: Promise<unknown>,
): Promise<{ name: string; status?: number; message: string }> {
  try {
    await promise;
  } catch (error) {
    const e = error as { name: string; message: string; $metadata?: { httpStatusCode?: number } };
    return { name: e.name, status: e.$metadata?.httpStatusCode, message: e.message };
  }
  throw new Error("expected the call to fail");
}

describe("control plane", () => {
  it("GetFunction answers the function's configuration; an unknown function is ResourceNotFoundException (404)", async () => {
    const name = fresh("get");
    lambda.createFunction({ name, timeoutSeconds: 30, memoryMb: 256, environment: { A: "1" } });
    const got = await client.send(new GetFunctionCommand({ FunctionName: name }));
    expect(got.Configuration).toMatchObject({
      FunctionName: name,
      FunctionArn: `arn:aws:lambda:us-east-1:123456789012:function:${name}`,
      Runtime: "nodejs22.x",
      Handler: "dist/lambda/handler.handler",
      Timeout: 30,
      MemorySize: 256,
      Version: "$LATEST",
      State: "Active",
      LastUpdateStatus: "Successful",
      PackageType: "Zip",
      Environment: { Variables: { A: "1" } },
    });
    expect(got.Configuration?.RevisionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(got.Code?.RepositoryType).toBe("S3");
    // By ARN too.
    const byArn = await client.send(new GetFunctionCommand({ FunctionName: got.Configuration!.FunctionArn }));
    expect(byArn.Configuration?.FunctionName).toBe(name);
    expect(await errorOf(client.send(new GetFunctionCommand({ FunctionName: "nope" })))).toMatchObject({
      name: "ResourceNotFoundException",
      status: 404,
    });
    expect(
      await errorOf(client.send(new GetFunctionCommand({ FunctionName: name, Qualifier: "7" }))),
    ).toMatchObject({ name: "ResourceNotFoundException" });
    expect(
      await errorOf(client.send(new GetFunctionCommand({ FunctionName: "bad name with spaces" }))),
    ).toMatchObject({ name: "ValidationException", status: 400 });
    expect(lambda.requests.every((r) => r.signed)).toBe(true);
  });

  it("UpdateFunctionCode stays InProgress until done; meanwhile another update or a publish is ResourceConflictException", async () => {
    const name = fresh("code");
    // In progress until the test ends it: nothing here depends on timing.
    lambda.createFunction({ name, updateDelayMs: 600_000 });
    const zip = bundleZip(undefined, { "extra.txt": "v2" });
    const updated = await client.send(new UpdateFunctionCodeCommand({ FunctionName: name, ZipFile: zip }));
    expect(updated.LastUpdateStatus).toBe("InProgress");
    expect(updated.CodeSize).toBe(zip.byteLength);
    expect(await errorOf(client.send(new PublishVersionCommand({ FunctionName: name })))).toMatchObject({
      name: "ResourceConflictException",
      status: 409,
    });
    expect(
      await errorOf(client.send(new UpdateFunctionCodeCommand({ FunctionName: name, ZipFile: zip }))),
    ).toMatchObject({ name: "ResourceConflictException" });
    expect(
      (await client.send(new GetFunctionCommand({ FunctionName: name }))).Configuration?.LastUpdateStatus,
    ).toBe("InProgress");
    lambda.completeUpdate(name);
    const waited = await waitUntilFunctionUpdatedV2(
      { client, maxWaitTime: 10, minDelay: 0.02, maxDelay: 0.1 },
      { FunctionName: name },
    );
    expect(waited.state).toBe("SUCCESS");
    const got = await client.send(new GetFunctionCommand({ FunctionName: name }));
    expect(got.Configuration?.CodeSha256).toBe(updated.CodeSha256);
  });

  it("rejects a zip that is not one, an image for a zip function, and a stale RevisionId", async () => {
    const name = fresh("badcode");
    lambda.createFunction({ name });
    expect(
      await errorOf(
        client.send(new UpdateFunctionCodeCommand({ FunctionName: name, ZipFile: Buffer.from("not a zip") })),
      ),
    ).toMatchObject({ name: "InvalidParameterValueException", status: 400 });
    expect(
      await errorOf(
        client.send(new UpdateFunctionCodeCommand({ FunctionName: name, ImageUri: "x.dkr.ecr/agent:1" })),
      ),
    ).toMatchObject({ name: "InvalidParameterValueException" });
    expect(
      await errorOf(
        client.send(
          new UpdateFunctionCodeCommand({ FunctionName: name, ZipFile: bundleZip(), RevisionId: "stale" }),
        ),
      ),
    ).toMatchObject({ name: "PreconditionFailedException", status: 412 });
  });

  it("PublishVersion numbers versions from 1, publishes nothing new without a change, and honours CodeSha256 and RevisionId", async () => {
    const name = fresh("publish");
    lambda.createFunction({ name });
    const v1 = await client.send(new PublishVersionCommand({ FunctionName: name, Description: "first" }));
    expect(v1).toMatchObject({
      Version: "1",
      FunctionArn: expect.stringMatching(/:1$/),
      Description: "first",
    });
    const again = await client.send(new PublishVersionCommand({ FunctionName: name }));
    expect(again.Version).toBe("1");
    lambda.updateConfiguration(name, { environment: { CHANGED: "yes" } });
    const v2 = await client.send(new PublishVersionCommand({ FunctionName: name }));
    expect(v2.Version).toBe("2");
    expect(v2.Environment?.Variables).toEqual({ CHANGED: "yes" });
    // A version is a snapshot: $LATEST changing later does not change it.
    lambda.updateConfiguration(name, { environment: { CHANGED: "again" } });
    const v2Again = await client.send(new GetFunctionCommand({ FunctionName: name, Qualifier: "2" }));
    expect(v2Again.Configuration?.Environment?.Variables).toEqual({ CHANGED: "yes" });
    expect(
      await errorOf(client.send(new PublishVersionCommand({ FunctionName: name, CodeSha256: "AAAA" }))),
    ).toMatchObject({ name: "PreconditionFailedException", status: 412 });
    expect(
      await errorOf(client.send(new PublishVersionCommand({ FunctionName: name, RevisionId: "stale" }))),
    ).toMatchObject({ name: "PreconditionFailedException" });
  });
});

describe("aliases", () => {
  it("CreateAlias, GetAlias, UpdateAlias with RevisionId; a stale RevisionId is PreconditionFailedException (412)", async () => {
    const name = fresh("alias");
    lambda.createFunction({ name });
    const v1 = lambda.publish(name);
    lambda.updateConfiguration(name, { environment: { V: "2" } });
    const v2 = lambda.publish(name);
    const created = await client.send(
      new CreateAliasCommand({ FunctionName: name, Name: "live", FunctionVersion: v1, Description: "d1" }),
    );
    expect(created).toMatchObject({
      Name: "live",
      FunctionVersion: "1",
      AliasArn: expect.stringMatching(/:live$/),
    });
    expect(
      await errorOf(
        client.send(new CreateAliasCommand({ FunctionName: name, Name: "live", FunctionVersion: v1 })),
      ),
    ).toMatchObject({ name: "ResourceConflictException", status: 409 });
    const moved = await client.send(
      new UpdateAliasCommand({
        FunctionName: name,
        Name: "live",
        FunctionVersion: v1,
        RoutingConfig: { AdditionalVersionWeights: { [v2]: 0.25 } },
        RevisionId: created.RevisionId,
      }),
    );
    expect(moved.RoutingConfig?.AdditionalVersionWeights).toEqual({ "2": 0.25 });
    expect(moved.Description).toBe("d1");
    expect(moved.RevisionId).not.toBe(created.RevisionId);
    // The first writer's revision is gone: a second writer holding it is refused.
    expect(
      await errorOf(
        client.send(
          new UpdateAliasCommand({
            FunctionName: name,
            Name: "live",
            FunctionVersion: v2,
            RevisionId: created.RevisionId,
          }),
        ),
      ),
    ).toMatchObject({ name: "PreconditionFailedException", status: 412 });
    const got = await client.send(new GetAliasCommand({ FunctionName: name, Name: "live" }));
    expect(got.FunctionVersion).toBe("1");
    expect(
      await errorOf(client.send(new GetAliasCommand({ FunctionName: name, Name: "nope" }))),
    ).toMatchObject({
      name: "ResourceNotFoundException",
      status: 404,
    });
  });

  it("enforces the routing config's rules", async () => {
    const name = fresh("routing");
    lambda.createFunction({ name });
    const v1 = lambda.publish(name);
    lambda.updateConfiguration(name, { environment: { V: "2" } });
    const v2 = lambda.publish(name);
    const create = (version: string, weights: Record<string, number>) =>
      errorOf(
        client.send(
          new CreateAliasCommand({
            FunctionName: name,
            Name: fresh("a"),
            FunctionVersion: version,
            RoutingConfig: { AdditionalVersionWeights: weights },
          }),
        ),
      );
    expect(await create("$LATEST", { [v2]: 0.1 })).toMatchObject({ name: "InvalidParameterValueException" });
    expect(await create(v1, { [v1]: 0.1 })).toMatchObject({ name: "InvalidParameterValueException" });
    expect(await create(v1, { [v2]: 1.5 })).toMatchObject({ name: "ValidationException" });
    expect(await create(v1, { "9": 0.5 })).toMatchObject({ name: "ResourceNotFoundException" });
    expect(
      await errorOf(
        client.send(new CreateAliasCommand({ FunctionName: name, Name: "123", FunctionVersion: v1 })),
      ),
    ).toMatchObject({ name: "ValidationException" });
  });
});

describe("Invoke", () => {
  it("RequestResponse runs the real handler bundle: the smoke report of the version asked for", async () => {
    const name = fresh("smoke");
    lambda.createFunction({ name, timeoutSeconds: 30, environment: AGENT_ENV });
    const version = lambda.publish(name);
    lambda.setAlias(name, "live", version);
    const output = await invoke(name, { smoke: true }, { Qualifier: "live", LogType: "Tail" });
    expect(output.StatusCode).toBe(200);
    expect(output.FunctionError).toBeUndefined();
    expect(output.ExecutedVersion).toBe(version);
    const report = payloadOf(output) as SmokeReport;
    expect(report).toMatchObject({ smoke: true, ok: true });
    expect(report.function).toMatchObject({ name, version, memoryMb: 128, region: "us-east-1" });
    const tail = Buffer.from(output.LogResult ?? "", "base64").toString("utf8");
    expect(tail).toMatch(/START RequestId: [0-9a-f-]+ Version: 1/);
    expect(tail).toMatch(/"msg":"smoke test"/);
    expect(tail).toMatch(/REPORT RequestId: .*Memory Size: 128 MB/);
  });

  it("a failing smoke test is a function error (Unhandled) carrying the report", async () => {
    const name = fresh("smokefail");
    lambda.createFunction({
      name,
      timeoutSeconds: 30,
      environment: { ...AGENT_ENV, AGENT_SMOKE_TOOLS: "bash,definitely-not-installed" },
    });
    const output = await invoke(name, { smoke: true });
    expect(output.StatusCode).toBe(200);
    expect(output.FunctionError).toBe("Unhandled");
    const error = payloadOf(output) as { errorType: string; errorMessage: string };
    expect(error.errorType).toBe("SmokeTestFailedError");
    expect(error.errorMessage).toMatch(/^AGENT_ERR_SMOKE_FAILED: smoke test failed: 1 of \d checks failed/);
  });

  it("Event answers 202 at once and runs in the background; DryRun answers 204 and runs nothing", async () => {
    const name = fresh("event");
    lambda.createFunction({ name, code: FIXTURE_CODE, handler: "index.sleep", timeoutSeconds: 5 });
    const before = lambda.invocations.length;
    const output = await invoke(name, { sleepMs: 1_500, id: "ev" }, { InvocationType: "Event" });
    expect(output.StatusCode).toBe(202);
    // Answered before the function ended: it runs in the background.
    const record = lambda.invocations[before]!;
    expect(["queued", "running"]).toContain(record.status);
    expect(record).toMatchObject({ invocationType: "Event", functionName: name, event: { sleepMs: 1_500 } });
    await record.done;
    expect(record).toMatchObject({
      status: "succeeded",
      result: { slept: 1_500, previous: null },
      attempts: 1,
    });
    expect(record.endedAt! - record.startedAt!).toBeGreaterThanOrEqual(1_500);

    const dry = await invoke(name, { sleepMs: 1 }, { InvocationType: "DryRun" });
    expect(dry.StatusCode).toBe(204);
    expect(lambda.invocations).toHaveLength(before + 1);
  });

  it("the deadline comes from the timeout; at it the sandbox is killed (Sandbox.Timedout) and /tmp survives", async () => {
    const name = fresh("deadline");
    lambda.createFunction({ name, code: FIXTURE_CODE, handler: "index.describe", timeoutMs: 2_500 });
    const described = payloadOf(await invoke(name, {})) as { remainingMs: number; env: { TMPDIR: string } };
    expect(described.remainingMs).toBeGreaterThan(1_000);
    expect(described.remainingMs).toBeLessThanOrEqual(2_500);
    // The API shows whole seconds, rounded up.
    expect((await client.send(new GetFunctionCommand({ FunctionName: name }))).Configuration?.Timeout).toBe(
      3,
    );

    const slow = fresh("slow");
    lambda.createFunction({ name: slow, code: FIXTURE_CODE, handler: "index.sleep", timeoutMs: 400 });
    const output = await invoke(slow, { sleepMs: 5_000, id: "late" });
    expect(output.FunctionError).toBe("Unhandled");
    expect(payloadOf(output)).toMatchObject({
      errorType: "Sandbox.Timedout",
      errorMessage: expect.stringContaining("Task timed out after 0.40 seconds"),
    });
    const record = lambda.invocations.at(-1)!;
    expect(record.status).toBe("timed-out");
    // Killed at the deadline, long before the handler would have ended.
    expect(record.endedAt! - record.startedAt!).toBeLessThan(5_000);
    // The sandbox's /tmp outlives the timeout, as on Lambda: the marker says the handler never ended.
    const after = payloadOf(await invoke(slow, { sleepMs: 1, id: "late" }));
    expect(after).toEqual({ slept: 1, previous: "started" });
  });

  it("reuses a warm sandbox (module state survives) and freezes its processes between invocations", async () => {
    const name = fresh("warm");
    lambda.createFunction({ name, code: FIXTURE_CODE, handler: "index.describe", timeoutSeconds: 5 });
    const first = payloadOf(await invoke(name, {})) as { pid: number; invocations: number };
    const second = payloadOf(await invoke(name, {})) as { pid: number; invocations: number };
    expect(second.pid).toBe(first.pid);
    expect(second.invocations).toBe(first.invocations + 1);

    const bg = fresh("frozen");
    lambda.createFunction({ name: bg, code: FIXTURE_CODE, handler: "index.background", timeoutSeconds: 5 });
    const { file } = payloadOf(await invoke(bg, {})) as { file: string };
    // Frozen: the step-like child the handler left behind stops writing.
    await new Promise((r) => setTimeout(r, 100));
    const frozenSize = statSync(file).size;
    await new Promise((r) => setTimeout(r, 300));
    expect(statSync(file).size).toBe(frozenSize);
    // Thawed by the next invocation: it ticks again while that one runs.
    const watched = payloadOf(await invoke(bg, { watchMs: 300 })) as { before: number; after: number };
    expect(watched.before).toBeGreaterThanOrEqual(frozenSize);
    expect(watched.after).toBeGreaterThan(watched.before);
  });

  it("reports init errors with the runtime's error types", async () => {
    const broken = fresh("broken");
    lambda.createFunction({
      name: broken,
      code: { zip: bundleZip(undefined, { "dist/lambda/handler.js": 'throw new Error("broken build");' }) },
    });
    const output = await invoke(broken, { smoke: true });
    expect(output.FunctionError).toBe("Unhandled");
    expect(payloadOf(output)).toMatchObject({ errorType: "Error", errorMessage: "broken build" });

    const missing = fresh("missing");
    lambda.createFunction({ name: missing, code: FIXTURE_CODE, handler: "index.nothing" });
    expect(payloadOf(await invoke(missing, {}))).toMatchObject({ errorType: "Runtime.HandlerNotFound" });

    const noFile = fresh("nofile");
    lambda.createFunction({ name: noFile, code: FIXTURE_CODE, handler: "nowhere.handler" });
    expect(payloadOf(await invoke(noFile, {}))).toMatchObject({ errorType: "Runtime.ImportModuleError" });

    const exits = fresh("exits");
    lambda.createFunction({ name: exits, code: FIXTURE_CODE, handler: "index.exits" });
    expect(payloadOf(await invoke(exits, {}))).toMatchObject({
      errorType: "Runtime.ExitError",
      errorMessage: expect.stringContaining("exit status 3"),
    });

    const fails = fresh("fails");
    lambda.createFunction({ name: fails, code: FIXTURE_CODE, handler: "index.fails" });
    expect(payloadOf(await invoke(fails, {}))).toMatchObject({ errorType: "WentWrongError" });

    const callback = fresh("callback");
    lambda.createFunction({ name: callback, code: FIXTURE_CODE, handler: "index.callback" });
    expect(payloadOf(await invoke(callback, { a: 1 }))).toEqual({ echoed: { a: 1 } });
  });

  it("routes an alias by its weights and says which version ran", async () => {
    const name = fresh("weights");
    lambda.createFunction({ name, code: FIXTURE_CODE, handler: "index.describe", timeoutSeconds: 5 });
    const v1 = lambda.publish(name);
    lambda.updateConfiguration(name, { environment: { GREETING: "two" } });
    const v2 = lambda.publish(name);
    const alias = await client.send(
      new CreateAliasCommand({
        FunctionName: name,
        Name: "live",
        FunctionVersion: v1,
        RoutingConfig: { AdditionalVersionWeights: { [v2]: 0.5 } },
      }),
    );
    expect(alias.RoutingConfig?.AdditionalVersionWeights).toEqual({ [v2]: 0.5 });
    const ran = new Set<string>();
    for (let i = 0; i < 40 && ran.size < 2; i++) {
      const output = await invoke(name, {}, { Qualifier: "live" });
      ran.add(output.ExecutedVersion!);
      const described = payloadOf(output) as { functionVersion: string; env: { GREETING?: string } };
      expect(described.functionVersion).toBe(output.ExecutedVersion);
      expect(described.env.GREETING).toBe(output.ExecutedVersion === v2 ? "two" : undefined);
    }
    expect([...ran].sort()).toEqual([v1, v2]);
  });

  it("rejects a payload that is not JSON or too large", async () => {
    const name = fresh("payload");
    lambda.createFunction({ name, code: FIXTURE_CODE, handler: "index.describe" });
    expect(
      await errorOf(
        client.send(new InvokeCommand({ FunctionName: name, Payload: Buffer.from("{not json") })),
      ),
    ).toMatchObject({ name: "InvalidRequestContentException", status: 400 });
    expect(
      await errorOf(
        client.send(
          new InvokeCommand({
            FunctionName: name,
            InvocationType: "Event",
            Payload: Buffer.from(JSON.stringify({ big: "x".repeat(1_100_000) })),
          }),
        ),
      ),
    ).toMatchObject({ name: "RequestTooLargeException", status: 413 });
  });
});

describe("throttling and concurrency", () => {
  it("throttling on demand is answered 429 TooManyRequestsException, which the SDK retries", async () => {
    const name = fresh("throttle");
    lambda.createFunction({ name });
    lambda.failNext(2, "TooManyRequestsException", "GetFunction");
    const got = await client.send(new GetFunctionCommand({ FunctionName: name }));
    expect(got.Configuration?.FunctionName).toBe(name);
    const calls = lambda.requests.filter((r) => r.operation === "GetFunction" && r.functionName === name);
    expect(calls.map((r) => r.status)).toEqual([429, 429, 200]);
    // A client that does not retry sees the documented error.
    const once = new LambdaClient({ ...lambda.clientConfig, maxAttempts: 1 });
    lambda.failNext(1, "TooManyRequestsException");
    expect(await errorOf(once.send(new GetFunctionCommand({ FunctionName: name })))).toMatchObject({
      name: "TooManyRequestsException",
      status: 429,
    });
    once.destroy();
  });

  it("a synchronous invoke over the reserved concurrency is throttled; events wait in the queue", async () => {
    const name = fresh("reserved");
    lambda.createFunction({
      name,
      code: FIXTURE_CODE,
      handler: "index.sleep",
      timeoutSeconds: 5,
      reservedConcurrency: 1,
    });
    const once = new LambdaClient({ ...lambda.clientConfig, maxAttempts: 1 });
    const first = invoke(name, { sleepMs: 2_000, id: "r1" });
    await until(() => lambda.invocations.some((i) => i.functionName === name && i.status === "running"));
    expect(
      await errorOf(
        once.send(new InvokeCommand({ FunctionName: name, Payload: Buffer.from('{"sleepMs":1}') })),
      ),
    ).toMatchObject({ name: "TooManyRequestsException", status: 429 });
    await invoke(name, { sleepMs: 10, id: "r2" }, { InvocationType: "Event" });
    const queued = lambda.invocations.at(-1)!;
    expect(queued.status).toBe("queued");
    await first;
    await queued.done;
    expect(queued.status).toBe("succeeded");
    once.destroy();
  });

  it("retries a failed event maximumRetryAttempts times, and drops events older than maximumEventAgeSeconds", async () => {
    const name = fresh("retries");
    lambda.createFunction({
      name,
      code: FIXTURE_CODE,
      handler: "index.fails",
      maximumRetryAttempts: 1,
      asyncRetryDelaysMs: [20],
    });
    await invoke(name, {}, { InvocationType: "Event" });
    const record = await lambda.invocations.at(-1)!.done;
    expect(record).toMatchObject({ status: "failed", attempts: 2, error: { errorType: "WentWrongError" } });

    const aged = fresh("aged");
    lambda.createFunction({
      name: aged,
      code: FIXTURE_CODE,
      handler: "index.sleep",
      timeoutSeconds: 5,
      reservedConcurrency: 1,
      maximumEventAgeSeconds: 0,
    });
    await invoke(aged, { sleepMs: 200, id: "a1" }, { InvocationType: "Event" });
    await invoke(aged, { sleepMs: 1, id: "a2" }, { InvocationType: "Event" });
    const [one, two] = lambda.invocations.slice(-2);
    await Promise.all([one!.done, two!.done]);
    expect(one!.status).toBe("succeeded");
    expect(two!.status).toBe("dropped");
    await lambda.waitForIdle(5_000);
  });
});

describe("images", () => {
  it("runs an image function from a registered image URI; unknown images are refused", async () => {
    const uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/jnlp-agent:1";
    const images = await startFakeLambda({
      images: { [uri]: { code: FIXTURE_CODE, handler: "index.describe" } },
    });
    const imageClient = new LambdaClient(images.clientConfig);
    try {
      images.createFunction({ name: "img", code: { imageUri: uri } });
      const got = await imageClient.send(new GetFunctionCommand({ FunctionName: "img" }));
      expect(got.Configuration).toMatchObject({ PackageType: "Image" });
      expect(got.Code).toMatchObject({ RepositoryType: "ECR", ImageUri: uri });
      const output = await imageClient.send(
        new InvokeCommand({ FunctionName: "img", Payload: Buffer.from("{}") }),
      );
      expect(payloadOf(output)).toMatchObject({ functionName: "img" });
      expect(
        await errorOf(
          imageClient.send(
            new UpdateFunctionCodeCommand({ FunctionName: "img", ImageUri: `${uri}-missing` }),
          ),
        ),
      ).toMatchObject({ name: "InvalidParameterValueException" });
      expect(
        await errorOf(
          imageClient.send(new UpdateFunctionCodeCommand({ FunctionName: "img", ZipFile: bundleZip() })),
        ),
      ).toMatchObject({ name: "InvalidParameterValueException" });
    } finally {
      imageClient.destroy();
      await images.close();
    }
  });

  it("runs an image through its own entrypoint over the Runtime API: the agent's bootstrap, errors posted, warm reuse", async () => {
    const uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/jnlp-agent:2";
    const images = await startFakeLambda({
      images: {
        [uri]: {
          code: { zip: bundleZip(undefined, {}, "image") },
          entrypoint: [process.execPath, "dist/lambda/bootstrap.js"],
        },
      },
    });
    const imageClient = new LambdaClient(images.clientConfig);
    try {
      images.createFunction({
        name: "img",
        code: { imageUri: uri },
        timeoutSeconds: 30,
        environment: AGENT_ENV,
      });
      const first = await imageClient.send(
        new InvokeCommand({ FunctionName: "img", Payload: Buffer.from('{"smoke":true}') }),
      );
      expect(first.FunctionError).toBeUndefined();
      expect(payloadOf(first)).toMatchObject({ smoke: true, ok: true, function: { name: "img" } });
      // A bad event is the handler's ConfigError, posted to the Runtime API's error path.
      const bad = await imageClient.send(
        new InvokeCommand({ FunctionName: "img", Payload: Buffer.from('{"url":5}') }),
      );
      expect(bad.FunctionError).toBe("Unhandled");
      expect(payloadOf(bad)).toMatchObject({
        errorType: "ConfigError",
        errorMessage: expect.stringMatching(/^AGENT_ERR_CONFIG: /),
      });
      // One warm sandbox served both.
      expect(images.sandboxCount()).toBe(1);
      expect(images.invocations.map((i) => i.log).join("")).toMatch(
        /"component":"lambda-runtime"|START RequestId/,
      );
    } finally {
      imageClient.destroy();
      await images.close();
    }
  });
});

import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve, sep } from "node:path";
import { unzipSync, zipSync } from "fflate";
import { type FakeLambdaRuntime, type PostedError, startFakeLambdaRuntime } from "./fake-lambda-runtime.ts";

/**
 * A loopback AWS Lambda endpoint for the real `@aws-sdk/client-lambda` (REST-JSON protocol,
 * API version 2015-03-31). Point a client at it with `clientConfig` (endpoint, region, dummy
 * credentials), or a child process with `env` (`AWS_ENDPOINT_URL_LAMBDA` and friends).
 *
 * Operations served, with the documented request and response shapes:
 * GetFunction, GetFunctionConfiguration, UpdateFunctionCode, PublishVersion,
 * ListVersionsByFunction, CreateAlias, GetAlias, UpdateAlias, DeleteAlias, ListAliases, Invoke.
 * Anything else answers 404 `UnknownOperationException`. Functions are made with
 * `createFunction` (there is no CreateFunction call).
 *
 * Documented rules it enforces (each break is the service's error, status and type):
 * - `ResourceNotFoundException` (404): unknown function, version or alias.
 * - `ResourceConflictException` (409): CreateAlias of an existing alias; UpdateFunctionCode or
 *   PublishVersion while the function's last update is still `InProgress`.
 * - `PreconditionFailedException` (412): a `RevisionId` that is not the resource's current one
 *   (UpdateAlias, UpdateFunctionCode, PublishVersion); PublishVersion whose `CodeSha256` differs
 *   from $LATEST's.
 * - `InvalidParameterValueException` (400): an alias routing config with more than one extra
 *   version, a weight outside [0, 1], the alias's own version, `$LATEST` on either side; a zip
 *   for an image function or an image for a zip function; bytes that are not a zip; an image
 *   URI nobody registered (option `images`).
 * - `ValidationException` (400): names that break the documented patterns.
 * - `TooManyRequestsException` (429, `Reason`): a synchronous invoke over the function's
 *   reserved concurrency (`ReservedFunctionConcurrentInvocationLimitExceeded`); on demand with
 *   `failNext(n, "TooManyRequestsException")` (`CallerRateLimitExceeded`).
 * - `RequestTooLargeException` (413): an invoke payload over 6 MB (RequestResponse) or 1 MB (Event);
 *   `InvalidRequestContentException` (400): a payload that is not JSON.
 * - PublishVersion publishes nothing new when neither code nor configuration changed since the
 *   last version: it answers that version. A version is an immutable snapshot of code and
 *   configuration; versions count up from 1 and are never reused.
 * - UpdateFunctionCode leaves `LastUpdateStatus: InProgress` for `updateDelayMs`, then
 *   `Successful` (the SDK's `waitUntilFunctionUpdatedV2` waits for it); new versions are
 *   `State: Pending` for `versionPendingMs`, then `Active`.
 * - Every change gives the resource a new `RevisionId`.
 *
 * Invoke runs the function's real code in a sandbox: a child process (test/support/
 * lambda-runtime.mjs) that loads `Handler` from the code root as the Node.js runtime does
 * (`path/file.export`, .js/.mjs/.cjs, ESM or CommonJS, async or callback handlers) with the
 * function's environment plus Lambda's reserved variables (`AWS_LAMBDA_FUNCTION_NAME`,
 * `AWS_LAMBDA_FUNCTION_VERSION`, `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, `AWS_REGION`,
 * `LAMBDA_TASK_ROOT`, dummy role credentials, `TMPDIR`: the sandbox's own /tmp).
 * - The context's deadline comes from the version's timeout (`Timeout` seconds, or a test's
 *   `timeoutMs`): `getRemainingTimeInMillis()` counts down to it, and at it the sandbox and every
 *   process under it are killed without a signal first (Lambda sends no SIGTERM): the invocation
 *   fails with `Sandbox.Timedout` "Task timed out after N.NN seconds".
 * - Sandboxes are reused while warm (`idleSandboxMs`): module state and the sandbox's /tmp survive
 *   between invocations, and between them the sandbox's processes are frozen (SIGSTOP) and thawed
 *   at the next invocation (`freeze`). /tmp also survives a timeout. Each concurrent invocation
 *   gets its own sandbox.
 * - `InvocationType`: `RequestResponse` (200, the handler's result, or its error with
 *   `X-Amz-Function-Error: Unhandled`), `Event` (202 at once; queued and run in the background,
 *   within the function's reserved concurrency, dropped when older than `maximumEventAgeSeconds`,
 *   retried `maximumRetryAttempts` times after a function error, `asyncRetryDelaysMs` apart),
 *   `DryRun` (204, checks only). `LogType: Tail` returns the last 4 KB of the log, base64.
 *   `X-Amz-Executed-Version` names the version run: an alias with a routing config picks by weight.
 * - Init errors (no module, no export, a throw at import) fail the invocation with the runtime's
 *   error types (`Runtime.ImportModuleError`, `Runtime.HandlerNotFound`, ...); a handler that
 *   exits the process fails it with `Runtime.ExitError`.
 *
 * Options for tests (`startFakeLambda`): `region`, `accountId`, `extraEnv` (added to every
 * sandbox, e.g. `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`), `updateDelayMs` (default 100),
 * `versionPendingMs` (0), `idleSandboxMs` (10,000), `freeze` (true), `random` (alias weights),
 * `images` (image URI -> the code it runs). Per function (`createFunction`): `code` (default: a
 * zip of this repository's `package.json` + `dist/lambda/**`, as serverless.yml packages it;
 * or `{ dir }` to run a directory in place; or `{ zip }`; or `{ imageUri }`), `handler`,
 * `timeoutSeconds` (default 3, as Lambda), `timeoutMs` (finer than Lambda allows, for deadline
 * tests; GetFunction shows it rounded up), `memoryMb`, `environment`, `reservedConcurrency`,
 * `maximumRetryAttempts` (2), `maximumEventAgeSeconds` (21,600), `asyncRetryDelaysMs`
 * ([60,000, 120,000]), `updateDelayMs` (a long one, ended by `completeUpdate(name)`, makes
 * "update in progress" tests independent of timing).
 *
 * Running the agent's handler (the default code) with a short timeout: the handler needs at
 * least 2 s between `AGENT_DEADLINE_MARGIN_MS` and the timeout (e.g. `timeoutMs: 5_000` with
 * `environment: { AGENT_DEADLINE_MARGIN_MS: "1000" }`); the sandbox looks like Lambda
 * (`AWS_LAMBDA_FUNCTION_NAME` is set), so the CloudWatch copy of the job log is on: set
 * `AGENT_CLOUDWATCH: "off"`, or `extraEnv: { AWS_ENDPOINT_URL_CLOUDWATCH_LOGS }` pointing at
 * test/support/fake-cloudwatch.ts (with the group `/ephemeral-agent/lambda` created).
 *
 * Observing: `requests` (every API call), `invocations` (every invoke: event, version run,
 * status, result or error, log, timings, and `done`), `waitForIdle()` (no invocation running,
 * queued or waiting for a retry), `onRequest` (called before each call is handled: a test can
 * change state at an exact point), `failNext` (throttling, 500s, access denied, connection
 * resets on demand).
 *
 * @example
 * const lambda = await startFakeLambda({ updateDelayMs: 20 });
 * lambda.createFunction({ name: "jnlp-agent-git-bash", timeoutMs: 5_000, environment: { AGENT_DEADLINE_MARGIN_MS: "1000" } });
 * const client = new LambdaClient(lambda.clientConfig);
 * await client.send(new InvokeCommand({ FunctionName: "jnlp-agent-git-bash", InvocationType: "Event", Payload: ... }));
 * const [record] = lambda.invocations;
 * await record.done; // status "succeeded" | "failed" | "timed-out" | "dropped"
 */

const ROOT = resolve(import.meta.dirname, "../..");
const RUNTIME = join(import.meta.dirname, "lambda-runtime.mjs");
const DEFAULT_HANDLER = "dist/lambda/handler.handler";
const API = "/2015-03-31/functions/";
const SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024;
const ASYNC_PAYLOAD_BYTES = 1024 * 1024;
const MAX_REQUEST_BYTES = 70_167_211;
const MAX_UNZIPPED_BYTES = 262_144_000;
const TAIL_BYTES = 4096;
const INIT_TIMEOUT_MS = 10_000;

const FUNCTION_NAME = /^[a-zA-Z0-9-_]{1,64}$/;
const ALIAS_NAME = /^(?!^[0-9]+$)[a-zA-Z0-9-_]{1,128}$/;
const VERSION = /^(\$LATEST|[0-9]+)$/;

/** The operations served. */
export type FakeLambdaOperation =
  | "GetFunction"
  | "GetFunctionConfiguration"
  | "UpdateFunctionCode"
  | "PublishVersion"
  | "ListVersionsByFunction"
  | "CreateAlias"
  | "GetAlias"
  | "UpdateAlias"
  | "DeleteAlias"
  | "ListAliases"
  | "Invoke";

/**
 * Failures on demand: `TooManyRequestsException` (429, Reason `CallerRateLimitExceeded`),
 * `ServiceException` (500), `AccessDeniedException` (403, as IAM answers a missing permission),
 * `ConnectionReset` (the socket is destroyed; with `afterHandling`, after the call took effect).
 */
export type FakeLambdaFailure =
  | "TooManyRequestsException"
  | "ServiceException"
  | "AccessDeniedException"
  | "ConnectionReset";

/** Where a function's code comes from. */
export type FunctionCode = { dir: string } | { zip: Uint8Array } | { imageUri: string };

/**
 * An image the fake can "pull": the code it runs (a directory or a zip, the image's files) and
 * either its `entrypoint`, a command run in that directory that speaks the Lambda Runtime API
 * (e.g. `[process.execPath, "dist/lambda/bootstrap.js"]`, the image's own loop), or a `handler`
 * for the fake's Node.js runtime.
 */
export interface FakeImage {
  code: { dir: string } | { zip: Uint8Array };
  handler?: string;
  entrypoint?: string[];
}

export interface FakeLambdaOptions {
  region?: string;
  accountId?: string;
  /** Added to every sandbox's environment (after the function's own variables). */
  extraEnv?: Record<string, string>;
  /** How long `LastUpdateStatus` stays `InProgress` after UpdateFunctionCode (ms, default 100). */
  updateDelayMs?: number;
  /** How long a new version stays `State: Pending` (ms, default 0). */
  versionPendingMs?: number;
  /** How long an idle sandbox stays warm (ms, default 10,000). */
  idleSandboxMs?: number;
  /** Freeze a sandbox's processes between invocations, as Lambda does (default true). */
  freeze?: boolean;
  /** Alias routing draws (default Math.random). */
  random?: () => number;
  /** Image URIs the fake can deploy (UpdateFunctionCode with ImageUri, or `code: { imageUri }`). */
  images?: Record<string, FakeImage>;
}

export interface FunctionSetup {
  name: string;
  code?: FunctionCode;
  /** `path/file.export` below the code root (default `dist/lambda/handler.handler`). */
  handler?: string;
  /** Lambda's `Timeout` (default 3). */
  timeoutSeconds?: number;
  /** A test's finer timeout; the API shows it rounded up to whole seconds. */
  timeoutMs?: number;
  memoryMb?: number;
  ephemeralStorageMb?: number;
  environment?: Record<string, string>;
  description?: string;
  reservedConcurrency?: number;
  maximumRetryAttempts?: number;
  maximumEventAgeSeconds?: number;
  asyncRetryDelaysMs?: number[];
  /** This function's time in `LastUpdateStatus: InProgress` (default: the fake's `updateDelayMs`). */
  updateDelayMs?: number;
}

/** One API call as the fake saw it. */
export interface FakeLambdaRequest {
  operation: string;
  method: string;
  path: string;
  status: number;
  errorType?: string;
  functionName?: string;
  qualifier?: string;
  signed: boolean;
  startedAt: number;
}

/** A function error as Lambda returns it in the payload. */
export interface FunctionErrorPayload {
  errorType: string;
  errorMessage: string;
  trace?: string[];
}

/** One invoke, from the request to its end. */
export interface FakeInvocation {
  requestId: string;
  functionName: string;
  /** The qualifier asked for (an alias, a version, or `$LATEST`). */
  qualifier: string;
  /** The version that ran (an alias resolves to one; with routing, by weight). */
  executedVersion: string;
  invocationType: "RequestResponse" | "Event" | "DryRun";
  /** The payload, parsed. */
  event: unknown;
  status: "queued" | "running" | "succeeded" | "failed" | "timed-out" | "dropped";
  /** The handler's result, parsed (succeeded). */
  result?: unknown;
  /** The function error (failed, timed-out). */
  error?: FunctionErrorPayload;
  /** What the sandbox printed while this invocation ran, with Lambda's START/END/REPORT lines. */
  log: string;
  /** Runs so far (async retries count). */
  attempts: number;
  queuedAt: number;
  startedAt?: number;
  endedAt?: number;
  /** The deadline of the last run (epoch ms). */
  deadlineAt?: number;
  /** Settles when the invocation has ended for good (after any async retries). */
  done: Promise<FakeInvocation>;
}

export interface FakeFunctionState {
  name: string;
  arn: string;
  /** Published versions, in order. */
  versions: string[];
  aliases: Record<string, { version: string; weights: Record<string, number>; description: string }>;
  codeSha256: string;
  lastUpdateStatus: "Successful" | "InProgress" | "Failed";
}

export interface FakeLambda {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  region: string;
  accountId: string;
  /** For `new LambdaClient(clientConfig)`. */
  clientConfig: {
    endpoint: string;
    region: string;
    credentials: { accessKeyId: string; secretAccessKey: string };
  };
  /** For a child process that makes its own client: endpoint, region and dummy credentials. */
  env: Record<string, string>;
  requests: FakeLambdaRequest[];
  invocations: FakeInvocation[];
  /** Problems inside the fake itself (a bug in a test or in the fake, never a client's fault). */
  faults: string[];
  createFunction(setup: FunctionSetup): void;
  /** Change $LATEST's configuration without an API call (like a CloudFormation update would). */
  updateConfiguration(
    name: string,
    change: { environment?: Record<string, string>; timeoutMs?: number; memoryMb?: number },
  ): void;
  /** Publish $LATEST as a version without an API call (as `osls deploy` with versionFunctions does). */
  publish(name: string): string;
  /** Ends the function's code update in progress now (`LastUpdateStatus` becomes `Successful`). */
  completeUpdate(name: string): void;
  /** Create or move an alias without an API call. */
  setAlias(name: string, alias: string, version: string, description?: string): void;
  state(name: string): FakeFunctionState;
  /** Fail the next `count` calls (of `operation`, or any) with `failure`. */
  failNext(
    count: number,
    failure: FakeLambdaFailure,
    operation?: FakeLambdaOperation,
    options?: { afterHandling?: boolean },
  ): void;
  clearFailures(): void;
  /** Called with each well-formed call before it is handled. May be async. */
  onRequest: ((operation: FakeLambdaOperation, input: FakeRequestInput) => void | Promise<void>) | undefined;
  /** Resolves when no invocation is running, queued or waiting to be retried. */
  waitForIdle(timeoutMs?: number): Promise<void>;
  /** Live sandboxes (processes), for tests of warm reuse. */
  sandboxCount(): number;
  close(): Promise<void>;
}

/** What `onRequest` sees. */
export interface FakeRequestInput {
  functionName: string;
  qualifier?: string;
  alias?: string;
  body: Record<string, unknown>;
  headers: Record<string, string | undefined>;
}

class ServiceError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

interface Code {
  /** Directory the handler path is relative to. */
  root: string;
  handler: string;
  /** An image's entrypoint that speaks the Runtime API (absent: the fake's own Node.js runtime runs `handler`). */
  entrypoint?: string[];
  sha256: string;
  size: number;
  packageType: "Zip" | "Image";
  imageUri?: string;
}

interface Configuration {
  timeoutMs: number;
  memoryMb: number;
  ephemeralStorageMb: number;
  environment: Record<string, string>;
  description: string;
}

interface Snapshot {
  version: string;
  code: Code;
  config: Configuration;
  revisionId: string;
  lastModified: string;
  state: "Pending" | "Active";
  /** Sandboxes are per code and configuration: a change to $LATEST starts new ones. */
  generation: number;
}

interface Alias {
  name: string;
  version: string;
  weights: Record<string, number>;
  description: string;
  revisionId: string;
}

interface Fn {
  name: string;
  arn: string;
  latest: Snapshot;
  lastUpdateStatus: "Successful" | "InProgress" | "Failed";
  /** This function's own `updateDelayMs`, when its setup gave one. */
  updateDelayMs: number | undefined;
  /** Ends the code update in progress (set while one is). */
  completeUpdate: (() => void) | undefined;
  versions: Map<string, Snapshot>;
  lastVersion: number;
  aliases: Map<string, Alias>;
  reservedConcurrency: number | undefined;
  maximumRetryAttempts: number;
  maximumEventAgeSeconds: number;
  asyncRetryDelaysMs: number[];
  running: number;
  queue: Queued[];
}

interface Queued {
  record: FakeInvocation;
  snapshot: Snapshot;
  payload: string;
  invokedArn: string;
  enqueuedAt: number;
  finish: () => void;
}

interface RunOutcome {
  ok: boolean;
  payload?: string;
  error?: FunctionErrorPayload;
  timedOut: boolean;
  log: string;
}

let generations = 0;

function sha256(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("base64");
}

function lastModified(): string {
  return new Date().toISOString().replace("Z", "+0000");
}

/**
 * A zip of the agent's files: `zip` as serverless.yml packages it (`package.json` and
 * `dist/lambda/**` without source maps or the image-only `bootstrap.js`); `image` the same with
 * `bootstrap.js` (the image's Runtime API loop, for `images` with an `entrypoint`); `all` every
 * file under `root`. `overrides` replace or add entries (path -> content), e.g. a broken handler.
 */
export function bundleZip(
  root = ROOT,
  overrides: Record<string, string | Uint8Array> = {},
  include: "zip" | "image" | "all" = "zip",
): Uint8Array {
  const files: Record<string, Uint8Array> = {};
  const add = (path: string) => {
    files[relative(root, path).split(sep).join("/")] = readFileSync(path);
  };
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (!entry.name.endsWith(".map")) add(path);
    }
  };
  if (include === "all") walk(root);
  else {
    add(join(root, "package.json"));
    walk(join(root, "dist/lambda"));
    if (include === "zip") delete files["dist/lambda/bootstrap.js"];
  }
  for (const [path, content] of Object.entries(overrides)) {
    files[path] = typeof content === "string" ? Buffer.from(content) : content;
  }
  return zipSync(files, { level: 6, mtime: new Date("2026-01-01T00:00:00Z") });
}

/** All processes below `pid` (children first found, then theirs), from /proc. */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [];
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    // pid (comm) state ppid ...: comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ppid = Number(fields[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(entry));
    children.set(ppid, list);
  }
  const found: number[] = [];
  const stack = [pid];
  while (stack.length > 0) {
    for (const child of children.get(stack.pop()!) ?? []) {
      found.push(child);
      stack.push(child);
    }
  }
  return found;
}

function signalTree(pid: number, signal: NodeJS.Signals): void {
  for (const target of [pid, ...descendants(pid)]) {
    try {
      process.kill(target, signal);
    } catch {
      // Gone already.
    }
  }
}

/** What a sandbox answers for one invocation. */
type SandboxAnswer = { ok: true; payload: string } | { ok: false; error: FunctionErrorPayload };

/** What the handler's context carries besides the deadline. */
interface InvocationInfo {
  requestId: string;
  payload: string;
  deadlineAt: number;
  context: {
    functionName: string;
    functionVersion: string;
    invokedFunctionArn: string;
    memoryLimitInMB: string;
    logGroupName: string;
    logStreamName: string;
  };
}

/**
 * One warm execution environment: a runtime process for one version of one function. Either the
 * fake's own runtime (test/support/lambda-runtime.mjs, over IPC: the managed Node.js runtime of a
 * zip function), or an image's entrypoint speaking the Lambda Runtime API to a loopback
 * Runtime API of its own (test/support/fake-lambda-runtime.ts).
 */
class Sandbox {
  readonly child: ChildProcess;
  readonly ready: Promise<{ ok: true } | { ok: false; error: FunctionErrorPayload }>;
  readonly logStream: string;
  busy = false;
  frozen = false;
  dead = false;
  idleTimer: NodeJS.Timeout | undefined;
  private output = "";
  private listeners = new Set<(message: SandboxMessage) => void>();
  private exitListeners = new Set<(code: number | null, signal: NodeJS.Signals | null) => void>();

  /** Starts a sandbox; with `entrypoint`, the Runtime API mode. */
  static async start(
    key: string,
    tmp: string,
    env: Record<string, string>,
    cwd: string,
    freeze: boolean,
    entrypoint: string[] | undefined,
  ): Promise<Sandbox> {
    if (entrypoint === undefined) return new Sandbox(key, tmp, env, cwd, freeze, undefined, undefined);
    const runtime = await startFakeLambdaRuntime();
    return new Sandbox(
      key,
      tmp,
      { ...env, AWS_LAMBDA_RUNTIME_API: runtime.address },
      cwd,
      freeze,
      entrypoint,
      runtime,
    );
  }

  private constructor(
    readonly key: string,
    readonly tmp: string,
    env: Record<string, string>,
    cwd: string,
    private readonly freeze: boolean,
    entrypoint: string[] | undefined,
    private readonly runtime: FakeLambdaRuntime | undefined,
  ) {
    this.logStream = env.AWS_LAMBDA_LOG_STREAM_NAME!;
    const [command, ...args] = entrypoint ?? [process.execPath, RUNTIME];
    this.child = spawn(command!, args, {
      cwd,
      env,
      stdio: runtime ? ["ignore", "pipe", "pipe"] : ["ignore", "pipe", "pipe", "ipc"],
      detached: true,
    });
    const capture = (chunk: Buffer) => {
      this.output += chunk.toString("utf8");
    };
    this.child.stdout!.on("data", capture);
    this.child.stderr!.on("data", capture);
    this.child.on("message", (message: SandboxMessage) => {
      for (const listener of this.listeners) listener(message);
    });
    this.child.once("exit", (code, signal) => {
      this.dead = true;
      void this.runtime?.close();
      for (const listener of this.exitListeners) listener(code, signal);
    });
    this.child.on("error", () => {
      this.dead = true;
    });
    this.ready = new Promise((resolveReady) => {
      const settle = (result: { ok: true } | { ok: false; error: FunctionErrorPayload }) => {
        clearTimeout(timer);
        off();
        offExit();
        resolveReady(result);
      };
      const timer = setTimeout(
        () =>
          settle({
            ok: false,
            error: {
              errorType: "Runtime.InitTimeout",
              errorMessage: "the runtime did not initialise in 10 s",
            },
          }),
        INIT_TIMEOUT_MS,
      );
      timer.unref();
      const off = this.onMessage((message) => {
        if (message.type === "ready") settle({ ok: true });
        else if (message.type === "init-error") settle({ ok: false, error: message.error });
      });
      const offExit = this.onExit((code, signal) =>
        settle({
          ok: false,
          error: {
            errorType: "Runtime.ExitError",
            errorMessage: `Runtime exited during init with ${signal ?? `exit status ${code}`}`,
          },
        }),
      );
      // Runtime API mode: ready at the runtime's first `next`, or its posted init error.
      void this.runtime
        ?.ready()
        .then((state) =>
          settle(state.kind === "next" ? { ok: true } : { ok: false, error: postedError(state.error) }),
        );
    });
  }

  /** Runs one invocation; never settles if the process dies first (`onExit` tells). */
  invoke(invocation: InvocationInfo): Promise<SandboxAnswer> {
    if (this.runtime) {
      return this.runtime
        .invoke(undefined, {
          rawBody: invocation.payload,
          timeoutMs: Math.max(1, invocation.deadlineAt - Date.now()),
          functionArn: invocation.context.invokedFunctionArn,
        })
        .then((result): SandboxAnswer | Promise<never> => {
          if (result.status === "response") return { ok: true, payload: result.raw };
          if (result.status === "error") return { ok: false, error: postedError(result.error) };
          return new Promise<never>(() => {}); // the deadline timer of the fake ends it
        });
    }
    return new Promise((resolveAnswer) => {
      const off = this.onMessage((message) => {
        if (message.type !== "result" || message.requestId !== invocation.requestId) return;
        off();
        resolveAnswer(
          message.ok ? { ok: true, payload: message.payload } : { ok: false, error: message.error },
        );
      });
      let event: unknown;
      try {
        event = JSON.parse(invocation.payload);
      } catch {
        event = invocation.payload;
      }
      this.child.send({
        type: "invoke",
        requestId: invocation.requestId,
        event,
        deadlineAt: invocation.deadlineAt,
        context: invocation.context,
      });
    });
  }

  onMessage(listener: (message: SandboxMessage) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onExit(listener: (code: number | null, signal: NodeJS.Signals | null) => void): () => void {
    this.exitListeners.add(listener);
    return () => this.exitListeners.delete(listener);
  }

  /** Everything printed since the last call. */
  takeOutput(): string {
    const text = this.output;
    this.output = "";
    return text;
  }

  thaw(): void {
    if (this.frozen && !this.dead) signalTree(this.child.pid!, "SIGCONT");
    this.frozen = false;
  }

  sleep(): void {
    if (this.freeze && !this.dead) {
      signalTree(this.child.pid!, "SIGSTOP");
      this.frozen = true;
    }
  }

  kill(): void {
    clearTimeout(this.idleTimer);
    if (this.dead || this.child.pid === undefined) {
      void this.runtime?.close();
      return;
    }
    signalTree(this.child.pid, "SIGKILL");
  }

  ref(on: boolean): void {
    const channel = this.child.channel as { ref?: () => void; unref?: () => void } | undefined;
    if (on) {
      this.child.ref();
      channel?.ref?.();
    } else {
      this.child.unref();
      channel?.unref?.();
    }
  }
}

function postedError(error: PostedError): FunctionErrorPayload {
  return { errorType: error.errorType, errorMessage: error.errorMessage, trace: error.stackTrace };
}

type SandboxMessage =
  | { type: "ready" }
  | { type: "init-error"; error: FunctionErrorPayload }
  | { type: "result"; requestId: string; ok: true; payload: string }
  | { type: "result"; requestId: string; ok: false; error: FunctionErrorPayload };

/** Starts the fake on 127.0.0.1, port 0. */
export async function startFakeLambda(options: FakeLambdaOptions = {}): Promise<FakeLambda> {
  const region = options.region ?? "us-east-1";
  const accountId = options.accountId ?? "123456789012";
  const updateDelayMs = options.updateDelayMs ?? 100;
  const versionPendingMs = options.versionPendingMs ?? 0;
  const idleSandboxMs = options.idleSandboxMs ?? 10_000;
  const freeze = options.freeze ?? true;
  const random = options.random ?? Math.random;
  const workDir = mkdtempSync(join(tmpdir(), "fake-lambda-"));
  const functions = new Map<string, Fn>();
  const requests: FakeLambdaRequest[] = [];
  const invocations: FakeInvocation[] = [];
  const faults: string[] = [];
  const failures: {
    count: number;
    failure: FakeLambdaFailure;
    operation: FakeLambdaOperation | undefined;
    afterHandling: boolean;
  }[] = [];
  const sandboxes = new Set<Sandbox>();
  const timers = new Set<NodeJS.Timeout>();
  const extracted = new Map<string, string>();
  /** The /tmp of sandboxes killed at a timeout, for the next sandbox of the same version. */
  const spareTmp = new Map<string, string[]>();
  /** Async events waiting for their retry. */
  const retrying = new Set<Queued>();
  let pending = 0;
  let idleWaiters: (() => void)[] = [];
  let closed = false;

  const later = (ms: number, run: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      run();
    }, ms);
    timer.unref();
    timers.add(timer);
  };

  const functionArn = (name: string) => `arn:aws:lambda:${region}:${accountId}:function:${name}`;

  /** Unpacks a zip once per content into the fake's work dir. */
  function unpack(zip: Uint8Array): { root: string; sha256: string; size: number } {
    const digest = sha256(zip);
    const known = extracted.get(digest);
    if (known) return { root: known, sha256: digest, size: zip.byteLength };
    let files: Record<string, Uint8Array>;
    try {
      files = unzipSync(zip);
    } catch {
      throw new ServiceError(
        "InvalidParameterValueException",
        "Could not unzip uploaded file. Please check your file, then try to upload again.",
      );
    }
    const total = Object.values(files).reduce((sum, data) => sum + data.byteLength, 0);
    if (total > MAX_UNZIPPED_BYTES) {
      throw new ServiceError(
        "InvalidParameterValueException",
        `Unzipped size must be smaller than ${MAX_UNZIPPED_BYTES} bytes`,
      );
    }
    const root = join(workDir, "code", createHash("sha256").update(zip).digest("hex").slice(0, 16));
    for (const [name, data] of Object.entries(files)) {
      if (name.endsWith("/")) continue;
      const target = resolve(root, name);
      if (!target.startsWith(root + sep)) {
        throw new ServiceError("InvalidParameterValueException", `zip entry ${name} escapes the code root`);
      }
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, data);
    }
    mkdirSync(root, { recursive: true });
    extracted.set(digest, root);
    return { root, sha256: digest, size: zip.byteLength };
  }

  function codeOf(source: FunctionCode | undefined, handler: string | undefined): Code {
    if (source === undefined) return codeOf({ zip: bundleZip() }, handler);
    if ("dir" in source) {
      return {
        root: source.dir,
        handler: handler ?? DEFAULT_HANDLER,
        sha256: sha256(`dir:${source.dir}`),
        size: 0,
        packageType: "Zip",
      };
    }
    if ("zip" in source) {
      const { root, sha256: digest, size } = unpack(source.zip);
      return { root, handler: handler ?? DEFAULT_HANDLER, sha256: digest, size, packageType: "Zip" };
    }
    const image = options.images?.[source.imageUri];
    if (!image) {
      throw new ServiceError(
        "InvalidParameterValueException",
        `Source image ${source.imageUri} does not exist. Provide a valid source image.`,
      );
    }
    const inner = codeOf(image.code, image.handler ?? handler);
    return {
      ...inner,
      ...(image.entrypoint ? { entrypoint: image.entrypoint } : {}),
      sha256: sha256(`image:${source.imageUri}`),
      size: 0,
      packageType: "Image",
      imageUri: source.imageUri,
    };
  }

  function find(name: string): Fn {
    const fn = functions.get(name);
    if (!fn)
      throw new ServiceError("ResourceNotFoundException", `Function not found: ${functionArn(name)}`, 404);
    return fn;
  }

  /** The snapshot a qualifier names: $LATEST, a version, or an alias (resolved without routing). */
  function snapshotOf(fn: Fn, qualifier: string | undefined): Snapshot {
    if (qualifier === undefined || qualifier === "$LATEST") return fn.latest;
    const version = fn.versions.get(qualifier);
    if (version) return version;
    const alias = fn.aliases.get(qualifier);
    if (alias) return snapshotOf(fn, alias.version);
    throw new ServiceError(
      "ResourceNotFoundException",
      `Function not found: ${functionArn(fn.name)}:${qualifier}`,
      404,
    );
  }

  function configurationOf(fn: Fn, snapshot: Snapshot): Record<string, unknown> {
    const { code, config } = snapshot;
    const latest = snapshot === fn.latest;
    return {
      FunctionName: fn.name,
      FunctionArn: latest ? fn.arn : `${fn.arn}:${snapshot.version}`,
      ...(code.packageType === "Zip" ? { Runtime: "nodejs22.x", Handler: code.handler } : {}),
      Role: `arn:aws:iam::${accountId}:role/${fn.name}-role`,
      CodeSize: code.size,
      CodeSha256: code.sha256,
      Description: config.description,
      Timeout: Math.ceil(config.timeoutMs / 1000),
      MemorySize: config.memoryMb,
      EphemeralStorage: { Size: config.ephemeralStorageMb },
      LastModified: snapshot.lastModified,
      Version: snapshot.version,
      Environment: { Variables: { ...config.environment } },
      RevisionId: snapshot.revisionId,
      State: snapshot.state,
      ...(snapshot.state === "Pending"
        ? { StateReason: "The function is being created.", StateReasonCode: "Creating" }
        : {}),
      LastUpdateStatus: latest ? fn.lastUpdateStatus : "Successful",
      PackageType: code.packageType,
      Architectures: ["arm64"],
    };
  }

  function aliasOf(fn: Fn, alias: Alias): Record<string, unknown> {
    return {
      AliasArn: `${fn.arn}:${alias.name}`,
      Name: alias.name,
      FunctionVersion: alias.version,
      Description: alias.description,
      ...(Object.keys(alias.weights).length > 0
        ? { RoutingConfig: { AdditionalVersionWeights: { ...alias.weights } } }
        : {}),
      RevisionId: alias.revisionId,
    };
  }

  /** Code and configuration alike (a version's own description does not count). */
  function sameConfig(a: Snapshot, b: Snapshot): boolean {
    const comparable = (s: Snapshot) => JSON.stringify({ ...s.config, description: "" });
    return a.code.sha256 === b.code.sha256 && comparable(a) === comparable(b);
  }

  function publishVersion(fn: Fn, description?: string): Snapshot {
    const newest = fn.versions.get(String(fn.lastVersion));
    if (newest && sameConfig(newest, fn.latest)) return newest;
    fn.lastVersion += 1;
    const version = String(fn.lastVersion);
    const snapshot: Snapshot = {
      ...fn.latest,
      version,
      config: { ...fn.latest.config, description: description ?? fn.latest.config.description },
      revisionId: randomUUID(),
      lastModified: lastModified(),
      state: versionPendingMs > 0 ? "Pending" : "Active",
      generation: ++generations,
    };
    fn.versions.set(version, snapshot);
    // Publishing changes $LATEST's revision too.
    fn.latest.revisionId = randomUUID();
    if (versionPendingMs > 0) later(versionPendingMs, () => (snapshot.state = "Active"));
    return snapshot;
  }

  /** UpdateFunctionCode and PublishVersion wait for the last update to end. */
  function checkNotUpdating(fn: Fn): void {
    if (fn.lastUpdateStatus === "InProgress") {
      throw new ServiceError(
        "ResourceConflictException",
        `The operation cannot be performed at this time. An update is in progress for resource: ${fn.arn}`,
        409,
      );
    }
  }

  function checkRevision(current: string, given: unknown, what: string): void {
    if (given === undefined || given === null) return;
    if (given !== current) {
      throw new ServiceError(
        "PreconditionFailedException",
        `The Revision Id provided does not match the latest Revision Id. Call the ${what} API to retrieve the latest Revision Id`,
        412,
      );
    }
  }

  function checkRouting(fn: Fn, version: string, routing: unknown): Record<string, number> {
    if (routing === undefined || routing === null) return {};
    const weights = (routing as { AdditionalVersionWeights?: unknown }).AdditionalVersionWeights;
    if (weights === undefined || weights === null) return {};
    if (typeof weights !== "object" || Array.isArray(weights)) {
      throw new ServiceError("ValidationException", "AdditionalVersionWeights must be a map");
    }
    const entries = Object.entries(weights as Record<string, unknown>);
    if (entries.length > 1) {
      throw new ServiceError(
        "InvalidParameterValueException",
        "Number of items in AdditionalVersionWeights cannot be greater than 1",
      );
    }
    for (const [extra, weight] of entries) {
      if (typeof weight !== "number" || weight < 0 || weight > 1) {
        throw new ServiceError(
          "ValidationException",
          `1 validation error detected: Value '${String(weight)}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0]`,
        );
      }
      if (version === "$LATEST" || extra === "$LATEST") {
        throw new ServiceError(
          "InvalidParameterValueException",
          "$LATEST is not supported for an alias pointing to more than 1 version",
        );
      }
      if (extra === version) {
        throw new ServiceError(
          "InvalidParameterValueException",
          `Invalid function version ${extra}. Function version ${extra} is already included in routing configuration.`,
        );
      }
      if (!fn.versions.has(extra)) {
        throw new ServiceError("ResourceNotFoundException", `Function not found: ${fn.arn}:${extra}`, 404);
      }
    }
    return Object.fromEntries(entries) as Record<string, number>;
  }

  function checkVersion(fn: Fn, version: unknown): string {
    if (typeof version !== "string" || !VERSION.test(version)) {
      throw new ServiceError(
        "ValidationException",
        `1 validation error detected: Value '${String(version)}' at 'functionVersion' failed to satisfy constraint: Member must satisfy regular expression pattern: (\\$LATEST|[0-9]+)`,
      );
    }
    if (version !== "$LATEST" && !fn.versions.has(version)) {
      throw new ServiceError("ResourceNotFoundException", `Function not found: ${fn.arn}:${version}`, 404);
    }
    return version;
  }

  function checkDescription(value: unknown): string | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== "string" || value.length > 256) {
      throw new ServiceError(
        "ValidationException",
        "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 256",
      );
    }
    return value;
  }

  // ---- invocations ------------------------------------------------------------------------

  function sandboxEnv(fn: Fn, snapshot: Snapshot, tmp: string, logStream: string): Record<string, string> {
    return {
      PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
      LANG: "en_US.UTF-8",
      TZ: ":UTC",
      ...snapshot.config.environment,
      LAMBDA_TASK_ROOT: snapshot.code.root,
      LAMBDA_RUNTIME_DIR: dirname(RUNTIME),
      _HANDLER: snapshot.code.handler,
      AWS_EXECUTION_ENV: "AWS_Lambda_nodejs22.x",
      AWS_LAMBDA_FUNCTION_NAME: fn.name,
      AWS_LAMBDA_FUNCTION_VERSION: snapshot.version,
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(snapshot.config.memoryMb),
      AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${fn.name}`,
      AWS_LAMBDA_LOG_STREAM_NAME: logStream,
      AWS_LAMBDA_INITIALIZATION_TYPE: "on-demand",
      AWS_REGION: region,
      AWS_DEFAULT_REGION: region,
      AWS_ACCESS_KEY_ID: "ASIAFAKELAMBDAROLE",
      AWS_SECRET_ACCESS_KEY: "fake-lambda-role-secret",
      AWS_SESSION_TOKEN: "fake-lambda-role-session",
      TMPDIR: tmp,
      ...options.extraEnv,
    };
  }

  async function takeSandbox(fn: Fn, snapshot: Snapshot): Promise<Sandbox> {
    const key = `${fn.name}\u0000${snapshot.version}\u0000${snapshot.generation}`;
    for (const sandbox of sandboxes) {
      if (sandbox.key === key && !sandbox.busy && !sandbox.dead) {
        clearTimeout(sandbox.idleTimer);
        sandbox.busy = true;
        return sandbox;
      }
    }
    const day = new Date().toISOString().slice(0, 10).replaceAll("-", "/");
    const logStream = `${day}/[${snapshot.version}]${randomBytes(16).toString("hex")}`;
    const tmp = spareTmp.get(key)?.pop() ?? join(workDir, "sandboxes", randomBytes(6).toString("hex"), "tmp");
    mkdirSync(tmp, { recursive: true });
    const sandbox = await Sandbox.start(
      key,
      tmp,
      sandboxEnv(fn, snapshot, tmp, logStream),
      snapshot.code.root,
      freeze,
      snapshot.code.entrypoint,
    );
    sandbox.busy = true;
    sandboxes.add(sandbox);
    sandbox.onExit(() => sandboxes.delete(sandbox));
    return sandbox;
  }

  function release(sandbox: Sandbox, reusable: boolean): void {
    sandbox.busy = false;
    if (!reusable || closed || sandbox.dead) {
      sandbox.kill();
      sandboxes.delete(sandbox);
      return;
    }
    sandbox.sleep();
    sandbox.ref(false);
    sandbox.idleTimer = setTimeout(() => {
      sandboxes.delete(sandbox);
      sandbox.kill();
    }, idleSandboxMs);
    sandbox.idleTimer.unref();
  }

  async function run(
    fn: Fn,
    snapshot: Snapshot,
    record: FakeInvocation,
    payload: string,
    invokedArn: string,
  ): Promise<RunOutcome> {
    const sandbox = await takeSandbox(fn, snapshot);
    sandbox.ref(true);
    sandbox.thaw();
    const init = await sandbox.ready;
    const start = `START RequestId: ${record.requestId} Version: ${snapshot.version}\n`;
    if (!init.ok) {
      const log = `${start}${sandbox.takeOutput()}END RequestId: ${record.requestId}\n`;
      release(sandbox, false);
      return { ok: false, error: init.error, timedOut: false, log };
    }
    const started = Date.now();
    const deadlineAt = started + snapshot.config.timeoutMs;
    record.deadlineAt = deadlineAt;
    const outcome = await new Promise<Omit<RunOutcome, "log">>((settle) => {
      const timer = setTimeout(() => {
        done({
          ok: false,
          timedOut: true,
          error: {
            errorType: "Sandbox.Timedout",
            errorMessage: `RequestId: ${record.requestId} Error: Task timed out after ${(snapshot.config.timeoutMs / 1000).toFixed(2)} seconds`,
          },
        });
      }, snapshot.config.timeoutMs);
      let ended = false;
      const offExit = sandbox.onExit((code, signal) => {
        done({
          ok: false,
          timedOut: false,
          error: {
            errorType: "Runtime.ExitError",
            errorMessage: `RequestId: ${record.requestId} Error: Runtime exited with error: ${signal ? `signal: ${signal.toLowerCase()}` : `exit status ${code}`}`,
          },
        });
      });
      function done(result: Omit<RunOutcome, "log">) {
        if (ended) return;
        ended = true;
        clearTimeout(timer);
        offExit();
        settle(result);
      }
      sandbox
        .invoke({
          requestId: record.requestId,
          payload,
          deadlineAt,
          context: {
            functionName: fn.name,
            functionVersion: snapshot.version,
            invokedFunctionArn: invokedArn,
            memoryLimitInMB: String(snapshot.config.memoryMb),
            logGroupName: `/aws/lambda/${fn.name}`,
            logStreamName: sandbox.logStream,
          },
        })
        .then((answer) =>
          done(
            answer.ok
              ? { ok: true, payload: answer.payload, timedOut: false }
              : { ok: false, error: answer.error, timedOut: false },
          ),
        );
    });
    if (outcome.timedOut) {
      sandbox.kill();
      spareTmp.set(sandbox.key, [...(spareTmp.get(sandbox.key) ?? []), sandbox.tmp]);
    }
    const durationMs = Date.now() - started;
    let result = outcome;
    if (outcome.ok && Buffer.byteLength(outcome.payload ?? "") > SYNC_PAYLOAD_BYTES) {
      result = {
        ok: false,
        timedOut: false,
        error: {
          errorType: "Function.ResponseSizeTooLarge",
          errorMessage: `Response payload size exceeded maximum allowed payload size (${SYNC_PAYLOAD_BYTES} bytes).`,
        },
      };
    }
    const log =
      start +
      sandbox.takeOutput() +
      (outcome.timedOut
        ? `${new Date().toISOString()} ${record.requestId} ${outcome.error!.errorMessage}\n`
        : "") +
      `END RequestId: ${record.requestId}\n` +
      `REPORT RequestId: ${record.requestId}\tDuration: ${durationMs.toFixed(2)} ms\tBilled Duration: ${Math.max(1, durationMs)} ms\tMemory Size: ${snapshot.config.memoryMb} MB\n`;
    release(sandbox, !outcome.timedOut && !sandbox.dead);
    return { ...result, log };
  }

  function settleRecord(record: FakeInvocation, outcome: RunOutcome): void {
    record.log += outcome.log;
    record.endedAt = Date.now();
    if (outcome.ok) {
      record.status = "succeeded";
      try {
        record.result = JSON.parse(outcome.payload ?? "null");
      } catch {
        record.result = outcome.payload;
      }
      delete record.error;
    } else {
      record.status = outcome.timedOut ? "timed-out" : "failed";
      record.error = outcome.error;
    }
  }

  function pendingStarted(): () => void {
    pending += 1;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      pending -= 1;
      if (pending === 0) {
        const waiters = idleWaiters;
        idleWaiters = [];
        for (const wake of waiters) wake();
      }
    };
  }

  function newRecord(
    fn: Fn,
    qualifier: string,
    version: string,
    type: FakeInvocation["invocationType"],
    payload: string,
  ): { record: FakeInvocation; resolveDone: () => void } {
    let resolveDone!: () => void;
    let event: unknown;
    try {
      event = JSON.parse(payload);
    } catch {
      event = payload;
    }
    const record: FakeInvocation = {
      requestId: randomUUID(),
      functionName: fn.name,
      qualifier,
      executedVersion: version,
      invocationType: type,
      event,
      status: "queued",
      log: "",
      attempts: 0,
      queuedAt: Date.now(),
      done: undefined as unknown as Promise<FakeInvocation>,
    };
    record.done = new Promise<FakeInvocation>((resolveRecord) => {
      resolveDone = () => resolveRecord(record);
    });
    invocations.push(record);
    return { record, resolveDone };
  }

  /** Starts queued async events while the function has concurrency to spare. */
  function pump(fn: Fn): void {
    while (
      fn.queue.length > 0 &&
      (fn.reservedConcurrency === undefined || fn.running < fn.reservedConcurrency)
    ) {
      const item = fn.queue.shift()!;
      if (Date.now() - item.enqueuedAt > fn.maximumEventAgeSeconds * 1000) {
        item.record.status = "dropped";
        item.record.endedAt = Date.now();
        item.finish();
        continue;
      }
      fn.running += 1;
      item.record.status = "running";
      item.record.attempts += 1;
      item.record.startedAt = Date.now();
      run(fn, item.snapshot, item.record, item.payload, item.invokedArn)
        .then((outcome) => {
          fn.running -= 1;
          settleRecord(item.record, outcome);
          const retry = !outcome.ok && item.record.attempts <= fn.maximumRetryAttempts && !closed;
          if (retry) {
            const delay =
              fn.asyncRetryDelaysMs[item.record.attempts - 1] ?? fn.asyncRetryDelaysMs.at(-1) ?? 0;
            item.record.status = "queued";
            retrying.add(item);
            later(delay, () => {
              retrying.delete(item);
              fn.queue.push(item);
              pump(fn);
            });
          } else {
            item.finish();
          }
          pump(fn);
        })
        .catch((error: unknown) => {
          fn.running -= 1;
          faults.push(`async invocation failed inside the fake: ${String(error)}`);
          item.finish();
        });
    }
  }

  async function invoke(
    fn: Fn,
    qualifier: string | undefined,
    headers: Record<string, string | undefined>,
    body: Buffer,
  ): Promise<{ status: number; headers: Record<string, string>; body: string }> {
    const type = headers["x-amz-invocation-type"] ?? "RequestResponse";
    if (type !== "RequestResponse" && type !== "Event" && type !== "DryRun") {
      throw new ServiceError(
        "ValidationException",
        `1 validation error detected: Value '${type}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]`,
      );
    }
    const limit = type === "Event" ? ASYNC_PAYLOAD_BYTES : SYNC_PAYLOAD_BYTES;
    if (body.byteLength > limit) {
      throw new ServiceError(
        "RequestTooLargeException",
        `${type === "Event" ? "Request" : "Request must be smaller than 6291456 bytes for the InvokeFunction operation"}`,
        413,
      );
    }
    const payload = body.byteLength === 0 ? "{}" : body.toString("utf8");
    try {
      JSON.parse(payload);
    } catch {
      throw new ServiceError("InvalidRequestContentException", "Could not parse request body into json", 400);
    }
    // Resolve the alias (routing by weight), the version, or $LATEST.
    const asked = qualifier ?? "$LATEST";
    let version = asked;
    const alias = fn.aliases.get(asked);
    if (alias) {
      version = alias.version;
      const [extra, weight] = Object.entries(alias.weights)[0] ?? [];
      if (extra !== undefined && weight !== undefined && random() < weight) version = extra;
    }
    const snapshot = snapshotOf(fn, version);
    if (snapshot.state === "Pending") {
      throw new ServiceError(
        "ResourceConflictException",
        "The operation cannot be performed at this time. The function is currently in the following state: Pending",
        409,
      );
    }
    if (type === "DryRun") return { status: 204, headers: {}, body: "" };
    const invokedArn = qualifier === undefined ? fn.arn : `${fn.arn}:${qualifier}`;
    const { record, resolveDone } = newRecord(fn, asked, version, type, payload);
    const finish = pendingStarted();
    const end = () => {
      finish();
      resolveDone();
    };

    if (type === "Event") {
      fn.queue.push({ record, snapshot, payload, invokedArn, enqueuedAt: Date.now(), finish: end });
      pump(fn);
      return { status: 202, headers: { "x-amzn-requestid": record.requestId }, body: "" };
    }

    if (fn.reservedConcurrency !== undefined && fn.running >= fn.reservedConcurrency) {
      invocations.splice(invocations.indexOf(record), 1);
      end();
      throw new ServiceError("TooManyRequestsException", "Rate Exceeded.", 429, {
        Reason: "ReservedFunctionConcurrentInvocationLimitExceeded",
      });
    }
    fn.running += 1;
    record.status = "running";
    record.attempts = 1;
    record.startedAt = Date.now();
    let outcome: RunOutcome;
    try {
      outcome = await run(fn, snapshot, record, payload, invokedArn);
    } finally {
      fn.running -= 1;
      pump(fn);
    }
    settleRecord(record, outcome);
    end();
    const out: Record<string, string> = {
      "x-amz-executed-version": version,
      "x-amzn-requestid": record.requestId,
    };
    if (headers["x-amz-log-type"] === "Tail") {
      const log = Buffer.from(record.log, "utf8");
      out["x-amz-log-result"] = log.subarray(Math.max(0, log.byteLength - TAIL_BYTES)).toString("base64");
    }
    if (!outcome.ok) {
      out["x-amz-function-error"] = "Unhandled";
      return { status: 200, headers: out, body: JSON.stringify(outcome.error) };
    }
    return { status: 200, headers: out, body: outcome.payload ?? "null" };
  }

  // ---- the API ----------------------------------------------------------------------------

  /** `name`, `name:qualifier`, a partial ARN or an ARN -> name and qualifier. */
  function parseName(raw: string): { name: string; qualifier?: string } {
    const arn =
      /^(?:arn:aws[a-zA-Z-]*:lambda:([a-z0-9-]+):)?(?:(\d{12}):)?(?:function:)?([a-zA-Z0-9-_]+)(?::(\$LATEST|[a-zA-Z0-9-_]+))?$/.exec(
        raw,
      );
    if (!arn || raw.length > 140) {
      throw new ServiceError(
        "ValidationException",
        `1 validation error detected: Value '${raw}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?`,
      );
    }
    const [, arnRegion, arnAccount, name, qualifier] = arn;
    if ((arnRegion && arnRegion !== region) || (arnAccount && arnAccount !== accountId)) {
      throw new ServiceError("ResourceNotFoundException", `Function not found: ${raw}`, 404);
    }
    if (!FUNCTION_NAME.test(name!)) {
      throw new ServiceError("ValidationException", `function name ${name} is longer than 64 characters`);
    }
    return qualifier === undefined ? { name: name! } : { name: name!, qualifier };
  }

  function qualifierOf(parsed: { qualifier?: string }, query: string | null): string | undefined {
    if (query !== null && parsed.qualifier !== undefined && query !== parsed.qualifier) {
      throw new ServiceError(
        "InvalidParameterValueException",
        "The derived qualifier from the function name does not match the specified qualifier.",
      );
    }
    return query ?? parsed.qualifier;
  }

  function unqualified(parsed: { name: string; qualifier?: string }, operation: string): void {
    if (parsed.qualifier !== undefined) {
      throw new ServiceError(
        "InvalidParameterValueException",
        `${operation} does not take a qualified function name: ${parsed.name}:${parsed.qualifier}`,
      );
    }
  }

  type Route = { operation: FakeLambdaOperation; name: string; alias?: string };

  function route(method: string, path: string): Route | undefined {
    if (!path.startsWith(API)) return undefined;
    const parts = path.slice(API.length).split("/").map(decodeURIComponent);
    const [name, sub, extra] = parts;
    if (name === undefined || name === "" || parts.length > 3) return undefined;
    const table: Record<string, FakeLambdaOperation> = {
      "GET ": "GetFunction",
      "GET configuration": "GetFunctionConfiguration",
      "PUT code": "UpdateFunctionCode",
      "POST versions": "PublishVersion",
      "GET versions": "ListVersionsByFunction",
      "POST aliases": "CreateAlias",
      "GET aliases": "ListAliases",
      "POST invocations": "Invoke",
    };
    if (extra !== undefined) {
      if (sub !== "aliases") return undefined;
      const byMethod: Record<string, FakeLambdaOperation> = {
        GET: "GetAlias",
        PUT: "UpdateAlias",
        DELETE: "DeleteAlias",
      };
      const operation = byMethod[method];
      return operation ? { operation, name, alias: extra } : undefined;
    }
    const operation = table[`${method} ${sub ?? ""}`];
    return operation ? { operation, name } : undefined;
  }

  async function handleOperation(
    target: Route,
    query: URLSearchParams,
    headers: Record<string, string | undefined>,
    raw: Buffer,
    record: FakeLambdaRequest,
  ): Promise<{ status: number; headers?: Record<string, string>; body: unknown; rawBody?: boolean }> {
    const parsed = parseName(target.name);
    record.functionName = parsed.name;
    let body: Record<string, unknown> = {};
    if (target.operation !== "Invoke" && raw.byteLength > 0) {
      try {
        const value: unknown = JSON.parse(raw.toString("utf8"));
        if (value === null || typeof value !== "object" || Array.isArray(value))
          throw new Error("not an object");
        body = value as Record<string, unknown>;
      } catch {
        throw new ServiceError("SerializationException", "the request body is not a JSON object");
      }
    }
    const qualifier =
      target.operation === "GetFunction" ||
      target.operation === "GetFunctionConfiguration" ||
      target.operation === "Invoke"
        ? qualifierOf(parsed, query.get("Qualifier"))
        : undefined;
    if (qualifier !== undefined) record.qualifier = qualifier;
    await fake.onRequest?.(target.operation, {
      functionName: parsed.name,
      ...(qualifier !== undefined ? { qualifier } : {}),
      ...(target.alias !== undefined ? { alias: target.alias } : {}),
      body,
      headers,
    });
    const fn = find(parsed.name);
    switch (target.operation) {
      case "GetFunction": {
        const snapshot = snapshotOf(fn, qualifier);
        const code = snapshot.code;
        return {
          status: 200,
          body: {
            Configuration: configurationOf(fn, snapshot),
            Code:
              code.packageType === "Image"
                ? { RepositoryType: "ECR", ImageUri: code.imageUri, ResolvedImageUri: code.imageUri }
                : {
                    RepositoryType: "S3",
                    Location: `https://awslambda-${region}-tasks.s3.${region}.amazonaws.com/snapshots/${accountId}/${fn.name}-${randomUUID()}`,
                  },
            Tags: {},
          },
        };
      }
      case "GetFunctionConfiguration":
        return { status: 200, body: configurationOf(fn, snapshotOf(fn, qualifier)) };
      case "UpdateFunctionCode": {
        unqualified(parsed, "UpdateFunctionCode");
        checkNotUpdating(fn);
        checkRevision(fn.latest.revisionId, body.RevisionId, "GetFunction");
        const zip = typeof body.ZipFile === "string" ? Buffer.from(body.ZipFile, "base64") : undefined;
        const imageUri = typeof body.ImageUri === "string" ? body.ImageUri : undefined;
        if (fn.latest.code.packageType === "Zip" && imageUri !== undefined) {
          throw new ServiceError(
            "InvalidParameterValueException",
            "Please don't provide ImageUri when updating a function with packageType Zip.",
          );
        }
        if (fn.latest.code.packageType === "Image" && zip !== undefined) {
          throw new ServiceError(
            "InvalidParameterValueException",
            "Please provide ImageUri when updating a function with packageType Image.",
          );
        }
        if (zip === undefined && imageUri === undefined) {
          throw new ServiceError(
            "InvalidParameterValueException",
            "Please provide a source for function code (ZipFile, S3Bucket and S3Key, or ImageUri).",
          );
        }
        const code = codeOf(zip ? { zip } : { imageUri: imageUri! }, fn.latest.code.handler);
        if (body.DryRun === true) return { status: 200, body: configurationOf(fn, fn.latest) };
        fn.latest = {
          ...fn.latest,
          code,
          revisionId: randomUUID(),
          lastModified: lastModified(),
          generation: ++generations,
        };
        fn.lastUpdateStatus = "InProgress";
        const answer = configurationOf(fn, fn.latest);
        const updated = new Promise<void>((resolveUpdate) => {
          fn.completeUpdate = () => {
            fn.completeUpdate = undefined;
            fn.lastUpdateStatus = "Successful";
            fn.latest.revisionId = randomUUID();
            resolveUpdate();
          };
        });
        const delay = fn.updateDelayMs ?? updateDelayMs;
        if (delay > 0) later(delay, () => fn.completeUpdate?.());
        else fn.completeUpdate?.();
        if (body.Publish === true) {
          // Publishing waits for the update, as the service does.
          await updated;
          const version = publishVersion(fn);
          return { status: 200, body: configurationOf(fn, version) };
        }
        return { status: 200, body: answer };
      }
      case "PublishVersion": {
        unqualified(parsed, "PublishVersion");
        checkNotUpdating(fn);
        checkRevision(fn.latest.revisionId, body.RevisionId, "GetFunction");
        if (body.CodeSha256 !== undefined && body.CodeSha256 !== fn.latest.code.sha256) {
          throw new ServiceError(
            "PreconditionFailedException",
            `CodeSHA256 (${String(body.CodeSha256)}) is different from current CodeSHA256 in $LATEST (${fn.latest.code.sha256}). Please try again with the CodeSHA256 in $LATEST.`,
            412,
          );
        }
        const version = publishVersion(fn, checkDescription(body.Description));
        return { status: 201, body: configurationOf(fn, version) };
      }
      case "ListVersionsByFunction": {
        const all = [fn.latest, ...fn.versions.values()];
        const start = Number(query.get("Marker") ?? "0");
        const max = Math.min(10_000, Number(query.get("MaxItems") ?? "50"));
        const page = all.slice(start, start + max);
        return {
          status: 200,
          body: {
            Versions: page.map((s) => configurationOf(fn, s)),
            ...(start + max < all.length ? { NextMarker: String(start + max) } : {}),
          },
        };
      }
      case "CreateAlias": {
        const name = body.Name;
        if (typeof name !== "string" || !ALIAS_NAME.test(name)) {
          throw new ServiceError("ValidationException", `invalid alias name ${String(name)}`);
        }
        if (fn.aliases.has(name)) {
          throw new ServiceError("ResourceConflictException", `Alias already exists: ${fn.arn}:${name}`, 409);
        }
        const version = checkVersion(fn, body.FunctionVersion);
        const alias: Alias = {
          name,
          version,
          weights: checkRouting(fn, version, body.RoutingConfig),
          description: checkDescription(body.Description) ?? "",
          revisionId: randomUUID(),
        };
        fn.aliases.set(name, alias);
        return { status: 201, body: aliasOf(fn, alias) };
      }
      case "GetAlias":
      case "UpdateAlias":
      case "DeleteAlias": {
        const alias = fn.aliases.get(target.alias!);
        if (!alias) {
          throw new ServiceError(
            "ResourceNotFoundException",
            `Alias not found: ${fn.arn}:${target.alias}`,
            404,
          );
        }
        if (target.operation === "GetAlias") return { status: 200, body: aliasOf(fn, alias) };
        if (target.operation === "DeleteAlias") {
          fn.aliases.delete(alias.name);
          return { status: 204, body: "" };
        }
        checkRevision(alias.revisionId, body.RevisionId, "GetAlias");
        const version =
          body.FunctionVersion === undefined ? alias.version : checkVersion(fn, body.FunctionVersion);
        const weights =
          body.RoutingConfig === undefined ? alias.weights : checkRouting(fn, version, body.RoutingConfig);
        // Kept weights must still make sense with a new version.
        checkRouting(fn, version, { AdditionalVersionWeights: weights });
        const description = checkDescription(body.Description) ?? alias.description;
        Object.assign(alias, { version, weights, description, revisionId: randomUUID() });
        return { status: 200, body: aliasOf(fn, alias) };
      }
      case "ListAliases":
        return { status: 200, body: { Aliases: [...fn.aliases.values()].map((a) => aliasOf(fn, a)) } };
      case "Invoke": {
        const answer = await invoke(fn, qualifier, headers, raw);
        return { status: answer.status, headers: answer.headers, body: answer.body, rawBody: true };
      }
    }
  }

  const send = (
    res: ServerResponse,
    record: FakeLambdaRequest,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
    rawBody = false,
  ) => {
    record.status = status;
    const text = rawBody ? String(body) : status === 204 ? "" : JSON.stringify(body);
    res.writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
      "x-amzn-requestid": randomUUID(),
      ...headers,
    });
    res.end(text);
  };
  const fail = (res: ServerResponse, record: FakeLambdaRequest, error: ServiceError) => {
    record.errorType = error.type;
    send(
      res,
      record,
      error.status,
      { Type: error.status >= 500 ? "Service" : "User", message: error.message, ...error.extra },
      { "x-amzn-errortype": error.type, ...error.headers },
    );
  };

  const readBody = (req: IncomingMessage): Promise<Buffer | undefined> =>
    new Promise((resolveBody, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size <= MAX_REQUEST_BYTES) chunks.push(chunk);
      });
      req.on("end", () => resolveBody(size > MAX_REQUEST_BYTES ? undefined : Buffer.concat(chunks)));
      req.on("error", reject);
    });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const method = req.method ?? "GET";
    const target = route(method, url.pathname);
    const record: FakeLambdaRequest = {
      operation: target?.operation ?? "Unknown",
      method,
      path: url.pathname,
      status: 0,
      signed: String(req.headers.authorization ?? "").startsWith("AWS4-HMAC-SHA256 "),
      startedAt: Date.now(),
    };
    requests.push(record);
    const raw = await readBody(req);
    if (!target) {
      return fail(
        res,
        record,
        new ServiceError("UnknownOperationException", `${method} ${url.pathname}`, 404),
      );
    }
    if (raw === undefined) {
      return fail(
        res,
        record,
        new ServiceError(
          "RequestEntityTooLargeException",
          `Request must be smaller than ${MAX_REQUEST_BYTES} bytes for the ${target.operation} operation`,
          413,
        ),
      );
    }
    record.functionName = /^(?:.*:function:)?([^:]+)/.exec(target.name)?.[1] ?? target.name;
    const injected = failures.find(
      (f) => f.count > 0 && (f.operation === undefined || f.operation === target.operation),
    );
    if (injected && !injected.afterHandling) {
      injected.count -= 1;
      return inject(req, res, record, injected.failure, target.operation);
    }
    const headers: Record<string, string | undefined> = {};
    for (const [key, value] of Object.entries(req.headers)) {
      headers[key] = Array.isArray(value) ? value.join(",") : value;
    }
    try {
      const answer = await handleOperation(target, url.searchParams, headers, raw, record);
      if (injected?.afterHandling) {
        injected.count -= 1;
        return inject(req, res, record, injected.failure, target.operation);
      }
      send(res, record, answer.status, answer.body, answer.headers, answer.rawBody);
    } catch (error) {
      if (error instanceof ServiceError) return fail(res, record, error);
      faults.push(`${target.operation}: ${String((error as Error)?.stack ?? error)}`);
      return fail(res, record, new ServiceError("ServiceException", String(error), 500));
    }
  };

  function inject(
    req: IncomingMessage,
    res: ServerResponse,
    record: FakeLambdaRequest,
    failure: FakeLambdaFailure,
    operation: string,
  ): void {
    if (failure === "ConnectionReset") {
      record.status = -1;
      record.errorType = "ConnectionReset";
      req.socket.destroy();
      return;
    }
    const action = `lambda:${operation === "Invoke" ? "InvokeFunction" : operation}`;
    const errors: Record<Exclude<FakeLambdaFailure, "ConnectionReset">, ServiceError> = {
      TooManyRequestsException: new ServiceError("TooManyRequestsException", "Rate exceeded", 429, {
        Reason: "CallerRateLimitExceeded",
      }),
      ServiceException: new ServiceError(
        "ServiceException",
        "The Lambda service encountered an internal error.",
        500,
      ),
      AccessDeniedException: new ServiceError(
        "AccessDeniedException",
        `User: arn:aws:sts::${accountId}:assumed-role/deployer/ci is not authorized to perform: ${action} on resource: ${functionArn(record.functionName ?? "?")} because no identity-based policy allows the ${action} action`,
        403,
      ),
    };
    fail(res, record, errors[failure]);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      faults.push(`fake failed: ${String(error)}`);
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolveListen) => server.listen(0, "127.0.0.1", resolveListen));
  const { port } = server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${port}`;
  const killAll = () => {
    for (const sandbox of sandboxes) sandbox.kill();
  };
  process.once("exit", killAll);

  const fake: FakeLambda = {
    endpoint,
    region,
    accountId,
    clientConfig: {
      endpoint,
      region,
      credentials: { accessKeyId: "AKIDFAKELAMBDA", secretAccessKey: "fake-secret" },
    },
    env: {
      AWS_ENDPOINT_URL_LAMBDA: endpoint,
      AWS_REGION: region,
      AWS_ACCESS_KEY_ID: "AKIDFAKELAMBDA",
      AWS_SECRET_ACCESS_KEY: "fake-secret",
    },
    requests,
    invocations,
    faults,
    onRequest: undefined,
    createFunction(setup) {
      if (!FUNCTION_NAME.test(setup.name)) throw new Error(`bad function name ${setup.name}`);
      if (functions.has(setup.name)) throw new Error(`function ${setup.name} exists`);
      const timeoutMs = setup.timeoutMs ?? (setup.timeoutSeconds ?? 3) * 1000;
      const code = codeOf(setup.code, setup.handler);
      functions.set(setup.name, {
        name: setup.name,
        arn: functionArn(setup.name),
        latest: {
          version: "$LATEST",
          code,
          config: {
            timeoutMs,
            memoryMb: setup.memoryMb ?? 128,
            ephemeralStorageMb: setup.ephemeralStorageMb ?? 512,
            environment: { ...setup.environment },
            description: setup.description ?? "",
          },
          revisionId: randomUUID(),
          lastModified: lastModified(),
          state: "Active",
          generation: ++generations,
        },
        lastUpdateStatus: "Successful",
        updateDelayMs: setup.updateDelayMs,
        completeUpdate: undefined,
        versions: new Map(),
        lastVersion: 0,
        aliases: new Map(),
        reservedConcurrency: setup.reservedConcurrency,
        maximumRetryAttempts: setup.maximumRetryAttempts ?? 2,
        maximumEventAgeSeconds: setup.maximumEventAgeSeconds ?? 21_600,
        asyncRetryDelaysMs: setup.asyncRetryDelaysMs ?? [60_000, 120_000],
        running: 0,
        queue: [],
      });
    },
    updateConfiguration(name, change) {
      const fn = functions.get(name);
      if (!fn) throw new Error(`no function ${name}`);
      const config = { ...fn.latest.config };
      if (change.environment) config.environment = { ...change.environment };
      if (change.timeoutMs !== undefined) config.timeoutMs = change.timeoutMs;
      if (change.memoryMb !== undefined) config.memoryMb = change.memoryMb;
      fn.latest = {
        ...fn.latest,
        config,
        revisionId: randomUUID(),
        lastModified: lastModified(),
        generation: ++generations,
      };
    },
    completeUpdate(name) {
      const fn = functions.get(name);
      if (!fn) throw new Error(`no function ${name}`);
      fn.completeUpdate?.();
    },
    publish(name) {
      const fn = functions.get(name);
      if (!fn) throw new Error(`no function ${name}`);
      return publishVersion(fn).version;
    },
    setAlias(name, aliasName, version, description = "") {
      const fn = functions.get(name);
      if (!fn) throw new Error(`no function ${name}`);
      const existing = fn.aliases.get(aliasName);
      fn.aliases.set(aliasName, {
        name: aliasName,
        version,
        weights: {},
        description: description || existing?.description || "",
        revisionId: randomUUID(),
      });
    },
    state(name) {
      const fn = functions.get(name);
      if (!fn) throw new Error(`no function ${name}`);
      return {
        name,
        arn: fn.arn,
        versions: [...fn.versions.keys()],
        aliases: Object.fromEntries(
          [...fn.aliases.values()].map((a) => [
            a.name,
            { version: a.version, weights: { ...a.weights }, description: a.description },
          ]),
        ),
        codeSha256: fn.latest.code.sha256,
        lastUpdateStatus: fn.lastUpdateStatus,
      };
    },
    failNext(count, failure, operation, failOptions = {}) {
      failures.push({ count, failure, operation, afterHandling: failOptions.afterHandling ?? false });
    },
    clearFailures() {
      failures.length = 0;
    },
    waitForIdle(timeoutMs = 30_000) {
      if (pending === 0) return Promise.resolve();
      return new Promise((resolveIdle, reject) => {
        const timer = setTimeout(() => {
          idleWaiters = idleWaiters.filter((w) => w !== wake);
          reject(new Error(`fake Lambda: invocations still pending after ${timeoutMs} ms`));
        }, timeoutMs);
        const wake = () => {
          clearTimeout(timer);
          resolveIdle();
        };
        idleWaiters.push(wake);
      });
    },
    sandboxCount() {
      return [...sandboxes].filter((s) => !s.dead).length;
    },
    close: () =>
      new Promise<void>((resolveClose) => {
        closed = true;
        process.removeListener("exit", killAll);
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        for (const item of [...retrying, ...[...functions.values()].flatMap((fn) => fn.queue.splice(0))]) {
          item.record.status = "dropped";
          item.finish();
        }
        retrying.clear();
        killAll();
        server.closeAllConnections();
        server.close(() => {
          rmSync(workDir, { recursive: true, force: true });
          resolveClose();
        });
      }),
  };
  return fake;
}

/**
 * Creates `name` as an agent function the controller's Lambda provisioner can invoke: the real
 * handler with short grace and drain, no CloudWatch copy, labels `git bash`, no async retries,
 * its first version published as `live`.
 */
export function createAgentFunction(lambda: FakeLambda, name: string, timeoutMs: number): void {
  lambda.createFunction({
    name,
    timeoutMs,
    environment: {
      AGENT_DEADLINE_MARGIN_MS: "1000",
      AGENT_CLOUDWATCH: "off",
      AGENT_LABELS: "git bash",
      AGENT_GRACE_MS: "300",
      AGENT_DRAIN_MS: "200",
    },
    maximumRetryAttempts: 0,
  });
  lambda.setAlias(name, "live", lambda.publish(name));
}

import { randomBytes, randomUUID } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * A loopback Lambda Runtime API (version 2018-06-01) that follows the documented API, for tests
 * of the Runtime API loop on the host and of the container image in Lambda mode:
 *
 * - `GET /2018-06-01/runtime/invocation/next` blocks until an invocation is queued, then answers
 *   200 with the event and `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms` (epoch
 *   ms: now + the invocation's timeout), `Lambda-Runtime-Invoked-Function-Arn`,
 *   `Lambda-Runtime-Trace-Id` and, when given, `Lambda-Runtime-Client-Context`,
 *   `Lambda-Runtime-Cognito-Identity` and `Lambda-Runtime-Aws-Tenant-Id`. One invocation at a
 *   time: `next` while one is running is refused (400, as a state violation).
 * - `POST .../invocation/<id>/response`: 202; 400 for an id that is not the running invocation
 *   (unknown, answered, or past its deadline); 413 above 6 MB (the invocation then fails with
 *   `Function.ResponseSizeTooLarge`, as Lambda reports it).
 * - `POST .../invocation/<id>/error`: 202 when the body is JSON with string `errorMessage` and
 *   `errorType` (and `stackTrace`, if any, an array of strings); 400 otherwise.
 * - `POST /2018-06-01/runtime/init/error`: 202; the error is served to the first invocation, and
 *   every later call of the runtime is refused (403): the runtime should have exited.
 * - An invocation not answered by its deadline ends `timeout` ("Task timed out").
 *
 * Every request the documented API would not accept is also recorded in `violations`: tests
 * assert that the runtime made none.
 */
export interface FakeLambdaRuntime {
  /** `host:port`, the value for `AWS_LAMBDA_RUNTIME_API`. */
  address: string;
  /** Queues an invocation; resolves when the runtime answers it, or at its deadline. */
  invoke(event: unknown, options?: InvokeOptions): Promise<InvokeResult>;
  /** Resolves at the runtime's first `next` (init done), or with the init error it reported. */
  ready(): Promise<{ kind: "next" } | { kind: "init-error"; error: PostedError }>;
  /** Requests the documented API would refuse, one line each. */
  violations: string[];
  /** The init error, if the runtime reported one. */
  initError: PostedError | undefined;
  /** From now on every request is answered with this status (500: Lambda's "container error, runtime should exit"). */
  breakWith(status: number): void;
  close(): Promise<void>;
}

export interface InvokeOptions {
  /** The function's timeout for this invocation: the deadline is now + this (default 60 s). */
  timeoutMs?: number;
  /**
   * The `Lambda-Runtime-Deadline-Ms` to send instead of now + `timeoutMs` (a deadline already
   * past, as clock skew would make it); the fake still ends the invocation after `timeoutMs`.
   */
  deadlineMs?: number;
  /** The event's JSON text as sent, instead of `JSON.stringify(event)` (to send something that is not JSON). */
  rawBody?: string;
  functionArn?: string;
  clientContext?: unknown;
  identity?: unknown;
  tenantId?: string;
}

export interface PostedError {
  /** The `Lambda-Runtime-Function-Error-Type` header, if sent. */
  headerType: string | undefined;
  errorType: string;
  errorMessage: string;
  stackTrace: string[];
}

interface Timing {
  requestId: string;
  deadlineMs: number;
  /** When the runtime took the invocation with `next` (epoch ms), if it did. */
  takenAt: number | undefined;
  /** When the invocation ended (answer, error or timeout), epoch ms. */
  endedAt: number;
  traceId: string;
}

export type InvokeResult =
  | ({ status: "response"; body: unknown; raw: string } & Timing)
  | ({ status: "error"; error: PostedError } & Timing)
  | ({ status: "timeout" } & Timing);

interface Pending {
  requestId: string;
  body: string;
  timeoutMs: number;
  options: InvokeOptions;
  traceId: string;
  deadlineMs: number;
  takenAt: number | undefined;
  timer: NodeJS.Timeout | undefined;
  resolve: (result: InvokeResult) => void;
}

const PREFIX = "/2018-06-01/runtime/";
const MAX_RESPONSE_BYTES = 6 * 1024 * 1024;
/** Bodies are read up to this much (the response limit and some): a larger one is refused as it comes. */
const MAX_BODY_BYTES = MAX_RESPONSE_BYTES + 1024 * 1024;

export async function startFakeLambdaRuntime(options: { host?: string } = {}): Promise<FakeLambdaRuntime> {
  const queue: Pending[] = [];
  let running: Pending | undefined;
  const finished = new Set<string>();
  let waitingNext: { res: ServerResponse } | undefined;
  let initError: PostedError | undefined;
  const violations: string[] = [];
  const sockets = new Set<Socket>();
  const readyWaiters: ((value: { kind: "next" } | { kind: "init-error"; error: PostedError }) => void)[] = [];
  let sawNext = false;
  let brokenWith: number | undefined;

  const answer = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  };
  const refuse = (res: ServerResponse, status: number, errorType: string, errorMessage: string) => {
    violations.push(`${status} ${errorType}: ${errorMessage}`);
    answer(res, status, { errorType, errorMessage });
  };

  const timing = (p: Pending): Timing => ({
    requestId: p.requestId,
    deadlineMs: p.deadlineMs,
    takenAt: p.takenAt,
    endedAt: Date.now(),
    traceId: p.traceId,
  });
  const end = (p: Pending, result: InvokeResult) => {
    clearTimeout(p.timer);
    finished.add(p.requestId);
    if (running === p) running = undefined;
    p.resolve(result);
  };

  const hand = (p: Pending, res: ServerResponse) => {
    running = p;
    p.takenAt = Date.now();
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "content-length": String(Buffer.byteLength(p.body)),
      "lambda-runtime-aws-request-id": p.requestId,
      "lambda-runtime-deadline-ms": String(p.deadlineMs),
      "lambda-runtime-invoked-function-arn":
        p.options.functionArn ?? "arn:aws:lambda:us-east-1:123456789012:function:jnlp-agent-git-bash",
      "lambda-runtime-trace-id": p.traceId,
    };
    if (p.options.clientContext !== undefined)
      headers["lambda-runtime-client-context"] = JSON.stringify(p.options.clientContext);
    if (p.options.identity !== undefined)
      headers["lambda-runtime-cognito-identity"] = JSON.stringify(p.options.identity);
    if (p.options.tenantId !== undefined) headers["lambda-runtime-aws-tenant-id"] = p.options.tenantId;
    res.writeHead(200, headers);
    res.end(p.body);
  };

  const dispatch = () => {
    if (running !== undefined || waitingNext === undefined) return;
    const next = queue.shift();
    if (next === undefined) return;
    const { res } = waitingNext;
    waitingNext = undefined;
    hand(next, res);
  };

  const readBody = async (req: IncomingMessage): Promise<Buffer | "too-large"> => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) return "too-large";
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  };

  const server: Server = createServer((req, res) => {
    void handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) answer(res, 500, { errorType: "FakeError", errorMessage: String(error) });
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? "";
    if (!url.startsWith(PREFIX)) {
      refuse(res, 404, "NotFound", `${req.method} ${url} is not a Runtime API path`);
      return;
    }
    const path = url.slice(PREFIX.length);
    if (brokenWith !== undefined) {
      await readBody(req);
      answer(res, brokenWith, { errorType: "ContainerError", errorMessage: "the fake was told to fail" });
      return;
    }
    if (initError !== undefined) {
      await readBody(req);
      refuse(
        res,
        403,
        "InvalidStateTransition",
        `${req.method} ${path} after an init error: the runtime should exit`,
      );
      return;
    }

    if (path === "invocation/next") {
      if (req.method !== "GET") return refuse(res, 405, "MethodNotAllowed", `${req.method} ${path}`);
      if (running !== undefined) {
        return refuse(res, 400, "InvalidStateTransition", `next while ${running.requestId} is running`);
      }
      if (waitingNext !== undefined) {
        return refuse(res, 400, "InvalidStateTransition", "a second next while one is waiting");
      }
      if (!sawNext) {
        sawNext = true;
        for (const waiter of readyWaiters.splice(0)) waiter({ kind: "next" });
      }
      waitingNext = { res };
      res.once("close", () => {
        if (waitingNext?.res === res) waitingNext = undefined;
      });
      dispatch();
      return;
    }

    if (path === "init/error") {
      if (req.method !== "POST") return refuse(res, 405, "MethodNotAllowed", `${req.method} ${path}`);
      const body = await readBody(req);
      const error = body === "too-large" ? undefined : parseError(body, req.headers);
      if (error === undefined)
        return refuse(res, 400, "InvalidRequest", "init error body is not a documented error");
      initError = error;
      answer(res, 202, { status: "OK" });
      for (const waiter of readyWaiters.splice(0)) waiter({ kind: "init-error", error });
      // Lambda serves the init error to the invocations waiting.
      for (const p of queue.splice(0)) end(p, { status: "error", error, ...timing(p) });
      return;
    }

    const match = /^invocation\/([^/]+)\/(response|error)$/.exec(path);
    if (match === null) return refuse(res, 404, "NotFound", `${req.method} ${path}`);
    if (req.method !== "POST") return refuse(res, 405, "MethodNotAllowed", `${req.method} ${path}`);
    const requestId = decodeURIComponent(match[1]!);
    const body = await readBody(req);
    if (running === undefined || running.requestId !== requestId) {
      const why = finished.has(requestId) ? "already ended (answered or timed out)" : "unknown";
      return refuse(res, 400, "InvalidRequestID", `${match[2]} for ${requestId}: ${why}`);
    }
    const current = running;
    if (match[2] === "response") {
      if (body === "too-large" || body.length > MAX_RESPONSE_BYTES) {
        answer(res, 413, {
          errorType: "RequestEntityTooLarge",
          errorMessage: `Exceeded maximum allowed payload size (${MAX_RESPONSE_BYTES} bytes).`,
        });
        end(current, {
          status: "error",
          error: {
            headerType: undefined,
            errorType: "Function.ResponseSizeTooLarge",
            errorMessage: "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
            stackTrace: [],
          },
          ...timing(current),
        });
        return;
      }
      const raw = body.toString("utf8");
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        parsed = raw;
      }
      answer(res, 202, { status: "OK" });
      end(current, { status: "response", body: parsed, raw, ...timing(current) });
      return;
    }
    const error = body === "too-large" ? undefined : parseError(body, req.headers);
    if (error === undefined)
      return refuse(res, 400, "InvalidRequest", "error body is not a documented error");
    answer(res, 202, { status: "OK" });
    end(current, { status: "error", error, ...timing(current) });
  }

  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  server.listen(0, options.host ?? "127.0.0.1");
  await once(server, "listening");
  const { address, port } = server.address() as AddressInfo;

  return {
    address: `${address.includes(":") ? `[${address}]` : address}:${port}`,
    violations,
    get initError() {
      return initError;
    },
    invoke(event, invokeOptions = {}) {
      return new Promise<InvokeResult>((resolve) => {
        const timeoutMs = invokeOptions.timeoutMs ?? 60_000;
        const p: Pending = {
          requestId: randomUUID(),
          body: invokeOptions.rawBody ?? JSON.stringify(event),
          timeoutMs,
          options: invokeOptions,
          traceId: `Root=1-${Math.floor(Date.now() / 1000).toString(16)}-${randomBytes(12).toString("hex")};Parent=${randomBytes(8).toString("hex")};Sampled=0`,
          deadlineMs: invokeOptions.deadlineMs ?? Date.now() + timeoutMs,
          takenAt: undefined,
          timer: undefined,
          resolve,
        };
        if (initError !== undefined) {
          resolve({ status: "error", error: initError, ...timing(p) });
          return;
        }
        // The deadline runs from the invoke, as Lambda's does (queueing in the sandbox counts).
        p.timer = setTimeout(() => {
          const at = queue.indexOf(p);
          if (at >= 0) queue.splice(at, 1);
          end(p, { status: "timeout", ...timing(p) });
        }, timeoutMs);
        p.timer.unref();
        queue.push(p);
        dispatch();
      });
    },
    breakWith(status) {
      brokenWith = status;
      if (waitingNext !== undefined) {
        answer(waitingNext.res, status, {
          errorType: "ContainerError",
          errorMessage: "the fake was told to fail",
        });
        waitingNext = undefined;
      }
    },
    ready() {
      if (initError !== undefined) return Promise.resolve({ kind: "init-error" as const, error: initError });
      if (sawNext) return Promise.resolve({ kind: "next" as const });
      return new Promise((resolve) => readyWaiters.push(resolve));
    },
    async close() {
      for (const p of queue.splice(0)) end(p, { status: "timeout", ...timing(p) });
      if (running) end(running, { status: "timeout", ...timing(running) });
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, "close");
    },
  };
}

/** The documented error body: JSON with string `errorMessage` and `errorType`, optional `stackTrace` of strings. */
function parseError(body: Buffer, headers: IncomingMessage["headers"]): PostedError | undefined {
  let value: unknown;
  try {
    value = JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const { errorMessage, errorType, stackTrace } = value as Record<string, unknown>;
  if (typeof errorMessage !== "string" || typeof errorType !== "string") return undefined;
  if (
    stackTrace !== undefined &&
    !(Array.isArray(stackTrace) && stackTrace.every((s) => typeof s === "string"))
  )
    return undefined;
  const header = headers["lambda-runtime-function-error-type"];
  return {
    headerType: Array.isArray(header) ? header[0] : header,
    errorType,
    errorMessage,
    stackTrace: (stackTrace as string[] | undefined) ?? [],
  };
}

import { type IncomingHttpHeaders, request } from "node:http";
import type { ClientContext, CognitoIdentity } from "aws-lambda";

/**
 * A client of the AWS Lambda Runtime API (version 2018-06-01), the HTTP API a custom runtime or a
 * container image uses to take invocations: `GET /runtime/invocation/next`, `POST
 * /runtime/invocation/<id>/response`, `POST /runtime/invocation/<id>/error` and `POST
 * /runtime/init/error`. Source: the Lambda developer guide, "Using the Lambda runtime API for
 * custom runtimes", and its OpenAPI document.
 *
 * One plain HTTP/1.1 request per call, on a fresh loopback connection: no keep-alive socket that
 * the API could close between a response and the next long poll, and no timeout on `next`,
 * which blocks (the sandbox may even be frozen) until there is an invocation.
 */
export const RUNTIME_API_VERSION = "2018-06-01";

/** The Runtime API's headers, as documented (Node lowercases them on receipt). */
export const RUNTIME_HEADERS = {
  requestId: "lambda-runtime-aws-request-id",
  deadlineMs: "lambda-runtime-deadline-ms",
  invokedFunctionArn: "lambda-runtime-invoked-function-arn",
  traceId: "lambda-runtime-trace-id",
  clientContext: "lambda-runtime-client-context",
  cognitoIdentity: "lambda-runtime-cognito-identity",
  tenantId: "lambda-runtime-aws-tenant-id",
  /** Sent by the runtime with an invocation or init error. */
  errorType: "lambda-runtime-function-error-type",
} as const;

/** Largest response a synchronous invocation may return (6 MB); the API answers 413 above it. */
export const MAX_RESPONSE_BYTES = 6 * 1024 * 1024;

/**
 * The most an invocation or init error body posted by {@link RuntimeApiClient} can weigh (JSON,
 * UTF-8): its `errorMessage` is clipped to 65,536 characters, `errorType` to 256, `stackTrace` to
 * 50 frames of 500. A refused error would leave the invocation unanswered until its timeout.
 */
export const MAX_ERROR_BODY_BYTES = 1024 * 1024;
const MAX_ERROR_MESSAGE_CHARS = 65_536;
const MAX_ERROR_TYPE_CHARS = 256;
const MAX_STACK_FRAMES = 50;
const MAX_STACK_FRAME_CHARS = 500;

/** The Runtime API failed or answered out of its contract. `fatal`: the runtime must exit (HTTP 500, or no API at all). */
export class RuntimeApiError extends Error {
  readonly code = "AGENT_ERR_RUNTIME_API";
  /** The HTTP status, or null when no answer came. */
  readonly status: number | null;
  readonly fatal: boolean;

  constructor(message: string, options: { status: number | null; fatal: boolean; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.name = "RuntimeApiError";
    this.status = options.status;
    this.fatal = options.fatal;
  }
}

/** One invocation as `next` hands it over: the raw event and what the headers say. */
export interface NextInvocation {
  requestId: string;
  /** Epoch ms at which Lambda stops the invocation (`Lambda-Runtime-Deadline-Ms`). */
  deadlineMs: number;
  invokedFunctionArn: string;
  traceId: string | undefined;
  clientContext: ClientContext | undefined;
  identity: CognitoIdentity | undefined;
  tenantId: string | undefined;
  /** The event, as the JSON text Lambda sent. */
  body: string;
  /** Headers that were present but unusable (not JSON), for a diagnostic. */
  notes: string[];
}

/** The JSON body of an invocation or init error, as the API documents it. */
export interface RuntimeErrorBody {
  errorMessage: string;
  errorType: string;
  stackTrace: string[];
}

/**
 * Parses and checks `AWS_LAMBDA_RUNTIME_API` (`host:port`, as Lambda sets it).
 * Throws a plain Error naming the variable and the value when it is not one.
 */
export function parseRuntimeApi(value: string): { host: string; port: number } {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value.trim());
  const port = match ? Number(match[2]) : Number.NaN;
  if (!match || port < 1 || port > 65_535) {
    throw new Error(
      `Expected \`AWS_LAMBDA_RUNTIME_API\` to be host:port (as Lambda sets it), got ${JSON.stringify(value)}`,
    );
  }
  return { host: match[1]!.replace(/^\[|\]$/g, ""), port };
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export class RuntimeApiClient {
  readonly host: string;
  readonly port: number;

  /** @param api `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`. */
  constructor(api: string) {
    ({ host: this.host, port: this.port } = parseRuntimeApi(api));
  }

  /**
   * Waits for the next invocation (no timeout: it blocks until Lambda has one). `signal` aborts
   * the wait (tests, shutdown). Throws {@link RuntimeApiError} when the answer is not an invocation.
   */
  async next(signal?: AbortSignal): Promise<NextInvocation> {
    const answer = await this.call("GET", "invocation/next", undefined, {}, signal);
    if (answer.status !== 200) throw this.unexpected("next", answer);
    const header = (name: string) => {
      const value = answer.headers[name];
      return Array.isArray(value) ? value[0] : value;
    };
    const requestId = header(RUNTIME_HEADERS.requestId);
    const deadline = Number(header(RUNTIME_HEADERS.deadlineMs));
    if (requestId === undefined || requestId === "" || !Number.isFinite(deadline) || deadline <= 0) {
      throw new RuntimeApiError(
        `The Runtime API's next invocation lacks ${RUNTIME_HEADERS.requestId} or an epoch-ms ${RUNTIME_HEADERS.deadlineMs} (got ${JSON.stringify(header(RUNTIME_HEADERS.deadlineMs))})`,
        { status: answer.status, fatal: true },
      );
    }
    const notes: string[] = [];
    return {
      requestId,
      deadlineMs: deadline,
      invokedFunctionArn: header(RUNTIME_HEADERS.invokedFunctionArn) ?? "",
      traceId: header(RUNTIME_HEADERS.traceId),
      clientContext: parseJsonHeader<ClientContext>(header, RUNTIME_HEADERS.clientContext, notes),
      identity: parseJsonHeader<CognitoIdentity>(header, RUNTIME_HEADERS.cognitoIdentity, notes),
      tenantId: header(RUNTIME_HEADERS.tenantId),
      body: answer.body,
      notes,
    };
  }

  /** Sends an invocation's result (JSON text). A 413 (over 6 MB) throws a non-fatal {@link RuntimeApiError}. */
  async respond(requestId: string, json: string): Promise<void> {
    const answer = await this.call("POST", `invocation/${encodeURIComponent(requestId)}/response`, json);
    if (answer.status !== 202) throw this.unexpected("response", answer);
  }

  /** Reports an invocation error: the body and its `Lambda-Runtime-Function-Error-Type` header. */
  async fail(requestId: string, error: RuntimeErrorBody): Promise<void> {
    const answer = await this.call(
      "POST",
      `invocation/${encodeURIComponent(requestId)}/error`,
      JSON.stringify(bounded(error)),
      { [RUNTIME_HEADERS.errorType]: headerSafe(error.errorType) },
    );
    if (answer.status !== 202) throw this.unexpected("error", answer);
  }

  /** Reports an initialization error; the runtime then exits (Lambda serves the error to the first invocation). */
  async initError(error: RuntimeErrorBody): Promise<void> {
    const answer = await this.call("POST", "init/error", JSON.stringify(bounded(error)), {
      [RUNTIME_HEADERS.errorType]: headerSafe(error.errorType),
    });
    if (answer.status !== 202) throw this.unexpected("init/error", answer);
  }

  private unexpected(what: string, answer: Answer): RuntimeApiError {
    // 500: "Container error. Non-recoverable state. Runtime should exit promptly."
    return new RuntimeApiError(
      `The Runtime API answered ${what} with HTTP ${answer.status}: ${answer.body.slice(0, 500)}`,
      { status: answer.status, fatal: answer.status >= 500 || answer.status === 403 },
    );
  }

  private call(
    method: "GET" | "POST",
    path: string,
    body?: string,
    headers: Record<string, string> = {},
    signal?: AbortSignal,
  ): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(body, "utf8");
      const req = request(
        {
          host: this.host,
          port: this.port,
          method,
          path: `/${RUNTIME_API_VERSION}/runtime/${path}`,
          agent: false,
          headers: {
            ...headers,
            ...(payload ? { "content-type": "application/json", "content-length": payload.length } : {}),
          },
          ...(signal ? { signal } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.once("error", (cause) =>
            reject(
              new RuntimeApiError(`Reading the Runtime API's answer to ${method} ${path} failed`, {
                status: null,
                fatal: true,
                cause,
              }),
            ),
          );
          res.once("end", () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks).toString("utf8"),
            }),
          );
        },
      );
      req.once("error", (cause) => {
        if (signal?.aborted) {
          reject(signal.reason instanceof Error ? signal.reason : cause);
          return;
        }
        reject(
          new RuntimeApiError(
            `The Runtime API at ${this.host}:${this.port} cannot be reached for ${method} ${path}: ${(cause as Error).message}`,
            { status: null, fatal: true, cause },
          ),
        );
      });
      req.end(payload);
    });
  }
}

/** The error body for anything thrown: the name as `errorType`, the stack frames as `stackTrace`. */
export function errorBody(error: unknown, fallbackType = "Error"): RuntimeErrorBody {
  if (error instanceof Error) {
    const frames = (error.stack ?? "")
      .split("\n")
      .filter((line) => /^\s+at /.test(line))
      .map((line) => line.trim());
    return { errorMessage: error.message, errorType: error.name || fallbackType, stackTrace: frames };
  }
  return { errorMessage: String(error), errorType: fallbackType, stackTrace: [] };
}

/** The error body within {@link MAX_ERROR_BODY_BYTES}: each part clipped, saying how long it was. */
function bounded(error: RuntimeErrorBody): RuntimeErrorBody {
  const cut = (text: string, max: number) =>
    text.length <= max ? text : `${text.slice(0, max)}... (${text.length} characters, clipped)`;
  return {
    errorMessage: cut(error.errorMessage, MAX_ERROR_MESSAGE_CHARS),
    errorType: cut(error.errorType, MAX_ERROR_TYPE_CHARS),
    stackTrace: error.stackTrace.slice(0, MAX_STACK_FRAMES).map((frame) => cut(frame, MAX_STACK_FRAME_CHARS)),
  };
}

/** A JSON header's value; one that is not JSON becomes a note (an invocation does not fail for it). */
function parseJsonHeader<T>(
  header: (name: string) => string | undefined,
  name: string,
  notes: string[],
): T | undefined {
  const value = header(name);
  if (value === undefined || value === "") return undefined;
  try {
    return JSON.parse(value) as T;
  } catch (error) {
    notes.push(`header ${name} is not JSON (${(error as Error).message}); the context leaves it out`);
    return undefined;
  }
}

/** A header value carries no control characters (an error name could, in theory). */
function headerSafe(value: string): string {
  return value.replace(/[^\x20-\x7e]/g, "?").slice(0, 256) || "Error";
}

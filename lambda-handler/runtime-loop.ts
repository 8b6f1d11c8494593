import type { Callback, Context, Handler } from "aws-lambda";
import type { Logger } from "../agent-core/index.ts";
import type { FunctionEnv } from "./function-env.ts";
import {
  errorBody,
  type NextInvocation,
  type RuntimeApiClient,
  RuntimeApiError,
  type RuntimeErrorBody,
} from "./runtime-api.ts";

/**
 * The runtime side of a Lambda container image: the loop that AWS's runtime interface client
 * would run (facts section 9 says why it is ours): init once, then `next` -> handler -> `response`
 * or `error`, for as long as the sandbox lives.
 */
export interface RuntimeLoopOptions {
  client: RuntimeApiClient;
  /** The init phase: loads the handler. Whatever it throws is posted to `/runtime/init/error`. */
  init: () => Handler | Promise<Handler>;
  /** The function's environment (`AWS_LAMBDA_FUNCTION_NAME`, ...), for the context. */
  env: FunctionEnv;
  logger: Logger;
  /** Ends the loop between invocations (or while waiting for one). */
  signal?: AbortSignal;
  /** Called as each invocation starts: the bootstrap sets `_X_AMZN_TRACE_ID` from it, as the docs ask. */
  onInvocation?: (invocation: NextInvocation) => void;
}

/** Init failed and was reported to the Runtime API; the runtime must exit. */
export class RuntimeInitError extends Error {
  readonly code = "AGENT_ERR_RUNTIME_INIT";

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RuntimeInitError";
  }
}

/** How one call of the handler ended. */
type HandlerResult = { ok: true; value: unknown } | { ok: false; error: unknown };

/**
 * Runs the Runtime API loop until `signal` aborts (then resolves) or the API fails for good
 * (then rejects with a fatal {@link RuntimeApiError}). A failing init is reported with
 * `init/error` and rejects with {@link RuntimeInitError}.
 *
 * @example
 * await runRuntimeLoop({ client: new RuntimeApiClient(env.AWS_LAMBDA_RUNTIME_API), init: () => handler, env, logger });
 */
export async function runRuntimeLoop(options: RuntimeLoopOptions): Promise<void> {
  const { client, logger, signal } = options;
  let handler: Handler;
  try {
    handler = await options.init();
  } catch (error) {
    const body = errorBody(error, "Runtime.InitError");
    logger.error("init failed; reported to the Runtime API", {
      errorType: body.errorType,
      error: body.errorMessage,
    });
    await client.initError(body);
    throw new RuntimeInitError(`init failed: ${body.errorMessage}`, { cause: error });
  }

  while (!signal?.aborted) {
    let invocation: NextInvocation;
    try {
      invocation = await client.next(signal);
    } catch (error) {
      if (signal?.aborted) return;
      throw error;
    }
    options.onInvocation?.(invocation);
    const log = logger.child({ requestId: invocation.requestId });
    for (const note of invocation.notes) log.warn(note);
    await invokeOnce(client, handler, invocation, options.env, log);
  }
}

async function invokeOnce(
  client: RuntimeApiClient,
  handler: Handler,
  invocation: NextInvocation,
  env: FunctionEnv,
  logger: Logger,
): Promise<void> {
  const { requestId } = invocation;
  let event: unknown;
  try {
    event = JSON.parse(invocation.body);
  } catch (error) {
    await report(client, requestId, logger, {
      errorType: "Runtime.UnmarshalError",
      errorMessage: `The event is not JSON: ${(error as Error).message}`,
      stackTrace: [],
    });
    return;
  }

  const result = await callHandler(handler, event, contextFor(invocation, env));
  if (!result.ok) {
    await report(client, requestId, logger, errorBody(result.error));
    return;
  }
  let json: string;
  try {
    json = JSON.stringify(result.value === undefined ? null : result.value);
  } catch (error) {
    await report(client, requestId, logger, {
      errorType: "Runtime.MarshalError",
      errorMessage: `The handler's result cannot be serialized to JSON: ${(error as Error).message}`,
      stackTrace: [],
    });
    return;
  }
  try {
    await client.respond(requestId, json);
  } catch (error) {
    // 413 (over 6 MB) and 400 end this invocation only: Lambda fails it; the next one may work.
    if (error instanceof RuntimeApiError && !error.fatal) {
      logger.error("the Runtime API refused the response", {
        status: error.status,
        bytes: json.length,
        error,
      });
      return;
    }
    throw error;
  }
}

async function report(
  client: RuntimeApiClient,
  requestId: string,
  logger: Logger,
  body: RuntimeErrorBody,
): Promise<void> {
  try {
    await client.fail(requestId, body);
  } catch (error) {
    if (error instanceof RuntimeApiError && !error.fatal) {
      logger.error("the Runtime API refused the invocation error", { status: error.status, error });
      return;
    }
    throw error;
  }
}

/**
 * Calls a handler in either style: it returns a promise (async handlers), or it calls the
 * callback (or the context's legacy `done`/`succeed`/`fail`). The first of these settles the
 * invocation; what comes later is ignored, as in AWS's Node.js runtime. A handler that does
 * neither is still running when Lambda's timeout ends the invocation.
 */
export function callHandler(handler: Handler, event: unknown, context: Context): Promise<HandlerResult> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (result: HandlerResult) => {
      if (settled) return;
      settled = true;
      resolve(result);
    };
    const callback: Callback = (error, value) => {
      if (error !== undefined && error !== null) settle({ ok: false, error });
      else settle({ ok: true, value });
    };
    context.done = (error, value) => callback(error, value);
    context.succeed = (value: unknown) => callback(null, value);
    context.fail = (error) => callback(error ?? new Error("context.fail() called"));
    try {
      const returned = handler(event, context, callback) as unknown;
      if (isThenable(returned)) {
        returned.then(
          (value) => settle({ ok: true, value }),
          (error: unknown) => settle({ ok: false, error }),
        );
      }
    } catch (error) {
      settle({ ok: false, error });
    }
  });
}

/**
 * The handler's context, from the invocation's headers and the function's environment.
 * `getRemainingTimeInMillis()` counts down to `Lambda-Runtime-Deadline-Ms` (epoch ms), never below 0.
 */
export function contextFor(invocation: NextInvocation, env: FunctionEnv): Context {
  const unsettled = () => {
    throw new Error("the invocation is not running");
  };
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: env.AWS_LAMBDA_FUNCTION_NAME ?? "",
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION ?? "$LATEST",
    invokedFunctionArn: invocation.invokedFunctionArn,
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE ?? "",
    awsRequestId: invocation.requestId,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME ?? "",
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME ?? "",
    ...(invocation.identity ? { identity: invocation.identity } : {}),
    ...(invocation.clientContext ? { clientContext: invocation.clientContext } : {}),
    ...(invocation.tenantId ? { tenantId: invocation.tenantId } : {}),
    getRemainingTimeInMillis: () => Math.max(0, invocation.deadlineMs - Date.now()),
    done: unsettled,
    fail: unsettled,
    succeed: unsettled,
  };
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function"
  );
}

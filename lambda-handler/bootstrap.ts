import type { Handler } from "aws-lambda";
import {
  ConfigError,
  type ConfigProblem,
  createLogger,
  ExitCode,
  type Interrupts,
  interruptCode,
} from "../agent-core/start.ts";
import { type FunctionEnv, readFunctionEnv } from "./function-env.ts";
import { type NextInvocation, RuntimeApiClient, RuntimeApiError } from "./runtime-api.ts";
import { RuntimeInitError, runRuntimeLoop } from "./runtime-loop.ts";

/** What the bootstrap takes from its process; the bin passes the real ones, tests their own. */
export interface BootstrapIo {
  env: FunctionEnv;
  /** Diagnostics, one JSON line each (stderr: Lambda sends it to CloudWatch Logs). */
  stderr: (text: string) => void;
  /**
   * SIGTERM/SIGINT (the bin passes its `trapSignals` trap). The first signal ends the wait for the
   * next invocation, or interrupts the running one's agent (step stopped with its grace, job
   * reported `interrupted`) and ends the loop once its summary or error is posted; the second
   * kills the step at once.
   */
  interrupts?: Interrupts;
  /** Each invocation's X-Ray header, for `_X_AMZN_TRACE_ID`. */
  onTraceId?: (traceId: string | undefined) => void;
}

/**
 * The Lambda side of the container image: when `AWS_LAMBDA_RUNTIME_API` is set, the image's
 * entrypoint runs this instead of the container entrypoint. Init checks the function's
 * environment and loads the handler (a failure is posted to `/runtime/init/error`, and Lambda
 * shows it on the first invocation), then the Runtime API loop runs the handler
 * (`dist/lambda/handler.js`'s `handler`, the zip's) once per invocation.
 *
 * Resolves with the process exit code: 143 or 130 when a signal ended the loop (SIGTERM, SIGINT), 2 for an invalid
 * `AWS_LAMBDA_RUNTIME_API` or function environment (init error), 70 when init failed otherwise,
 * 3 when the Runtime API failed for good (HTTP 500, unreachable: "the runtime should exit").
 */
export async function runBootstrap(io: BootstrapIo): Promise<number> {
  const logger = createLogger({ write: io.stderr, fields: { component: "lambda-runtime" } });
  let client: RuntimeApiClient;
  try {
    client = new RuntimeApiClient(io.env.AWS_LAMBDA_RUNTIME_API ?? "");
  } catch (error) {
    logger.error("cannot start the Lambda runtime", {
      code: "AGENT_ERR_CONFIG",
      error: (error as Error).message,
    });
    return ExitCode.badConfig;
  }
  try {
    await runRuntimeLoop({
      client,
      env: io.env,
      logger,
      init: () => loadHandler(io.env, io.interrupts),
      ...(io.interrupts ? { signal: io.interrupts.signal } : {}),
      onInvocation: (invocation: NextInvocation) => io.onTraceId?.(invocation.traceId),
    });
    return io.interrupts?.signal.aborted ? interruptCode(io.interrupts.signal) : ExitCode.ok;
  } catch (error) {
    if (error instanceof RuntimeInitError) {
      return error.cause instanceof ConfigError ? ExitCode.badConfig : ExitCode.internal;
    }
    if (error instanceof RuntimeApiError) {
      logger.error("the Lambda Runtime API failed; exiting", {
        code: error.code,
        status: error.status,
        error: error.message,
      });
      return ExitCode.controllerFailure;
    }
    throw error;
  }
}

/**
 * Init: the function's environment must be valid (the same checks every invocation makes: a
 * broken variable fails init once, not every invocation), then the handler module is loaded.
 */
async function loadHandler(env: FunctionEnv, interrupts: Interrupts | undefined): Promise<Handler> {
  const problems: ConfigProblem[] = [];
  readFunctionEnv(env, problems);
  if (problems.length > 0) {
    throw new ConfigError(problems, "AGENT_ERR_CONFIG: the function's environment is invalid");
  }
  const { createHandler } = await import("./handler.ts");
  return createHandler(interrupts ? { interrupts } : {});
}

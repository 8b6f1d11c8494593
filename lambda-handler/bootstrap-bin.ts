// The image's Lambda entry (dist/lambda/bootstrap.js): the Runtime API loop around the handler.
import { createLogger, ExitCode, trapSignals } from "../agent-core/start.ts";
import { runBootstrap } from "./bootstrap.ts";

// SIGTERM (Lambda's shutdown, `docker stop`, tini) and SIGINT, handled as the container
// entrypoint does: the running invocation's agent is interrupted and its summary posted; between
// invocations the wait for the next one ends. A second signal kills the step at once.
const trap = trapSignals({
  logger: createLogger({
    write: (text) => process.stderr.write(text),
    fields: { component: "lambda-runtime" },
  }),
  // Between invocations there is nothing to finish; each invocation sets its agent's grace + drain.
  shutdownBudgetMs: 0,
  stopping: "the Lambda runtime",
});

runBootstrap({
  env: process.env,
  stderr: (text) => process.stderr.write(text),
  interrupts: trap,
  onTraceId: (traceId) => {
    if (traceId === undefined) delete process.env._X_AMZN_TRACE_ID;
    else process.env._X_AMZN_TRACE_ID = traceId;
  },
}).then(
  (code) => {
    trap.dispose();
    // After a signal the outcome is decided and posted: nothing left may hold the exit.
    if (trap.signal.aborted) process.exit(code);
    process.exitCode = code;
  },
  (error: unknown) => {
    trap.dispose();
    process.stderr.write(
      `${JSON.stringify({ level: "error", msg: "lambda runtime internal error", time: new Date().toISOString(), error: String((error as Error).stack ?? error) })}\n`,
    );
    process.exitCode = ExitCode.internal;
  },
);

// The image's Lambda entry (dist/lambda/bootstrap.js): the Runtime API loop around the handler.
import { ExitCode } from "../agent-core/index.ts";
import { runBootstrap } from "./bootstrap.ts";

const stop = new AbortController();
process.once("SIGTERM", () => {
  // Lambda sends SIGTERM at shutdown only to functions with extensions; between invocations
  // there is nothing to finish: stop waiting for the next one.
  stop.abort();
  setTimeout(() => process.exit(ExitCode.sigterm), 500).unref();
});

runBootstrap({
  env: process.env,
  stderr: (text) => process.stderr.write(text),
  signal: stop.signal,
  onTraceId: (traceId) => {
    if (traceId === undefined) delete process.env._X_AMZN_TRACE_ID;
    else process.env._X_AMZN_TRACE_ID = traceId;
  },
}).then(
  (code) => {
    process.exitCode = stop.signal.aborted ? ExitCode.sigterm : code;
  },
  (error: unknown) => {
    process.stderr.write(
      `${JSON.stringify({ level: "error", msg: "lambda runtime internal error", time: new Date().toISOString(), error: String((error as Error).stack ?? error) })}\n`,
    );
    process.exitCode = ExitCode.internal;
  },
);

import { main } from "./cli.ts";
import { DeployExit } from "./errors.ts";

// The SDK warns in plain text on every run under Node < 22, which this project supports (engines).
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

// The first SIGINT/SIGTERM aborts the deploy, which puts the alias back before exiting; a
// second one exits at once.
const controller = new AbortController();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (controller.signal.aborted) process.exit(signal === "SIGTERM" ? 143 : 130);
    process.stderr.write(`rollout: ${signal}: putting the alias back (again to quit at once)\n`);
    controller.abort(signal);
  });
}

main(process.argv.slice(2), process.env, {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
  signal: controller.signal,
}).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`rollout: internal error: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = DeployExit.internal;
  },
);

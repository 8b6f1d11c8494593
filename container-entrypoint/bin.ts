import { ExitCode } from "../agent-core/index.ts";
import { runEntrypoint } from "./main.ts";
import { scrubSecretsFromProc } from "./secret-scrub.ts";

runEntrypoint({
  argv: process.argv.slice(2),
  env: process.env,
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  scrubSecrets: scrubSecretsFromProc,
}).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(
      `${JSON.stringify({ level: "error", msg: "agent internal error", time: new Date().toISOString(), error: String((error as Error).stack ?? error) })}\n`,
    );
    process.exitCode = ExitCode.internal;
  },
);

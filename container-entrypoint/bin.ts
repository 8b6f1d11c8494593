import { ExitCode } from "../agent-core/start.ts";
import { LAUNCH_FD_ENV, readLaunchFd } from "./launch-pipe.ts";
import { runEntrypoint } from "./main.ts";
import { scrubSecretsFromProc } from "./secret-scrub.ts";

const env = { ...process.env };
// What this process starts does not inherit it (the pipe is closed once read: launch-pipe.ts).
delete process.env[LAUNCH_FD_ENV];

runEntrypoint({
  argv: process.argv.slice(2),
  env,
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  scrubSecrets: scrubSecretsFromProc,
  readLaunchFd,
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

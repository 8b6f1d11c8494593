import { spawn } from "node:child_process";
import { join } from "node:path";
import { ROOT } from "./harness.ts";

const OSLS = join(ROOT, "node_modules/osls/bin/serverless.js");

export interface OslsRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `command` with exactly `env` as its environment; resolves with its exit code and output,
 * rejects (after SIGKILL) when it has not finished within `timeoutMs`.
 */
export function runProcess(
  command: string,
  args: string[],
  options: { cwd: string; env: Record<string, string>; timeoutMs?: number },
): Promise<OslsRun> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${args[0] ?? command} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Runs osls (the open-source Serverless Framework fork, a devDependency) in the repository with
 * dummy AWS credentials, `home` as HOME and `env` added; resolves with its exit code and output,
 * rejects when it has not finished within `timeoutMs`.
 */
export function osls(
  args: string[],
  home: string,
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<OslsRun> {
  return runProcess(process.execPath, [OSLS, ...args], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: home,
      // The handler's default work dir is $TMPDIR/lambda-agent, which a smoke test cleans: each
      // run gets its own, or test runs sharing this machine remove each other's (tool:bash then
      // fails in a vanished HOME).
      TMPDIR: home,
      AWS_ACCESS_KEY_ID: "x",
      AWS_SECRET_ACCESS_KEY: "x",
      AWS_REGION: "us-east-1",
      ...options.env,
    },
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
  });
}

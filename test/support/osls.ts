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
 * Runs osls (the open-source Serverless Framework fork, a devDependency) in the repository with
 * dummy AWS credentials, `home` as HOME and `env` added; resolves with its exit code and output,
 * rejects when it has not finished within `timeoutMs`.
 */
export function osls(
  args: string[],
  home: string,
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<OslsRun> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [OSLS, ...args], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: home,
        AWS_ACCESS_KEY_ID: "x",
        AWS_SECRET_ACCESS_KEY: "x",
        AWS_REGION: "us-east-1",
        ...options.env,
      },
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
      reject(new Error(`osls ${args[0]} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { ROOT } from "./harness.ts";

export const CONTROLLER_BUNDLE = join(ROOT, "dist/controller.mjs");

/** A `controller serve` process of the built bundle, as an operator runs it. */
export interface ServeProcess {
  child: ChildProcess;
  url: string;
  port: number;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code (or the signal's name). */
  exited: Promise<number | string>;
}

/**
 * Starts `node dist/controller.mjs serve ARGS` and resolves once it prints its URL; rejects when
 * it exits first or does not say so within `timeoutMs`.
 */
export function startServe(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 15_000,
): Promise<ServeProcess> {
  const child = spawn(process.execPath, [CONTROLLER_BUNDLE, "serve", ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown")),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`controller serve did not start within ${timeoutMs} ms; stderr:\n${stderr}`));
    }, timeoutMs);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`controller serve exited (${code}) before listening; stderr:\n${stderr}`));
    });
    child.stdout!.on("data", (chunk: Buffer) => {
      stdout += chunk.toString("utf8");
      const match = /controller listening on (http:\/\/\S+?:(\d+)\/)/.exec(stdout);
      if (match) {
        clearTimeout(timer);
        resolve({
          child,
          url: match[1]!,
          port: Number(match[2]),
          stdout: () => stdout,
          stderr: () => stderr,
          exited,
        });
      }
    });
  });
}

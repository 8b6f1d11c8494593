import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { expect } from "vitest";
import { FIXTURES } from "./harness.ts";

/** test/fixtures/proc-secret-scan.sh: what a step can read of the secret in other processes' /proc. */
export const PROC_SCAN_SCRIPT = join(FIXTURES, "proc-secret-scan.sh");

/** What the scan found (its last line), and the `secret-in:` lines naming where. */
export interface ProcScan {
  /** environ and cmdline files read. */
  readable: number;
  /** PID 1's files were read (and were not empty). */
  pid1: boolean;
  /** Files holding the secret. */
  secret: number;
  /** The canary's environment and arguments were found: the scan sees other processes. */
  canaryEnviron: number;
  canaryCmdline: number;
  where: string[];
}

/**
 * A step's command that runs the scan script at `scriptPath` (where the step sees it) for
 * `secret`, given in halves so that the command itself does not hold it.
 */
export function procScanStep(scriptPath: string, secret: string): string {
  const half = Math.floor(secret.length / 2);
  const canary = randomBytes(12).toString("hex");
  const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  return `bash ${scriptPath} ${quote(secret.slice(0, half))} ${quote(secret.slice(half))} ${canary.slice(0, 12)} ${canary.slice(12)}`;
}

/** The scan's result from a job log; throws when the log has none. */
export function procScanResult(log: string): ProcScan {
  const match = /^readable=(\d+) pid1=(yes|no) secret=(\d+) canary-environ=(\d+) canary-cmdline=(\d+)$/m.exec(
    log,
  );
  if (match === null) throw new Error(`no proc scan result in the log:\n${log}`);
  return {
    readable: Number(match[1]),
    pid1: match[2] === "yes",
    secret: Number(match[3]),
    canaryEnviron: Number(match[4]),
    canaryCmdline: Number(match[5]),
    where: [...log.matchAll(/^secret-in: (.*)$/gm)].map((m) => m[1]!),
  };
}

/**
 * Asserts that the scan in `log` found the secret nowhere, and that it did read other processes'
 * environments and arguments (its canary); `pid1` also asks that PID 1 was among those read.
 */
export function expectSecretNowhere(log: string, options: { pid1?: boolean } = {}): ProcScan {
  const scan = procScanResult(log);
  expect(scan.where).toEqual([]);
  expect(scan.secret).toBe(0);
  if (options.pid1) expect(scan.pid1).toBe(true);
  expect(scan.canaryEnviron).toBeGreaterThanOrEqual(1);
  expect(scan.canaryCmdline).toBeGreaterThanOrEqual(1);
  return scan;
}

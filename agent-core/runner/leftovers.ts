import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";

/**
 * What a job's steps start outside their process groups (`setsid`, a daemon that double-forks)
 * is not reached by the group signals; on a warm Lambda sandbox it would run beside the next
 * job, which it could read. Every step process carries {@link TRACKING_ENV} in its environment
 * (as GitHub's runner tags its jobs with RUNNER_TRACKING_ID), children inherit it, and at the
 * job's end {@link endTracked} finds the processes that still carry it (Linux `/proc/<pid>/environ`,
 * readable for the processes of this user) and ends them. A process that clears its environment
 * escapes; where there is no `/proc`, nothing is found.
 */
export const TRACKING_ENV = "AGENT_TRACKING_ID";

/** A fresh tracking id for one job run: the job id and 48 random bits. */
export function newTrackingId(jobId: string): string {
  return `${jobId}-${randomBytes(6).toString("hex")}`;
}

/** The pids of this user's processes (not this one) whose environment holds `AGENT_TRACKING_ID=<id>`. */
export function trackedProcesses(id: string): number[] {
  const needle = Buffer.from(`\0${TRACKING_ENV}=${id}\0`);
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [];
  }
  const found: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let environ: Buffer;
    try {
      environ = readFileSync(`/proc/${entry}/environ`);
    } catch {
      // Gone meanwhile, or another user's process.
      continue;
    }
    // A leading NUL lets the first variable match like the others.
    if (Buffer.concat([Buffer.from([0]), environ]).includes(needle)) found.push(Number(entry));
  }
  return found;
}

/**
 * Ends the processes that carry tracking id `id`: SIGTERM, then SIGKILL after `graceMs` to
 * whatever still carries it (children started meanwhile included), until none is left or 20
 * SIGKILL rounds were sent. Resolves with how many processes were found at first.
 */
export async function endTracked(id: string, graceMs: number): Promise<number> {
  const first = trackedProcesses(id);
  if (first.length === 0) return 0;
  const signal = (pids: number[], sig: NodeJS.Signals) => {
    for (const pid of pids) {
      try {
        process.kill(pid, sig);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
      }
    }
  };
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());
  signal(first, "SIGTERM");
  const started = Date.now();
  for (let pollMs = 5; Date.now() - started < graceMs; pollMs = Math.min(pollMs * 2, 50)) {
    await pause(Math.min(pollMs, graceMs));
    const left = trackedProcesses(id);
    if (left.length === 0) return first.length;
    signal(left, "SIGTERM");
  }
  for (let round = 0; round < 20; round++) {
    const left = trackedProcesses(id);
    if (left.length === 0) break;
    signal(left, "SIGKILL");
    await pause(10);
  }
  return first.length;
}

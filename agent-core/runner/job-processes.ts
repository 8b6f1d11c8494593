/**
 * Every process a job started, found by an environment marker rather than by process group.
 *
 * A step runs in its own process group, but a process may leave it (`setsid`, `nohup setsid`, a
 * detached Node child, a double fork re-parented to init). Each step's environment carries
 * {@link TRACKING_VARIABLE}; children inherit it whatever group or session they move to, and
 * `/proc/<pid>/environ` keeps the environment a process was started with. When the job ends,
 * every process whose environment holds the job's value is stopped (SIGTERM, grace, SIGKILL),
 * as Jenkins' ProcessTreeKiller does with `JENKINS_NODE_COOKIE` and the Actions runner with
 * `RUNNER_TRACKING_ID`.
 *
 * Limits: a process that replaces its environment (`env -i`, `execve` with a fresh one) drops the
 * marker; one running as another user (setuid) cannot be read or signalled. A cgroup would catch
 * both, but neither Lambda nor Fargate lets a task create one.
 */
import { randomBytes } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { processRunning } from "./process-identity.ts";

/** The variable that marks a job's processes. Its value is `<agent pid>.<random hex>`. */
export const TRACKING_VARIABLE = "AGENT_TRACKING_ID";

/** A new marker value for a job run by this process. */
export function newTrackingId(): string {
  return `${process.pid}.${randomBytes(8).toString("hex")}`;
}

/**
 * Which marked processes to find: one job's, or the leftovers of jobs whose agent process is gone
 * (killed before it could clean up: an OOM kill, a Lambda sandbox reset).
 */
export type TrackingMatch = { id: string } | { orphaned: true };

/** How many /proc files a scan reads at once. */
const SCAN_BATCH = 16;

/**
 * Pids of the live processes marked as `match` says, never this process itself. Processes that
 * cannot be read (another user's, gone while looking) and zombies (no environment left) are not
 * listed. Linux only: elsewhere, an empty list. Reads asynchronously: a scan never holds up
 * the agent's event loop (the output of a step running meanwhile).
 */
export async function findTrackedProcesses(match: TrackingMatch): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir("/proc");
  } catch {
    return [];
  }
  const prefix = Buffer.from(`${TRACKING_VARIABLE}=`);
  const pids = names
    .filter((name) => name.charCodeAt(0) >= 48 && name.charCodeAt(0) <= 57)
    .map(Number)
    .filter((pid) => pid !== process.pid);
  // A few reads at a time: hundreds of open files at once could run out of descriptors.
  const found: number[] = [];
  for (let at = 0; at < pids.length; at += SCAN_BATCH) {
    const batch = await Promise.all(
      pids.slice(at, at + SCAN_BATCH).map(async (pid) => {
        const environ = await readFile(`/proc/${pid}/environ`).catch(() => undefined);
        const value = environ === undefined ? undefined : markerValue(environ, prefix);
        return value !== undefined && matches(value, match) ? pid : undefined;
      }),
    );
    for (const pid of batch) if (pid !== undefined) found.push(pid);
  }
  return found;
}

/** The marker's value in a NUL-separated environment block, if it is there. */
function markerValue(environ: Buffer, prefix: Buffer): string | undefined {
  for (let at = environ.indexOf(prefix); at !== -1; at = environ.indexOf(prefix, at + 1)) {
    if (at !== 0 && environ[at - 1] !== 0) continue;
    const start = at + prefix.length;
    const end = environ.indexOf(0, start);
    return environ.toString("latin1", start, end === -1 ? environ.length : end);
  }
  return undefined;
}

function matches(value: string, match: TrackingMatch): boolean {
  if ("id" in match) return value === match.id;
  const owner = Number(value.slice(0, value.indexOf(".")));
  if (!Number.isSafeInteger(owner) || owner <= 0) return false;
  return owner !== process.pid && !processRunning(owner);
}

function signalAll(pids: readonly number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Gone already, or not ours to signal.
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

/**
 * How long the SIGKILL sweep goes on looking for processes (forked while it was killing, or not
 * yet gone: a killed process ends when the kernel next runs it, later on a busy machine).
 */
const KILL_SETTLE_MS = 2_000;

/**
 * Stops every process `match` finds: SIGTERM, up to `graceMs` for them to exit, then SIGKILL,
 * scanning again until none is left (a process may fork between a scan and its kill). Bounded:
 * at most `graceMs` plus {@link KILL_SETTLE_MS}. Resolves with the pids it signalled.
 *
 * @example
 * const stopped = await stopTrackedProcesses({ id: trackingId }, 2_000);
 */
export async function stopTrackedProcesses(match: TrackingMatch, graceMs: number): Promise<number[]> {
  const signalled = new Set<number>();
  let pids = await findTrackedProcesses(match);
  if (pids.length === 0) return [];
  for (const pid of pids) signalled.add(pid);
  if (graceMs > 0) {
    signalAll(pids, "SIGTERM");
    const started = Date.now();
    for (
      let pollMs = 5;
      pids.length > 0 && Date.now() - started < graceMs;
      pollMs = Math.min(pollMs * 2, 50)
    ) {
      await sleep(Math.min(pollMs, graceMs));
      pids = await findTrackedProcesses(match);
    }
  }
  const killedAt = Date.now();
  for (
    let pollMs = 2;
    pids.length > 0 && Date.now() - killedAt < KILL_SETTLE_MS;
    pollMs = Math.min(pollMs * 2, 20)
  ) {
    for (const pid of pids) signalled.add(pid);
    signalAll(pids, "SIGKILL");
    await sleep(pollMs);
    pids = await findTrackedProcesses(match);
  }
  return [...signalled];
}

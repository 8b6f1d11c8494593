import { readdirSync, readFileSync } from "node:fs";

/**
 * Signals to a whole process group (the step and everything it started that did not leave
 * the group). A group that is already gone is not an error.
 */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw error;
  }
}

/** True while any process of the group is alive (zombies included until reaped). */
export function groupAlive(pgid: number): boolean {
  return signalGroup(pgid, 0 as unknown as NodeJS.Signals);
}

/** How long to wait after SIGKILL for the group's processes to be gone (bounded: a busy machine runs them late). */
const KILL_SETTLE_MS = 2_000;

/**
 * True while a process of the group is running (zombies, which only wait for their parent, do
 * not count). Linux: from /proc; elsewhere, whether the group can be signalled.
 */
export function groupRunning(pgid: number): boolean {
  let names: string[];
  try {
    names = readdirSync("/proc");
  } catch {
    return groupAlive(pgid);
  }
  for (const name of names) {
    const first = name.charCodeAt(0);
    if (first < 48 || first > 57) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, "utf8");
    } catch {
      continue;
    }
    // state ppid pgrp ... after the command name, which may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[2]) === pgid && fields[0] !== "Z") return true;
  }
  return false;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

/**
 * SIGTERM to the group, then SIGKILL after `graceMs` if anything is left. Resolves when the
 * group is gone, or at most {@link KILL_SETTLE_MS} after the SIGKILL. `hard` skips the grace.
 */
export async function terminateGroup(pgid: number, graceMs: number, hard = false): Promise<void> {
  if (!hard && graceMs > 0) {
    if (!signalGroup(pgid, "SIGTERM")) return;
    const started = Date.now();
    // Most processes go at once: look again soon, then every 50 ms.
    for (let pollMs = 5; Date.now() - started < graceMs; pollMs = Math.min(pollMs * 2, 50)) {
      await pause(Math.min(pollMs, graceMs));
      if (!groupAlive(pgid)) return;
    }
  }
  if (!signalGroup(pgid, "SIGKILL")) return;
  const killedAt = Date.now();
  for (let pollMs = 2; Date.now() - killedAt < KILL_SETTLE_MS; pollMs = Math.min(pollMs * 2, 20)) {
    if (!groupRunning(pgid)) return;
    await pause(pollMs);
  }
}

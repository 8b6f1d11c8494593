/**
 * Telling a process apart from a later one that got the same pid: the pid and the time the
 * process started. Used to name what a process leaves on disk (cache owners, step FIFO
 * directories) so that another process can tell whether its maker is gone.
 */
import { readFileSync } from "node:fs";

/**
 * When process `pid` started, in clock ticks after boot (`/proc/<pid>/stat` field 22, proc(5)):
 * with the pid, it names one process for good. Null where it cannot be read (not Linux, gone).
 */
export function processStartTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces and parentheses): field 3 is first.
    const ticks = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[22 - 3]);
    return Number.isSafeInteger(ticks) && ticks > 0 ? ticks : null;
  } catch {
    return null;
  }
}

/**
 * Whether process `pid` runs; given `startTicks` (non-zero), whether it is the process that
 * started then, where `/proc` tells (elsewhere the pid alone decides). Another user's process
 * counts as running (EPERM).
 */
export function processRunning(pid: number, startTicks: number | null = null): boolean {
  if (startTicks) {
    const now = processStartTicks(pid);
    if (now !== null) return now === startTicks;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

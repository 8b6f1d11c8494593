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

/**
 * SIGTERM to the group, then SIGKILL after `graceMs` if anything is left. Resolves when the
 * group is gone or the SIGKILL was sent. `hard` skips the grace.
 */
export async function terminateGroup(pgid: number, graceMs: number, hard = false): Promise<void> {
  if (hard || graceMs === 0) {
    signalGroup(pgid, "SIGKILL");
    return;
  }
  if (!signalGroup(pgid, "SIGTERM")) return;
  const started = Date.now();
  // Most processes go at once: look again soon, then every 50 ms.
  for (let pollMs = 5; Date.now() - started < graceMs; pollMs = Math.min(pollMs * 2, 50)) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, graceMs)).unref());
    if (!groupAlive(pgid)) return;
  }
  signalGroup(pgid, "SIGKILL");
}

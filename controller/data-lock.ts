import { closeSync, openSync, readFileSync, statSync, unlinkSync, utimesSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { ControllerApiError } from "./errors.ts";

/** The file that says which process runs a controller on a data directory. */
export const LOCK_FILE = "controller.pid";

/** How often the holder touches the file, and how old a file of another host must be to be taken over. */
export const LOCK_RENEW_MS = 10_000;
export const LOCK_STALE_MS = 30_000;

/** Lock files held by controllers of this process. */
const heldHere = new Set<string>();

/**
 * Takes the data directory `dir` for this process, as PostgreSQL's `postmaster.pid` does: two
 * controllers on one store would both dispatch its queued jobs and interleave their journals.
 * `<dir>/controller.pid` is created exclusively, holds `<pid> <host>`, and is touched every
 * `LOCK_RENEW_MS`. A file is taken over when its process is gone: on this host, when no process
 * has its pid (or the pid is ours but no controller of this process holds it: a container's PID 1
 * restarted); written on another host (a shared filesystem, or a container restarted under a new
 * host name), when it was not touched for `LOCK_STALE_MS`. Returns the function that gives the
 * directory back. Throws ControllerApiError 409 `CONTROLLER_ERR_DATA_IN_USE` otherwise.
 */
export function lockDataDir(dir: string): () => void {
  const path = join(dir, LOCK_FILE);
  const mine = `${process.pid} ${hostname()}\n`;
  for (let attempt = 0; ; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, "wx", 0o644);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw inUse(dir, path);
      const holder = readHolder(path);
      if (holder !== undefined && holderIsAlive(holder, path)) throw inUse(dir, path, holder);
      // A file its process left behind (or half written): take the directory over.
      try {
        unlinkSync(path);
      } catch {
        // another process took it over first: the next attempt says who holds it
      }
      continue;
    }
    try {
      writeSync(fd, mine);
    } finally {
      closeSync(fd);
    }
    heldHere.add(path);
    const renew = setInterval(() => {
      try {
        const now = new Date();
        utimesSync(path, now, now);
      } catch {
        // removed by hand: nothing to renew
      }
    }, LOCK_RENEW_MS);
    renew.unref();
    return () => {
      clearInterval(renew);
      heldHere.delete(path);
      try {
        if (readFileSync(path, "utf8") === mine) unlinkSync(path);
      } catch {
        // already gone
      }
    };
  }
}

interface Holder {
  pid: number;
  host: string;
}

function readHolder(path: string): Holder | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  const match = /^(\d+) (\S+)\n$/.exec(text);
  return match ? { pid: Number(match[1]), host: match[2]! } : undefined;
}

function holderIsAlive(holder: Holder, path: string): boolean {
  if (holder.host !== hostname()) {
    try {
      return Date.now() - statSync(path).mtimeMs < LOCK_STALE_MS;
    } catch {
      return false;
    }
  }
  if (holder.pid === process.pid) return heldHere.has(path);
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, run by another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function inUse(dir: string, path: string, holder?: Holder): ControllerApiError {
  const who =
    holder === undefined
      ? "another controller"
      : holder.host === hostname()
        ? `another controller (pid ${holder.pid}${holder.pid === process.pid ? ", this process" : ""})`
        : `a controller on ${holder.host} (pid ${holder.pid}; its file is taken over once not renewed for ${LOCK_STALE_MS / 1000} s)`;
  return new ControllerApiError(
    409,
    "CONTROLLER_ERR_DATA_IN_USE",
    `the data directory ${dir} is in use by ${who}: two controllers on one store would run its jobs twice. Stop it, or choose another --data-dir; if no controller runs there, remove ${path}`,
  );
}

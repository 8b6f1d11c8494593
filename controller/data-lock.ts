import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { ControllerApiError } from "./errors.ts";

/** The file that says which process runs a controller on a data directory. */
export const LOCK_FILE = "controller.pid";

/**
 * Takes the data directory `dir` for this process, as PostgreSQL's `postmaster.pid` does: two
 * controllers on one store would both dispatch its queued jobs and interleave their journals.
 * `<dir>/controller.pid` is created exclusively and holds `<pid> <host>`; one left by a process
 * of this machine that is gone (killed, crashed) is taken over. Returns the function that gives
 * the directory back. Throws ControllerApiError 409 `CONTROLLER_ERR_DATA_IN_USE` while a live
 * process (this one included) holds it, or one of another machine (a shared filesystem: its pid
 * cannot be checked from here).
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
      if (holder !== undefined && holderIsAlive(holder)) throw inUse(dir, path, holder);
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
    return () => {
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

function holderIsAlive(holder: Holder): boolean {
  if (holder.host !== hostname()) return true;
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
        : `a controller on ${holder.host} (pid ${holder.pid})`;
  return new ControllerApiError(
    409,
    "CONTROLLER_ERR_DATA_IN_USE",
    `the data directory ${dir} is in use by ${who}: two controllers on one store would run its jobs twice. Stop it, or choose another --data-dir; if no controller runs there, remove ${path}`,
  );
}

import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { type FileHandle, open, rm, writeFile } from "node:fs/promises";

/**
 * remoting's arguments file (`-secret @PATH`: args4j replaces the argument with the file's lines),
 * which is also the gate that lets a JVM start before the agent knows it may connect.
 *
 * Where `mkfifo` exists the file is a named pipe (mode 0600): the JVM starts and boots (the
 * costly part of remoting's start), then blocks reading its arguments until {@link release}
 * writes them, so that it makes no request before the agent has confirmed the controller and the
 * jar (a JVM that must not go on is stopped by the caller and has done nothing). The secret never
 * touches the disk. Without `mkfifo` it is a regular 0600 file written at once: the caller must
 * then wait for its decision before starting remoting.
 */
export class ArgsGate {
  readonly path: string;
  /** True for a named pipe: remoting may start before {@link release}. */
  readonly gated: boolean;
  #released = false;

  private constructor(path: string, gated: boolean) {
    this.path = path;
    this.gated = gated;
  }

  /**
   * Creates the file at `path` (which must not exist): a named pipe when `mkfifo` runs, else a
   * regular file holding `lines` already. Throws when neither can be created.
   */
  static async create(path: string, lines: readonly string[]): Promise<ArgsGate> {
    if (await makeFifo(path)) return new ArgsGate(path, true);
    await writeFile(path, content(lines), { mode: 0o600, flag: "wx" });
    const gate = new ArgsGate(path, false);
    gate.#released = true;
    return gate;
  }

  /**
   * Hands `lines` to remoting (one argument per line). For a named pipe this waits until remoting
   * opens it, or until `readerGone` resolves (remoting ended first: then false). A regular file
   * was written by {@link create}. The file is removed once read or abandoned.
   */
  async release(lines: readonly string[], readerGone: Promise<unknown>): Promise<boolean> {
    if (this.#released) return true;
    this.#released = true;
    let gone = false;
    const opening = open(this.path, constants.O_WRONLY);
    const first = await Promise.race([opening, readerGone.then(() => null)]);
    let writer: FileHandle;
    if (first === null) {
      gone = true;
      // The writer's open still waits for a reader in the thread pool: be that reader, so it ends.
      const unblock = await open(this.path, constants.O_RDONLY | constants.O_NONBLOCK).catch(() => null);
      writer = await opening;
      await unblock?.close();
    } else writer = first;
    try {
      if (!gone) await writer.writeFile(content(lines));
      return !gone;
    } catch {
      return false; // remoting closed its end (it died reading): EPIPE
    } finally {
      await writer.close();
      await this.remove();
    }
  }

  /** Removes the file (a named pipe nobody will read, or the regular file once read). */
  remove(): Promise<void> {
    return rm(this.path, { force: true });
  }
}

function content(lines: readonly string[]): string {
  return `${lines.join("\n")}\n`;
}

/** `mkfifo -m 600 path`; false when there is no mkfifo (or it failed). */
function makeFifo(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    execFile("mkfifo", ["-m", "600", path], { timeout: 5_000 }, (error) => resolve(error === null));
  });
}

import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { type FileHandle, open, rm, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

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
   * opens it, or until `readerGone` resolves or the pipe is removed (remoting ended or was
   * stopped first: then false). The pipe is opened without blocking (`O_NONBLOCK`, retried every
   * few ms while no reader has it open), so that no thread waits for a reader that never comes.
   * A regular file was written by {@link create}. The file is removed once read or abandoned.
   */
  async release(lines: readonly string[], readerGone: Promise<unknown>): Promise<boolean> {
    if (this.#released) return true;
    this.#released = true;
    let gone = false;
    void readerGone.then(() => {
      gone = true;
    });
    try {
      const writer = await openForWriting(this.path, () => gone);
      if (writer === null) return false;
      try {
        await writeAll(writer, Buffer.from(content(lines)), () => gone);
        return true;
      } catch {
        return false; // remoting closed its end (it died reading): EPIPE
      } finally {
        await writer.close();
      }
    } finally {
      await this.remove();
    }
  }

  /** Removes the file (a named pipe nobody will read, or the regular file once read). */
  remove(): Promise<void> {
    return rm(this.path, { force: true });
  }
}

/** How often a writer looks again for remoting at the other end of the named pipe. */
const POLL_MS = 5;

/**
 * Opens the named pipe at `path` for writing once a reader has it open; null when `gone()` says
 * the reader will never come, or the pipe was removed. Never blocks a thread: `O_NONBLOCK` fails
 * at once with ENXIO while there is no reader.
 */
async function openForWriting(path: string, gone: () => boolean): Promise<FileHandle | null> {
  for (;;) {
    try {
      return await open(path, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENXIO" || gone()) return null;
    }
    await sleep(POLL_MS);
  }
}

/** Writes all of `data` to a non-blocking pipe, waiting while it is full (EAGAIN). */
async function writeAll(writer: FileHandle, data: Buffer, gone: () => boolean): Promise<void> {
  for (let offset = 0; offset < data.length; ) {
    try {
      offset += (await writer.write(data, offset)).bytesWritten;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EAGAIN" || gone()) throw error;
      await sleep(POLL_MS);
    }
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

/**
 * A step's stdout and stderr through real pipes (named pipes, FIFOs) instead of the UNIX
 * socketpair `child_process.spawn` makes for `stdio: "pipe"`.
 *
 * Why: on Linux every write(2) to an AF_UNIX stream socket becomes its own buffer (allocated,
 * queued, copied, freed), while a pipe merges small writes into its pages. A program printing
 * one line per write(2) reaches about twice the throughput through a pipe (docs/performance.md,
 * issue 16). A pipe is also what Jenkins' agent, a shell and `cat` give a build: a step can
 * reopen `/dev/stdout` or `/dev/stderr` (`tee /dev/stderr`), which a socket refuses (ENXIO).
 *
 * Node has neither pipe(2) nor mkfifo(3): FIFOs are made by the `mkfifo` program, in batches
 * ahead of the steps that use them (a spawn per step would add to every step's start), in a
 * private directory (mode 0300: its owner may make, open and unlink names in it but not list it,
 * and the names are random, so that a step that lists directories does not come upon the FIFOs
 * made ahead for later steps; not a boundary: a step's processes run as the agent's user, who
 * owns the directory and may `chmod` it, and see `mkfifo`'s arguments in /proc. Never in the
 * workspace): on /dev/shm where there is one (a
 * tmpfs: making a FIFO on a disk file system costs a journal write, about 0.6 ms of system CPU
 * per FIFO on ext4 here), else in the agent's temp dir (Lambda has no /dev/shm). A step's pair
 * is opened just before the step starts (read end first, non-blocking; then the write end) and
 * unlinked at once: only through the agent's /proc/<pid>/fd can it be opened afterwards, so no
 * later step's pair is opened while a step runs; the kernel frees it when the last end closes. Where FIFOs
 * cannot be made (no `mkfifo`, a read-only temp dir) steps fall back to the socketpair, logged
 * once per process (a Lambda function's process runs one job per invocation: see {@link FifoSupport}).
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, constants, existsSync, fstatSync, openSync, unlinkSync } from "node:fs";
import { chmod, lstat, mkdtemp, readdir, rmdir, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "../logger.ts";
import { processRunning, processStartTicks } from "./process-identity.ts";

/** One step's pipes: the write ends go to the step (spawn's stdio), the read ends stay with the agent. */
export interface StepFifos {
  stdout: { read: number; write: number };
  stderr: { read: number; write: number };
}

export interface StepPipesOptions {
  logger: Logger;
  /** The program that makes FIFOs (default `mkfifo` from PATH). */
  mkfifo?: string;
  /** Where the private directory may be made, the first that takes one (default: /dev/shm, `os.tmpdir()`). */
  parentDirs?: string[];
  /** What the process learned about FIFOs so far (default: this process's one; tests pass their own). */
  support?: FifoSupport;
}

/**
 * What a process has learned about making FIFOs, shared by the {@link StepPipes} of all its jobs:
 * a Lambda function's process (and a test's) runs many jobs, and the fallback's cause is the
 * process's (its PATH, its file systems), not a job's. Each warning is logged once per process
 * (later jobs log it at debug level), and a `mkfifo` that was not found is not looked for again.
 */
export class FifoSupport {
  readonly #warned = new Set<string>();
  readonly #missing = new Map<string, string>();

  /** Logs `msg` as a warning the first time in this process, at debug level after that. */
  warnOnce(logger: Logger, msg: string, fields: Record<string, unknown>): void {
    const first = !this.#warned.has(msg);
    this.#warned.add(msg);
    logger[first ? "warn" : "debug"](msg, fields);
  }

  /** Why `program` cannot be run, when it was not found before. */
  missing(program: string): string | undefined {
    return this.#missing.get(program);
  }

  markMissing(program: string, reason: string): void {
    this.#missing.set(program, reason);
  }
}

/** The process's own {@link FifoSupport}. */
const PROCESS_SUPPORT = new FifoSupport();

const CANNOT_MAKE = "cannot make FIFOs for the steps' output; steps use a socketpair";
const CANNOT_OPEN = "cannot open a step's FIFOs; the step's output goes through a socketpair";

/**
 * FIFO pairs made by the first `mkfifo`; each later batch is 4 times larger, up to
 * {@link MAX_BATCH}: a one-step job makes 8 pairs, a job of 100 steps 3 batches (nodes only:
 * a FIFO holds no data on disk).
 */
const FIRST_BATCH = 8;
const BATCH_GROWTH = 4;
const MAX_BATCH = 128;
/** A new batch is started when this share of the last one or less is left. */
const REFILL_AT = 1 / 4;
/** Where the private directory goes when no `parentDirs` are given: a tmpfs first. */
const DEFAULT_PARENTS = ["/dev/shm"];
/** How long one `mkfifo` may take (a stuck one ends in a fallback, not a hung step). */
const MKFIFO_TIMEOUT_MS = 10_000;

/**
 * The FIFOs of one job's steps. {@link take} gives each step a fresh pair (or null: use a
 * socketpair); {@link close} removes the directory. Not safe for steps started concurrently
 * (a job's steps run one after another).
 */
export class StepPipes {
  readonly #logger: Logger;
  readonly #mkfifo: string;
  readonly #parentDirs: string[];
  readonly #support: FifoSupport;
  /** The first of #parentDirs a new directory may go in (one where `mkfifo` failed is left). */
  #parent = 0;
  /** Every directory made (a step may remove one: a new one is made), removed by close(). */
  readonly #dirs: string[] = [];
  #dir: string | undefined;
  /** Names of the made pairs not yet used (`<name>.out`, `<name>.err` in #dir; random). */
  #ready: string[] = [];
  #batch = FIRST_BATCH;
  #refillAt = Math.floor(FIRST_BATCH * REFILL_AT);
  #filling: Promise<void> | undefined;
  /** Why FIFOs cannot be made (then every step gets a socketpair). */
  #unavailable: string | undefined;
  #closed = false;
  /** A check, just after a step's spawn, whether a new batch is due. */
  #refilling: NodeJS.Immediate | undefined;

  /** Starts making the first batch at once, so that it is ready by the first step. */
  constructor(options: StepPipesOptions) {
    this.#logger = options.logger;
    this.#mkfifo = options.mkfifo ?? "mkfifo";
    this.#parentDirs = options.parentDirs ?? [...DEFAULT_PARENTS, tmpdir()];
    this.#support = options.support ?? PROCESS_SUPPORT;
    this.#startFill();
  }

  /** Why steps fall back to a socketpair, or undefined while FIFOs are made. */
  get unavailable(): string | undefined {
    return this.#unavailable;
  }

  /**
   * A fresh pair of FIFOs, open, for one step: its caller owns the four descriptors (it closes
   * the write ends right after the spawn). Null when FIFOs cannot be had: the step then uses a
   * socketpair (the reason is logged once). Never throws.
   *
   * The pair is opened here, never ahead: a FIFO the agent holds open can be opened again by
   * any process of its user through /proc/<agent pid>/fd, so one opened for the next step while
   * this one runs would let this step write into (or read) the next step's output. Batches are
   * made ahead: a new one is started when this one runs low, just after the caller's spawn (in
   * the event loop's check phase), so that `mkfifo`'s spawn does not delay a step's start.
   */
  async take(): Promise<StepFifos | null> {
    const fifos = await this.#openNext();
    if (fifos !== null && !this.#closed && this.#refilling === undefined) {
      this.#refilling = setImmediate(() => {
        this.#refilling = undefined;
        if (this.#ready.length <= this.#refillAt) this.#startFill();
      });
    }
    return fifos;
  }

  /** Removes the FIFO directories (after the job's last step). */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#refilling !== undefined) clearImmediate(this.#refilling);
    this.#refilling = undefined;
    await this.#filling;
    await Promise.all(this.#dirs.map((dir) => removeDir(dir)));
  }

  /**
   * Opens the next made pair, waiting for a batch when none is left. Twice at most: a batch made
   * in a directory a step removed, or in a parent where `mkfifo` fails, is followed by one in a
   * new directory.
   */
  async #openNext(): Promise<StepFifos | null> {
    for (let attempt = 0; attempt < 2; attempt++) {
      if (this.#ready.length === 0) {
        // A batch under way first (it may have been made in a directory a step removed since).
        await this.#filling;
        if (this.#ready.length === 0) {
          this.#startFill();
          await this.#filling;
        }
      }
      if (this.#ready.length === 0) continue;
      const opened = this.#openReady();
      if (opened !== "gone") return opened;
    }
    return null;
  }

  /**
   * Opens the first made pair. "gone" when the directory was removed (by a step: `rm -rf
   * "$TMPDIR"/*`): the next batch goes in a new one. Null (logged once) when it cannot be opened.
   */
  #openReady(): StepFifos | null | "gone" {
    const name = this.#ready.shift();
    if (name === undefined || this.#dir === undefined) return null;
    const opened = openPair(this.#dir, name);
    if ("fifos" in opened) return opened.fifos;
    if (opened.code === "ENOENT") {
      this.#ready = [];
      this.#dir = undefined;
      return "gone";
    }
    this.#support.warnOnce(this.#logger, CANNOT_OPEN, { error: opened.message });
    return null;
  }

  #startFill(): void {
    if (this.#filling !== undefined || this.#unavailable !== undefined || this.#closed) return;
    this.#filling = this.#fill().finally(() => {
      this.#filling = undefined;
    });
  }

  /**
   * Makes the next batch. A failure makes FIFOs unavailable for this job only when no directory
   * is left to try: when a step removed the directory while the batch was made (`rm -rf
   * /dev/shm/*`), the next batch goes in a new one; when `mkfifo` fails in an existing directory
   * (a file system out of inodes or remounted read-only), the next parent is tried.
   */
  async #fill(): Promise<void> {
    const count = this.#batch;
    this.#refillAt = Math.floor(count * REFILL_AT);
    this.#batch = Math.min(this.#batch * BATCH_GROWTH, MAX_BATCH);
    const missing = this.#support.missing(this.#mkfifo);
    if (missing !== undefined) return this.#giveUp(missing);
    let dir = this.#dir;
    try {
      if (dir === undefined) {
        const made = await privateDir(this.#parentDirs.slice(this.#parent));
        this.#parent += made.parent;
        dir = this.#dir = made.dir;
        this.#dirs.push(dir);
      }
      const inDir = dir;
      // Random: the directory cannot be listed, so a name is found only by who made it.
      const names = Array.from({ length: count }, () => randomBytes(12).toString("hex"));
      const paths = names.flatMap((name) => [join(inDir, `${name}.out`), join(inDir, `${name}.err`)]);
      await runMkfifo(this.#mkfifo, paths);
      if (dir === this.#dir) this.#ready.push(...names);
    } catch (error) {
      const reason = (error as Error).message;
      if (error instanceof ProgramNotFoundError) {
        this.#support.markMissing(this.#mkfifo, reason);
      } else if (dir !== undefined) {
        if (dir === this.#dir) {
          this.#dir = undefined;
          this.#ready = [];
        }
        // Removed under the batch by a step: a new directory in the same parent next time.
        if (!existsSync(dir)) return;
        if (++this.#parent < this.#parentDirs.length) {
          this.#logger.debug("cannot make FIFOs here; trying the next directory", { dir, error: reason });
          return;
        }
      }
      this.#giveUp(reason);
    }
  }

  /** Every later step of this job gets a socketpair; logged once per process. */
  #giveUp(reason: string): void {
    this.#unavailable = reason;
    this.#ready = [];
    this.#support.warnOnce(this.#logger, CANNOT_MAKE, { error: reason });
  }
}

const DIR_PREFIX = "agent-step-pipes-";

/** A private directory's mode while in use: make, open and unlink by name; no listing. */
const DIR_MODE = 0o300;

/**
 * A new directory of mode {@link DIR_MODE} in the first of `parents` that takes one (with that
 * parent's index), named with this process's pid and start time (`agent-step-pipes-<pid>-<start
 * ticks>-XXXXXX`). Directories there of agents that died without removing theirs (SIGKILL, an OOM
 * kill), a pid reused since included, are removed along the way.
 */
async function privateDir(parents: string[]): Promise<{ dir: string; parent: number }> {
  let failure: unknown = new Error("no directory left to make FIFOs in");
  const self = { pid: process.pid, start: processStartTicks(process.pid) };
  for (const [index, parent] of parents.entries()) {
    try {
      const dir = await mkdtemp(join(parent, `${DIR_PREFIX}${self.pid}-${self.start ?? 0}-`));
      await chmod(dir, DIR_MODE);
      await removeOrphanedDirs(parent, self);
      return { dir, parent: index };
    } catch (error) {
      failure = error;
    }
  }
  throw failure;
}

/**
 * Removes `parent`'s FIFO directories whose agent process is gone: its pid is not running, or runs
 * a process started at another time (the pid was reused: a container restarted in place keeps
 * /dev/shm and /tmp). Names without a start time (`agent-step-pipes-<pid>-XXXXXX`) are judged by
 * the pid alone. Best effort: never throws.
 */
async function removeOrphanedDirs(
  parent: string,
  self: { pid: number; start: number | null },
): Promise<void> {
  const names = await readdir(parent).catch(() => [] as string[]);
  const orphans = names.filter((name) => {
    const match = /^agent-step-pipes-(\d+)-(?:(\d+)-)?[^-]+$/.exec(name);
    if (match === null) return false;
    const pid = Number(match[1]);
    const start = match[2] === undefined ? null : Number(match[2]);
    if (!(Number.isSafeInteger(pid) && pid > 0)) return false;
    if (pid === self.pid && (!start || start === self.start)) return false;
    return !processRunning(pid, start);
  });
  await Promise.all(orphans.map((name) => removeDir(join(parent, name))));
}

/**
 * Removes a FIFO directory and everything a step put in it. Best effort: never throws.
 *
 * A step runs as the agent's user, so it owns what it made in there: each directory (the FIFO
 * directory itself included) is made listable before it is read (a step may leave one of mode
 * 000: `rm -r` alone cannot read it, and the agent's directory would be left for good), and a
 * symbolic link is removed, never followed (`chmod` follows links: a link named like a FIFO
 * directory must not make the agent change the mode of what it points at).
 */
async function removeDir(dir: string): Promise<void> {
  await removeTree(dir).catch(() => {});
}

async function removeTree(path: string): Promise<void> {
  const stat = await lstat(path);
  if (!stat.isDirectory()) return unlink(path);
  await chmod(path, 0o700);
  await Promise.all((await readdir(path)).map((name) => removeTree(join(path, name)).catch(() => {})));
  await rmdir(path);
}

/** The program that makes FIFOs is not on PATH (or not at the path given). */
class ProgramNotFoundError extends Error {}

/**
 * `mkfifo -m 600 -- paths...`; rejects with a message naming the program and the cause
 * ({@link ProgramNotFoundError} when it is not found).
 */
function runMkfifo(program: string, paths: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      program,
      ["-m", "600", "--", ...paths],
      { timeout: MKFIFO_TIMEOUT_MS, killSignal: "SIGKILL" },
      (error, _stdout, stderr) => {
        if (error === null) return resolve();
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "ENOENT") {
          return reject(new ProgramNotFoundError(`${JSON.stringify(program)} was not found (ENOENT)`));
        }
        const detail = error.killed
          ? `${JSON.stringify(program)} did not finish within ${MKFIFO_TIMEOUT_MS} ms`
          : `${JSON.stringify(program)} failed (exit ${String(code)}): ${stderr.trim().slice(0, 300)}`;
        reject(new Error(detail));
      },
    );
  });
}

/**
 * Opens both FIFOs of pair `name` (read end non-blocking first, so that the write end's open
 * does not block; descriptors are close-on-exec) and unlinks them. Closes what it opened on failure.
 */
function openPair(
  dir: string,
  name: string,
): { fifos: StepFifos } | { code: string | undefined; message: string } {
  const paths = [join(dir, `${name}.out`), join(dir, `${name}.err`)];
  const opened: number[] = [];
  try {
    for (const path of paths) {
      const read = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
      opened.push(read);
      if (!fstatSync(read).isFIFO())
        throw Object.assign(new Error(`${path} is not a FIFO`), { code: "EINVAL" });
      opened.push(openSync(path, constants.O_WRONLY));
    }
    const [outRead, outWrite, errRead, errWrite] = opened as [number, number, number, number];
    return {
      fifos: { stdout: { read: outRead, write: outWrite }, stderr: { read: errRead, write: errWrite } },
    };
  } catch (error) {
    for (const fd of opened) closeSync(fd);
    const { code, message } = error as NodeJS.ErrnoException;
    return { code, message };
  } finally {
    for (const path of paths) {
      try {
        unlinkSync(path);
      } catch {
        // Already gone (the directory was removed): nothing left to remove.
      }
    }
  }
}

/** Closes descriptors, ignoring those already closed. */
export function closeFds(...fds: number[]): void {
  for (const fd of fds) {
    try {
      closeSync(fd);
    } catch {
      // EBADF: closed already.
    }
  }
}

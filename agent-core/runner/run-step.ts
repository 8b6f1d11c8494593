import { type ChildProcess, spawn } from "node:child_process";
import { Socket } from "node:net";
import { performance } from "node:perf_hooks";
import type { Readable } from "node:stream";
import { setLongTimeout } from "../long-timer.ts";
import { type Shell, STEP_REASONS, type StepReason } from "../protocol/messages.ts";
import { signalGroup, terminateGroup } from "./process-group.ts";
import { explainSpawnError, isDirectory, missingWorkingDir, type SpawnAttempt } from "./spawn-errors.ts";
import { closeFds, type StepFifos, type StepPipes } from "./step-pipes.ts";

/** What to run: a script through a shell, or a program with its arguments. */
export type Command = { run: string; shell?: Shell } | { argv: string[] };

export interface RunStepOptions {
  command: Command;
  cwd: string;
  /** The complete environment of the step (nothing is inherited). */
  env: Record<string, string>;
  /** Any length: delays beyond Node's timer limit are scheduled in hops. */
  timeoutMs?: number;
  /** SIGTERM -> SIGKILL delay when the step is stopped. */
  graceMs: number;
  /** How long the pipes may stay open after the process exited. */
  drainMs: number;
  /** Aborting stops the step; `signal.reason` should be a {@link StepReason} (default `cancelled`). */
  signal?: AbortSignal;
  /** Aborting SIGKILLs the step's group at once, skipping the grace period. */
  killNow?: AbortSignal;
  /** Receives output in order. Return false to pause the pipes until `waitForDrain` resolves. */
  onOutput: (stream: "stdout" | "stderr", chunk: Buffer) => boolean;
  waitForDrain?: () => Promise<void>;
  /** Called once the process is started, with its process group id. */
  onStart?: (pgid: number) => void;
  /** How long to wait for the exit of a process sent SIGKILL (default {@link KILL_WAIT_MS}). */
  killWaitMs?: number;
  /**
   * Where the step's stdout and stderr pipes come from (FIFOs, see step-pipes.ts). Without it,
   * or when it has none, the step's output goes through the socketpair `spawn` makes.
   */
  pipes?: StepPipes;
}

/** One result shape for every outcome, like execa's. */
export interface StepResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  durationMs: number;
  reason: StepReason;
  message?: string;
  /** The step's process group, which may still hold background processes. */
  pgid: number | null;
}

/**
 * How long to wait for the exit of a process that was sent SIGKILL. A process stuck in the
 * kernel (uninterruptible I/O on a dead network mount) may never exit: the step ends anyway.
 */
export const KILL_WAIT_MS = 5_000;

const BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"];
const SH = ["sh", "-e", "-c"];

/** The argv that runs `command`. */
export function commandArgv(command: Command): string[] {
  if ("argv" in command) return command.argv;
  const shell = command.shell ?? "bash";
  const prefix = shell === "bash" ? BASH : shell === "sh" ? SH : shell;
  return [...prefix, command.run];
}

/**
 * Runs one step in its own process group and streams its output. Stopping (timeout, abort)
 * sends SIGTERM to the group and SIGKILL after the grace period. The result comes when the
 * process has exited and its pipes have closed, or `drainMs` after the exit if a grandchild
 * still holds them.
 *
 * A step that cannot start (a missing program or working directory, an environment too large
 * for `execve`, a name too long...) ends at once with reason `error` and a message naming the
 * cause and its size against the limit. Every wait is bounded: the timeout, `signal` and
 * `killNow` always end the step, and a process that survives SIGKILL is given up on after
 * {@link KILL_WAIT_MS}.
 *
 * The process is started with `child_process.spawn` directly: `execve` failures surface as a
 * synchronous throw or an `error` event, and exit and pipe events come from the process itself.
 * Its stdout and stderr are FIFOs from `options.pipes` when it has them (our copies of their
 * write ends are closed right after the spawn, so that the step's exit brings EOF), else the
 * socketpair `spawn` makes.
 */
export async function runStep(options: RunStepOptions): Promise<StepResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const failed = (message: string): StepResult => ({
    exitCode: null,
    signal: null,
    durationMs: elapsed(),
    reason: "error",
    message,
    pgid: null,
  });
  const notStarted = (signal: AbortSignal): StepResult => ({
    exitCode: null,
    signal: null,
    durationMs: 0,
    reason: abortReason(signal),
    pgid: null,
  });
  if (options.signal?.aborted) return notStarted(options.signal);
  const attempt = spawnAttempt(options);
  // Checked first: spawn reports a missing cwd as the program not found (ENOENT).
  const cwdIsDirectory = isDirectory(options.cwd);
  if (cwdIsDirectory === undefined)
    return failed(`could not start the step: ${missingWorkingDir(options.cwd)}`);
  if (!cwdIsDirectory) {
    return failed(
      `could not start the step: the working directory ${JSON.stringify(options.cwd)} is not a directory`,
    );
  }

  const fifos = (await options.pipes?.take()) ?? null;
  // Aborted while the first FIFOs were being made: not started, as above.
  if (options.signal?.aborted) {
    if (fifos !== null)
      closeFds(fifos.stdout.read, fifos.stdout.write, fifos.stderr.read, fifos.stderr.write);
    return notStarted(options.signal);
  }
  let child: ChildProcess;
  try {
    child = spawn(attempt.file, attempt.args, {
      cwd: options.cwd,
      env: options.env,
      detached: true,
      stdio: ["ignore", fifos?.stdout.write ?? "pipe", fifos?.stderr.write ?? "pipe"],
    });
  } catch (error) {
    if (fifos !== null) closeFds(fifos.stdout.read, fifos.stderr.read);
    // execve's E2BIG, ENAMETOOLONG, ENOTDIR... are thrown here, synchronously.
    return failed(explainSpawnError(error as NodeJS.ErrnoException, attempt));
  } finally {
    // The step holds its own copies now: ours would keep EOF from ever coming.
    if (fifos !== null) closeFds(fifos.stdout.write, fifos.stderr.write);
  }
  return superviseStep(child, options, elapsed, fifos === null ? undefined : fifoReaders(fifos));
}

/** The read ends of a step's FIFOs as streams (libuv reads them like any pipe: epoll, 64 KiB reads). */
function fifoReaders(fifos: StepFifos): StepOutput {
  const reader = (fd: number) => new Socket({ fd, readable: true, writable: false });
  return { stdout: reader(fifos.stdout.read), stderr: reader(fifos.stderr.read) };
}

/** Where a step's output is read from, when not from the child's own pipes. */
export interface StepOutput {
  stdout: Readable;
  stderr: Readable;
}

function spawnAttempt(options: RunStepOptions): SpawnAttempt {
  const [file, ...args] = commandArgv(options.command);
  return { command: options.command, file: file!, args, env: options.env, cwd: options.cwd };
}

/**
 * The second half of {@link runStep}: supervises a started `child` (stop on timeout and abort,
 * output, drain) until its result. Exported for tests, which hand it a process that never
 * reports its exit to show that the wait is bounded.
 */
export async function superviseStep(
  child: ChildProcess,
  options: RunStepOptions,
  elapsed: () => number,
  output: StepOutput | undefined = undefined,
): Promise<StepResult> {
  const attempt = spawnAttempt(options);
  const killWaitMs = options.killWaitMs ?? KILL_WAIT_MS;
  let stopReason: StepReason | undefined;
  let stopping: Promise<void> | undefined;
  let spawnError: NodeJS.ErrnoException | undefined;
  const pgid = child.pid ?? null;
  if (pgid !== null) options.onStart?.(pgid);

  let resolveExit: (exit: { code: number | null; signal: NodeJS.Signals | null; stuck?: true }) => void;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stuck?: true }>(
    (resolve) => {
      resolveExit = resolve;
    },
  );
  let hasExited = false;
  child.once("exit", (code, signal) => {
    hasExited = true;
    resolveExit({ code, signal });
  });
  child.once("error", (error) => {
    // Only a failed start ends the wait: after a start, errors (a failed kill) change nothing.
    if (pgid !== null) return;
    spawnError = error;
    resolveExit({ code: null, signal: null });
  });

  let stuckTimer: NodeJS.Timeout | undefined;
  const stop = (reason: StepReason, hard = false) => {
    if (pgid === null) return;
    if (stopReason === undefined) stopReason = reason;
    if (hard) signalGroup(pgid, "SIGKILL");
    if (stopping !== undefined) return;
    stopping = terminateGroup(pgid, options.graceMs, hard).then(() => {
      if (hasExited) return;
      stuckTimer = setTimeout(() => resolveExit({ code: null, signal: null, stuck: true }), killWaitMs);
    });
  };

  const timer =
    options.timeoutMs === undefined ? undefined : setLongTimeout(() => stop("timeout"), options.timeoutMs);
  const onAbort = () => stop(abortReason(options.signal!));
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const onKill = () => stop(options.signal?.aborted ? abortReason(options.signal) : "interrupted", true);
  options.killNow?.addEventListener("abort", onKill, { once: true });
  if (options.killNow?.aborted) onKill();
  else if (options.signal?.aborted) onAbort();

  const stdout = output?.stdout ?? child.stdout;
  const stderr = output?.stderr ?? child.stderr;
  // undefined, not null, when the start failed before the pipes were made (EMFILE, ENFILE).
  const streams = [stdout, stderr].filter((s): s is Readable => s != null);
  const streamsClosed = Promise.all(
    streams.map(
      (stream) =>
        new Promise<void>((resolve) => stream.once("close", resolve).once("error", () => resolve())),
    ),
  );
  let paused = false;
  const pump = (name: "stdout" | "stderr", stream: Readable | null) => {
    stream?.on("data", (chunk: Buffer) => {
      if (options.onOutput(name, chunk) || paused || options.waitForDrain === undefined) return;
      paused = true;
      for (const s of streams) s.pause();
      void options.waitForDrain().then(() => {
        paused = false;
        for (const s of streams) s.resume();
      });
    });
  };
  pump("stdout", stdout);
  pump("stderr", stderr);

  const { code, signal, stuck } = await exited;
  hasExited = true;
  timer?.clear();
  clearTimeout(stuckTimer);
  options.signal?.removeEventListener("abort", onAbort);
  options.killNow?.removeEventListener("abort", onKill);

  // A grandchild may hold the pipes open: wait a bounded time, then stop reading.
  let drainTimer: NodeJS.Timeout | undefined;
  const drained = await Promise.race([
    streamsClosed.then(() => true),
    new Promise<boolean>((resolve) => {
      drainTimer = setTimeout(() => resolve(false), stuck ? 0 : options.drainMs);
    }),
  ]);
  clearTimeout(drainTimer);
  if (!drained) {
    for (const stream of streams) stream.destroy();
  }
  // Background processes of a step that finished by itself live until the job ends (reapGroups).
  if (stopping !== undefined) await stopping;

  if (spawnError !== undefined) {
    return {
      exitCode: null,
      signal: null,
      durationMs: elapsed(),
      reason: "error",
      message: explainSpawnError(spawnError, attempt),
      pgid,
    };
  }
  const result: StepResult = {
    exitCode: code,
    signal,
    durationMs: elapsed(),
    reason: stopReason ?? "exit",
    pgid,
  };
  if (stuck) {
    result.message = `the process did not exit within ${killWaitMs} ms of SIGKILL (stuck in the kernel?); the step was given up on`;
  } else if (stopReason === "timeout") result.message = `step timed out after ${options.timeoutMs} ms`;
  else if (!drained) {
    result.message = `the process exited but its output stayed open for ${options.drainMs} ms (a background process holds it); stopped reading`;
  }
  return result;
}

/** The StepReason an abort carries (`cancelled` when it carries none). */
export function abortReason(signal: AbortSignal): StepReason {
  const reason: unknown = signal.reason;
  return typeof reason === "string" && isStepReason(reason) ? reason : "cancelled";
}

function isStepReason(value: string): value is StepReason {
  return (STEP_REASONS as readonly string[]).includes(value);
}

/** Ends whatever a job's steps left running in their process groups. */
export async function reapGroups(pgids: Iterable<number>, graceMs: number): Promise<void> {
  await Promise.all([...pgids].map((pgid) => terminateGroup(pgid, graceMs)));
}

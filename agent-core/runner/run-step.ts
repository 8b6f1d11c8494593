import { performance } from "node:perf_hooks";
import type { Readable } from "node:stream";
import { type Shell, STEP_REASONS, type StepReason } from "../protocol/messages.ts";
import { signalGroup, terminateGroup } from "./process-group.ts";

/** What to run: a script through a shell, or a program with its arguments. */
export type Command = { run: string; shell?: Shell } | { argv: string[] };

export interface RunStepOptions {
  command: Command;
  cwd: string;
  /** The complete environment of the step (nothing is inherited). */
  env: Record<string, string>;
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
 */
export async function runStep(options: RunStepOptions): Promise<StepResult> {
  const started = performance.now();
  const [file, ...args] = commandArgv(options.command);
  const elapsed = () => Math.round(performance.now() - started);
  if (options.signal?.aborted) {
    return { exitCode: null, signal: null, durationMs: 0, reason: abortReason(options.signal), pgid: null };
  }

  // Loaded on first use: a Lambda cold start that never runs a step does not pay for it.
  const { execa } = await import("execa");
  // A stop (cancel, SIGTERM) that came while execa loaded is not lost: nothing is started.
  if (options.signal?.aborted) {
    return {
      exitCode: null,
      signal: null,
      durationMs: elapsed(),
      reason: abortReason(options.signal),
      pgid: null,
    };
  }
  const child = execa(file!, args, {
    cwd: options.cwd,
    env: options.env,
    extendEnv: false,
    detached: true,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    buffer: false,
    reject: false,
    cleanup: false,
    stripFinalNewline: false,
    encoding: "buffer",
  });
  // The promise settles when the streams end; we track exit and streams ourselves.
  child.catch(() => {});

  let stopReason: StepReason | undefined;
  let stopping: Promise<void> | undefined;
  let spawnError: Error | undefined;
  const pgid = child.pid ?? null;
  if (pgid !== null) options.onStart?.(pgid);

  const stop = (reason: StepReason) => {
    if (stopReason !== undefined || pgid === null) return;
    stopReason = reason;
    stopping = terminateGroup(pgid, options.graceMs);
  };

  const timer =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(() => stop("timeout"), options.timeoutMs).unref();
  const onAbort = () => stop(abortReason(options.signal!));
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) onAbort();
  const onKill = () => {
    stop(options.signal?.aborted ? abortReason(options.signal) : "interrupted");
    if (pgid !== null) signalGroup(pgid, "SIGKILL");
  };
  options.killNow?.addEventListener("abort", onKill, { once: true });
  if (options.killNow?.aborted) onKill();

  const streams = [child.stdout, child.stderr].filter((s): s is Readable => s !== null && s !== undefined);
  const streamsClosed = Promise.all(
    streams.map(
      (stream) =>
        new Promise<void>((resolve) => stream.once("close", resolve).once("error", () => resolve())),
    ),
  );
  let paused = false;
  const pump = (name: "stdout" | "stderr", stream: Readable | null | undefined) => {
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
  pump("stdout", child.stdout);
  pump("stderr", child.stderr);

  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", (error) => {
      spawnError = error;
      resolve({ code: null, signal: null });
    });
  });

  const { code, signal } = await exited;
  clearTimeout(timer);
  options.signal?.removeEventListener("abort", onAbort);
  options.killNow?.removeEventListener("abort", onKill);

  // A grandchild may hold the pipes open: wait a bounded time, then stop reading.
  let drainTimer: NodeJS.Timeout | undefined;
  const drained = await Promise.race([
    streamsClosed.then(() => true),
    new Promise<boolean>((resolve) => {
      drainTimer = setTimeout(() => resolve(false), options.drainMs);
    }),
  ]);
  clearTimeout(drainTimer);
  if (!drained) {
    for (const stream of streams) stream.destroy();
  }
  // Background processes of a step that finished by itself live until the job ends (reapGroups).
  if (stopping !== undefined) await stopping;

  const result: StepResult = {
    exitCode: code,
    signal,
    durationMs: elapsed(),
    reason: stopReason ?? (spawnError ? "error" : "exit"),
    pgid,
  };
  if (spawnError) result.message = `could not start ${JSON.stringify(file)}: ${spawnError.message}`;
  else if (stopReason === "timeout") result.message = `step timed out after ${options.timeoutMs} ms`;
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

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";

export const NODE = process.execPath;

/** Every child this run started and that has not exited: killed if the run is interrupted. */
const running = new Set<ChildProcess>();

/** SIGKILLs the children this run started that are still running (an interrupted run's cleanup). */
export function killStartedChildren(): void {
  for (const child of running) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  running.clear();
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** `performance.now()` of the exit event. */
  at: number;
}

export interface Started {
  child: ChildProcess;
  pid: number;
  /** `performance.now()` just before the spawn. */
  startedAt: number;
  exited: Promise<Exit>;
  /** Resolves when the process exited and its pipes closed. */
  closed: Promise<Exit>;
  /** The last bytes of its stdout and stderr, for error messages. */
  tail(): string;
  /** Everything it wrote to stdout (kept only with `keepStdout`). */
  stdout(): string;
}

export interface StartOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Keep the whole stdout (small outputs only). */
  keepStdout?: boolean;
  /** Give it a stdin pipe (`child.stdin`); otherwise stdin is /dev/null. */
  stdin?: boolean;
  /** Called with each chunk of its stdout. */
  onStdout?: (chunk: Buffer) => void;
  /** A descriptor to give it as stdout (the caller reads it) instead of a pipe of ours. */
  stdout?: number;
}

const TAIL_BYTES = 4096;

/** Spawns `file args` with piped output, tracked for cleanup. */
export function start(file: string, args: readonly string[], options: StartOptions = {}): Started {
  const startedAt = performance.now();
  const child = spawn(file, args, {
    env: options.env ?? minimalEnv(),
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    stdio: [options.stdin ? "pipe" : "ignore", options.stdout ?? "pipe", "pipe"],
  });
  running.add(child);
  let tail = "";
  let out = "";
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString("utf8")).slice(-TAIL_BYTES);
  };
  child.stdout?.on("data", (chunk: Buffer) => {
    keep(chunk);
    if (options.keepStdout) out += chunk.toString("utf8");
    options.onStdout?.(chunk);
  });
  child.stderr!.on("data", keep);
  const exited = new Promise<Exit>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      running.delete(child);
      resolve({ code, signal, at: performance.now() });
    });
  });
  const closed = new Promise<Exit>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => resolve({ code, signal, at: performance.now() }));
  });
  // The caller may only await `closed`; a spawn error must not go unhandled on `exited`.
  exited.catch(() => {});
  closed.catch(() => {});
  if (child.pid === undefined) {
    return { child, pid: -1, startedAt, exited, closed, tail: () => tail, stdout: () => out };
  }
  return { child, pid: child.pid, startedAt, exited, closed, tail: () => tail, stdout: () => out };
}

/** Runs a command to its end; resolves with spawn-to-exit milliseconds. Throws when it fails. */
export async function timedRun(
  file: string,
  args: readonly string[],
  options: StartOptions & { timeoutMs?: number } = {},
): Promise<{ ms: number; stdout: string }> {
  const run = start(file, args, options);
  const exit = await withTimeout(run.closed, options.timeoutMs ?? 60_000, `${file} ${args.join(" ")}`, () =>
    run.child.kill("SIGKILL"),
  );
  if (exit.code !== 0) {
    throw new Error(
      `${file} ${args.join(" ").slice(0, 200)} exited with ${exit.code ?? exit.signal}: ${run.tail()}`,
    );
  }
  const exited = await run.exited;
  return { ms: exited.at - run.startedAt, stdout: run.stdout() };
}

/** PATH and HOME, and nothing else from this process's environment. */
export function minimalEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
    HOME: process.env.HOME ?? "/tmp",
    ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}),
    ...extra,
  };
}

let clockTicks: number | undefined;

/** Clock ticks per second of /proc times (`getconf CLK_TCK`, usually 100). */
export function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    const text = execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim();
    const value = Number(text);
    if (!Number.isInteger(value) || value <= 0)
      throw new Error(`Expected \`getconf CLK_TCK\` to print a positive integer, got \`${text}\``);
    clockTicks = value;
  }
  return clockTicks;
}

/** Whether this kernel keeps per-thread run times in nanoseconds (/proc/<pid>/task/<tid>/schedstat). */
export const HAS_SCHEDSTAT = existsSync("/proc/self/schedstat");

/** How {@link procCpuSeconds} measures, for the notes. */
export const CPU_CLOCK = HAS_SCHEDSTAT
  ? "sum of /proc/<pid>/task/*/schedstat run times (ns)"
  : "/proc/<pid>/stat utime+stime (clock ticks)";

/**
 * CPU seconds a process has used so far: the run time of each of its threads in nanoseconds
 * where the kernel keeps it, else utime + stime from /proc/<pid>/stat (one clock tick, usually
 * 10 ms, of resolution). Differences between two readings are what a measurement uses.
 */
export function procCpuSeconds(pid: number): number {
  if (!HAS_SCHEDSTAT) {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which is in parentheses and may itself contain spaces.
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[14 - 3]) + Number(fields[15 - 3])) / clockTicksPerSecond();
  }
  let nanoseconds = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      nanoseconds += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, "utf8").split(" ")[0]);
    } catch (error) {
      // A thread that ended between the listing and the read has no time left to count.
      if (
        (error as NodeJS.ErrnoException).code !== "ENOENT" &&
        (error as NodeJS.ErrnoException).code !== "ESRCH"
      )
        throw error;
    }
  }
  return nanoseconds / 1e9;
}

/** Resident memory of a process in bytes (VmRSS of /proc/<pid>/status), or null once it is gone. */
export function procRssBytes(pid: number): number | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(text);
  return match ? Number(match[1]) * 1024 : null;
}

/** Samples `read` every `intervalMs` until stopped; `stop` returns the non-null samples. */
export function sampleEvery(read: () => number | null, intervalMs: number): { stop: () => number[] } {
  const samples: number[] = [];
  const take = () => {
    const value = read();
    if (value !== null) samples.push(value);
  };
  take();
  // Unref'd: a sampler left running by a failed measurement never keeps the run alive.
  const timer = setInterval(take, intervalMs).unref();
  return {
    stop: () => {
      clearInterval(timer);
      take();
      return samples;
    },
  };
}

/** Rejects with a message naming `what` when `promise` has not settled within `timeoutMs`. */
export async function withTimeout<T>(
  promise: Promise<T>,
  timeoutMs: number,
  what: string,
  onTimeout?: () => void,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once `predicate` holds, checking every `intervalMs`; rejects after `timeoutMs`. */
export async function waitUntil(
  predicate: () => boolean,
  timeoutMs: number,
  what: string,
  intervalMs = 5,
): Promise<void> {
  const started = performance.now();
  while (!predicate()) {
    if (performance.now() - started > timeoutMs)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits for `promise` (its outcome ignored) or `ms`, whichever is first; the timer never outlives the wait. */
export async function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      promise.catch(() => {}),
      new Promise((resolve) => {
        timer = setTimeout(resolve, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Stops a process this run started: SIGTERM, then SIGKILL if it is still there after `graceMs`. */
export async function stopProcess(run: Started, graceMs = 5_000): Promise<Exit> {
  if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill("SIGTERM");
  try {
    return await withTimeout(run.exited, graceMs, `process ${run.pid} to exit after SIGTERM`);
  } catch {
    run.child.kill("SIGKILL");
    return run.exited;
  }
}

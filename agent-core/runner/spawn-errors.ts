/**
 * Why a step's process could not be started, in plain words with the sizes and limits involved.
 * `execve` refuses a command for reasons a job author can fix (a huge environment value, a run
 * script too long for `bash -c`, a working directory that is a file...), and the bare errno
 * (`spawn E2BIG`) names none of them.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { clip } from "../clip.ts";
import type { Command } from "./run-step.ts";

/** Linux's limit on one argument or environment string, its terminating NUL included (MAX_ARG_STRLEN, 32 pages). */
export const MAX_ARG_STRLEN = 131_072;
/** Linux's limit on a path, its NUL included (PATH_MAX). */
export const PATH_MAX = 4_096;
/** Linux's limit on one component of a path (NAME_MAX). */
export const NAME_MAX = 255;
/** The kernel's floor for the argument and environment space (32 pages). */
const ARG_MAX_FLOOR = 131_072;
/** The kernel's ceiling for it: three quarters of _STK_LIM (8 MiB). */
const ARG_MAX_CEILING = 6 * 1_048_576;

/** What was being started when the error came. */
export interface SpawnAttempt {
  command: Command;
  file: string;
  args: readonly string[];
  env: Readonly<Record<string, string>>;
  cwd: string;
}

/**
 * The space `execve` allows for arguments and environment together, in bytes (strings with
 * their NULs plus one pointer each): a quarter of the stack size limit, at least 128 KiB, at
 * most 6 MiB (Linux's `bprm_stack_limits`). Read from `/proc/self/limits`; the child inherits
 * the agent's limit. 2 MiB (the value for the usual 8 MiB stack) where it cannot be read.
 */
export function argMaxBytes(limitsText?: string): number {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync("/proc/self/limits", "utf8");
    } catch {
      return 2_097_152;
    }
  }
  const line = text.split("\n").find((l) => l.startsWith("Max stack size"));
  const soft = line?.slice("Max stack size".length).trim().split(/\s+/)[0];
  if (soft === undefined) return 2_097_152;
  const stackBytes = soft === "unlimited" ? Number.POSITIVE_INFINITY : Number(soft);
  if (Number.isNaN(stackBytes)) return 2_097_152;
  return Math.max(ARG_MAX_FLOOR, Math.min(ARG_MAX_CEILING, Math.floor(stackBytes / 4)));
}

/**
 * One sentence (or two) saying why the process could not start, naming the value at fault and
 * its size against the limit. Starts with "could not start the step:"; ends with the errno.
 *
 * @example
 * explainSpawnError(Object.assign(new Error("spawn E2BIG"), { code: "E2BIG" }), attempt);
 * // could not start the step: the environment variable BIG is 200,005 bytes, over Linux's limit
 * // of 131,072 bytes for one argument or environment string (MAX_ARG_STRLEN) (E2BIG). ...
 */
export function explainSpawnError(error: NodeJS.ErrnoException, attempt: SpawnAttempt): string {
  const code = error.code ?? "unknown error";
  // Node's own wording may quote the value at fault (a secret among them): clipped, as a last resort.
  const why = reason(code, attempt) ?? clip(error.message, 200);
  return `could not start the step: ${why} (${code})`;
}

/**
 * What no `execve` can take although it fits every size limit: a NUL byte inside an argument,
 * an environment value or name (C strings end there), or an empty program name. Node refuses
 * these before starting anything (`ERR_INVALID_ARG_VALUE`). Names the value, never shows it.
 */
function unrepresentable(attempt: SpawnAttempt): string | undefined {
  const argv = [attempt.file, ...attempt.args];
  if (attempt.file === "") return "the program name is empty";
  for (const [index, arg] of argv.entries()) {
    const at = arg.indexOf("\0");
    if (at >= 0)
      return `${argumentName(attempt, index)} contains a NUL byte (at character ${n(at)}), which no program's arguments can hold`;
  }
  for (const [name, value] of Object.entries(attempt.env)) {
    if (name.includes("\0")) return `the name of an environment variable contains a NUL byte`;
    const at = value.indexOf("\0");
    if (at >= 0)
      return `the environment variable ${clip(name)} contains a NUL byte (at character ${n(at)}), which no environment can hold`;
  }
  return undefined;
}

function reason(code: string, attempt: SpawnAttempt): string | undefined {
  switch (code) {
    case "E2BIG":
      return tooBig(attempt);
    case "ENAMETOOLONG":
      return nameTooLong(attempt);
    case "ENOTDIR":
      return isDirectory(attempt.cwd) === false
        ? `the working directory ${show(attempt.cwd)} is not a directory`
        : `a component of the program's path ${show(attempt.file)} is not a directory`;
    case "ENOENT":
      return notFound(attempt);
    case "ERR_INVALID_ARG_VALUE":
    case "ERR_INVALID_ARG_TYPE":
      return unrepresentable(attempt);
    case "EMFILE": {
      // Reading the limit takes a descriptor too: it may not be known just now.
      const limit = limitOf("Max open files");
      return `the agent has no file descriptor left for the step's pipes (its limit of open files, \`ulimit -n\`${limit === undefined ? "" : `, ${limit}`}, is reached): a process of the job, or the agent, holds too many open`;
    }
    case "ENFILE":
      return "the system's table of open files is full";
    case "EAGAIN": {
      const limit = limitOf("Max processes");
      return `no more processes may be started (the limit of processes, \`ulimit -u\`${limit === undefined ? "" : `, ${limit}`}, is reached): a process of the job may be forking without end`;
    }
    case "ENOMEM":
      return "there is not enough memory to start the process";
    case "EACCES":
      return `permission denied running ${show(attempt.file)}: it is not executable, or a directory on its path (or the working directory ${show(attempt.cwd)}) cannot be searched`;
    default:
      return undefined;
  }
}

function tooBig(attempt: SpawnAttempt): string {
  const argv = [attempt.file, ...attempt.args];
  const envEntries = Object.entries(attempt.env);
  const stringBytes = (text: string) => Buffer.byteLength(text, "utf8") + 1;
  let largest = { bytes: 0, what: "" };
  argv.forEach((arg, index) => {
    const bytes = stringBytes(arg);
    if (bytes > largest.bytes) largest = { bytes, what: argumentName(attempt, index) };
  });
  let envBytes = 0;
  for (const [name, value] of envEntries) {
    const bytes = stringBytes(`${name}=${value}`);
    envBytes += bytes;
    if (bytes > largest.bytes) largest = { bytes, what: `the environment variable ${name}` };
  }
  if (largest.bytes > MAX_ARG_STRLEN) {
    const advice = largest.what.startsWith("the `run` script")
      ? " Put the script in a file in the workspace and run that file."
      : " Pass a value this large through a file in the workspace instead.";
    return `${largest.what} is ${n(largest.bytes)} bytes, over Linux's limit of ${n(MAX_ARG_STRLEN)} bytes for one argument or environment string (MAX_ARG_STRLEN).${advice}`;
  }
  const argBytes = argv.reduce((sum, arg) => sum + stringBytes(arg), 0);
  const pointerBytes = 8 * (argv.length + envEntries.length);
  const limit = argMaxBytes();
  return (
    `the arguments and environment take ${n(argBytes + envBytes + pointerBytes)} bytes ` +
    `(environment: ${n(envBytes)} bytes in ${n(envEntries.length)} variables; arguments: ${n(argBytes)} bytes in ${n(argv.length)}; pointers: ${n(pointerBytes)}), ` +
    `over the kernel's limit of ${n(limit)} bytes (ARG_MAX: a quarter of the stack size limit). Pass large values through files in the workspace instead.`
  );
}

/** How the message names argv[index]: the program, the run script, or its position. */
function argumentName(attempt: SpawnAttempt, index: number): string {
  if (index === 0) return "the program name";
  if ("run" in attempt.command && index === attempt.args.length) return "the `run` script";
  return `argument ${index}`;
}

function nameTooLong(attempt: SpawnAttempt): string {
  for (const [what, path] of [
    ["the working directory's path", attempt.cwd],
    ["the program's path", attempt.file],
  ] as const) {
    const bytes = Buffer.byteLength(path, "utf8");
    if (bytes >= PATH_MAX) {
      return `${what} is ${n(bytes)} bytes, over Linux's limit of ${n(PATH_MAX)} bytes for a path (PATH_MAX)`;
    }
    const longest = Math.max(...path.split("/").map((part) => Buffer.byteLength(part, "utf8")));
    if (longest > NAME_MAX) {
      return `a component of ${what} is ${n(longest)} bytes, over Linux's limit of ${NAME_MAX} bytes for a file name (NAME_MAX)`;
    }
  }
  return `a path is longer than Linux allows (program ${show(attempt.file)})`;
}

function notFound(attempt: SpawnAttempt): string {
  if (isDirectory(attempt.cwd) !== true) return missingWorkingDir(attempt.cwd);
  if (!attempt.file.includes("/")) {
    const path = attempt.env.PATH;
    return path === undefined
      ? `the program ${show(attempt.file)} was not found: the step's environment has no PATH`
      : `the program ${show(attempt.file)} was not found in PATH (${show(path)})`;
  }
  if (existsSync(attempt.file)) {
    return `the program ${show(attempt.file)} exists, but its interpreter (${show(interpreterOf(attempt.file))}) was not found`;
  }
  return `the program ${show(attempt.file)} does not exist`;
}

/** The message for a working directory that is gone: it names the directory. */
export function missingWorkingDir(cwd: string): string {
  return `the working directory ${show(cwd)} does not exist (was it removed by an earlier step?)`;
}

/** True or false when `path` can be examined; undefined when it does not exist. */
export function isDirectory(path: string): boolean | undefined {
  try {
    return statSync(path).isDirectory();
  } catch {
    return undefined;
  }
}

/** A soft limit of this process from /proc/self/limits (`Max open files`...), or undefined. */
function limitOf(name: string): string | undefined {
  try {
    const line = readFileSync("/proc/self/limits", "utf8")
      .split("\n")
      .find((l) => l.startsWith(name));
    return line?.slice(name.length).trim().split(/\s+/)[0];
  } catch {
    return undefined;
  }
}

/** The `#!` line of a script, or a placeholder when it has none or cannot be read. */
function interpreterOf(file: string): string {
  try {
    const fd = openSync(file, "r");
    const buffer = Buffer.alloc(256);
    const read = (() => {
      try {
        return readSync(fd, buffer, 0, buffer.length, 0);
      } finally {
        closeSync(fd);
      }
    })();
    const head = buffer.toString("latin1", 0, read);
    return head.startsWith("#!") ? head.slice(2).split("\n")[0]!.trim() : "its #! line";
  } catch {
    return "its #! line";
  }
}

/** A value quoted for a message, clipped: a 5,000-character path is not repeated in full. */
function show(text: string): string {
  const quoted = JSON.stringify(text);
  return quoted.length > 120 ? `${quoted.slice(0, 100)}..." (${n(text.length)} characters)` : quoted;
}

function n(value: number): string {
  return value.toLocaleString("en-US");
}

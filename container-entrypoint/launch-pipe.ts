/**
 * The launch handed over through an inherited pipe instead of the process's arguments and
 * environment, so that no process above the agent holds the agent's secret where steps can read
 * it (`/proc/<pid>/cmdline`, `/proc/<pid>/environ`).
 *
 * The image's entrypoint (images/entrypoint.sh) starts as the container's PID 1 with the
 * container's arguments and environment, takes the variables that carry the secret out of its
 * environment, writes them and every argument into a pipe, and replaces itself with
 * `tini -- node container-entrypoint.mjs`, with no arguments and `AGENT_LAUNCH_FD` naming the
 * pipe's descriptor. Neither tini nor the agent is then started with the secret. The pipe holds,
 * each ended by a NUL: the argument count, the arguments, then `NAME=VALUE` for each variable of
 * {@link SECRET_ENV} that was set. The agent reads it to its end and closes it before anything
 * else; what a pipe held is gone once read, so a step opening `/proc/<tini pid>/fd/N` (tini
 * keeps the descriptor) reads nothing.
 */
import { closeSync, readFileSync } from "node:fs";
import { ConfigError, type ConfigProblem } from "../agent-core/start.ts";
import { type LaunchEnv, SECRET_ENV } from "./launch-args.ts";

/** The variable naming the launch pipe's descriptor, set by images/entrypoint.sh. */
export const LAUNCH_FD_ENV = "AGENT_LAUNCH_FD";

/** Reads a descriptor to its end and closes it; throws when it cannot. */
export type ReadLaunchFd = (fd: number) => Buffer;

/** The real {@link ReadLaunchFd}: a blocking read to end of file, then close. */
export function readLaunchFd(fd: number): Buffer {
  try {
    return readFileSync(fd);
  } finally {
    try {
      closeSync(fd);
    } catch {
      // Already closed, or never open: the read has said why.
    }
  }
}

/** The launch the entrypoint parses: the arguments, and the environment with the moved variables. */
export interface Launch {
  argv: string[];
  env: Record<string, string | undefined>;
}

/**
 * The launch as given: `argv` and `env` as they are when `AGENT_LAUNCH_FD` is not set;
 * otherwise the pipe's arguments (which replace `argv`, then empty) and its variables (added to
 * `env`), with `AGENT_LAUNCH_FD` itself removed. Throws {@link ConfigError} (`AGENT_ERR_CONFIG`)
 * when the variable is not a descriptor, the pipe cannot be read, or what it holds is not
 * in the form above; the error never shows the pipe's content.
 *
 * @example
 * const { argv, env } = takeLaunch(process.argv.slice(2), process.env, readLaunchFd);
 */
export function takeLaunch(argv: readonly string[], env: LaunchEnv, read: ReadLaunchFd): Launch {
  const given = env[LAUNCH_FD_ENV];
  if (given === undefined) return { argv: [...argv], env: { ...env } };
  const { [LAUNCH_FD_ENV]: _fd, ...rest } = env;
  const problems: ConfigProblem[] = [];
  const fail = (message: string) =>
    new ConfigError(
      [{ field: LAUNCH_FD_ENV, message }],
      "Invalid launch (AGENT_LAUNCH_FD is set by the image's entrypoint, images/entrypoint.sh; unset it to pass arguments directly)",
    );
  if (!/^\d{1,9}$/.test(given) || Number(given) < 3) {
    throw fail(
      `Expected \`${LAUNCH_FD_ENV}\` to be an open file descriptor number of 3 or more, got ${JSON.stringify(given.slice(0, 40))}`,
    );
  }
  if (argv.length > 0) {
    throw fail(
      `Expected no arguments beside ${LAUNCH_FD_ENV} (they come through the pipe), got ${argv.length}`,
    );
  }
  let bytes: Buffer;
  try {
    bytes = read(Number(given));
  } catch (error) {
    throw fail(`Cannot read the launch pipe (descriptor ${given}): ${(error as Error).message}`);
  }
  const decoded = decodeLaunch(bytes, problems);
  if (decoded === undefined) throw new ConfigError(problems, "Invalid launch pipe (images/entrypoint.sh)");
  return { argv: decoded.argv, env: { ...rest, ...decoded.env } };
}

/** The pipe's records; undefined (with `problems` added) when they are not in the documented form. */
function decodeLaunch(
  bytes: Buffer,
  problems: ConfigProblem[],
): { argv: string[]; env: Record<string, string> } | undefined {
  const field = "launch pipe";
  if (bytes.length === 0 || bytes[bytes.length - 1] !== 0) {
    problems.push({
      field,
      message: `Expected NUL-terminated records (count, arguments, NAME=VALUE), got ${bytes.length === 0 ? "nothing" : `${bytes.length} bytes without a final NUL`}`,
    });
    return undefined;
  }
  const records = bytes.subarray(0, -1).toString("utf8").split("\0");
  const [count, ...rest] = records;
  if (count === undefined || !/^\d{1,7}$/.test(count) || Number(count) > rest.length) {
    problems.push({
      field,
      message: `Expected the argument count first (0 to ${rest.length}), got ${count === undefined ? "nothing" : JSON.stringify(count.slice(0, 12))}`,
    });
    return undefined;
  }
  const argv = rest.slice(0, Number(count));
  const env: Record<string, string> = {};
  for (const [i, record] of rest.slice(Number(count)).entries()) {
    const eq = record.indexOf("=");
    const name = eq === -1 ? undefined : record.slice(0, eq);
    // Only the variables that carry the secret are moved; the value (a secret) is never shown.
    if (name === undefined || !SECRET_ENV.has(name)) {
      problems.push({
        field,
        message: `Expected variable ${i + 1} after the arguments to be NAME=VALUE with NAME one of ${[...SECRET_ENV].join(", ")}, got ${name === undefined ? "no `=`" : `the name ${JSON.stringify(name.slice(0, 40))}`}`,
      });
      continue;
    }
    env[name] = record.slice(eq + 1);
  }
  return problems.length > 0 ? undefined : { argv, env };
}

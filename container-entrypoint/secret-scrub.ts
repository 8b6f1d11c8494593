/**
 * Keeps the agent's secret out of what steps can read about the agent process.
 *
 * Any process of the same user, a job's steps included, can read `/proc/<agent pid>/environ`
 * and `/proc/<agent pid>/cmdline`: the environment and arguments the process was started with,
 * read from the process's own memory. When the secret was given there (JENKINS_SECRET,
 * SLAVE_NODE_SECRET, `-secret S`, the positional SECRET), the entrypoint overwrites each copy in
 * place, once the launch is parsed and before any step runs: `*` of the same length, written
 * through `/proc/self/mem` (a process may always write its own memory). Node has copied its
 * arguments and reads the environment live, so nothing it still needs is lost.
 *
 * Re-executing without the secret would do the same, but Node 20 cannot replace its own process
 * image (`process.execve` came with Node 22.15), and a child process would leave the parent
 * holding the secret. What neither can reach: the copies of the processes above the agent (an
 * init such as tini, or ECS's `initProcessEnabled`, started with the container's arguments and
 * environment). The image's entrypoint keeps them out of those (images/entrypoint.sh, which
 * hands them over through a pipe: launch-pipe.ts); elsewhere every ancestor still holding one is
 * detected and reported, and the file forms (`-secret @FILE`, `JENKINS_SECRET=@FILE`) avoid it.
 */
import { closeSync, openSync, readFileSync, readSync, writeSync } from "node:fs";

/** What {@link scrubSecretsFromProc} did. */
export interface ScrubResult {
  /** Copies overwritten. */
  overwritten: number;
  /** Where a secret can still be read: `/proc/<pid>/environ` or `/proc/<pid>/cmdline` paths. */
  stillReadable: string[];
  /** Why the overwrite could not be done, when it could not. */
  error?: string;
}

/** Areas of this process's memory that `/proc/self/{cmdline,environ}` show: [start, end) addresses. */
function ownAreas(): { name: string; start: number; end: number }[] {
  const stat = readFileSync("/proc/self/stat", "utf8");
  // Fields after the command name (which may hold spaces); arg_start is field 48 (proc(5)).
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const field = (n: number) => Number(fields[n - 3]);
  return [
    { name: "cmdline", start: field(48), end: field(49) },
    { name: "environ", start: field(50), end: field(51) },
  ];
}

/**
 * Overwrites every copy of `secrets` in this process's original arguments and environment, then
 * checks `/proc/self/{cmdline,environ}` and those of every ancestor up to PID 1 (an init started
 * with the container's arguments and environment) for what is still readable. Linux only;
 * elsewhere, and when `/proc/self/mem` cannot be written, the result says so and nothing is
 * changed.
 *
 * @example
 * const result = scrubSecretsFromProc([config.secret]);
 * if (result.stillReadable.length > 0) logger.warn("the secret stays readable", { where: result.stillReadable });
 */
export function scrubSecretsFromProc(secrets: readonly string[]): ScrubResult {
  const needles = [...new Set(secrets)].filter((s) => s.length > 0).map((s) => Buffer.from(s, "utf8"));
  const result: ScrubResult = { overwritten: 0, stillReadable: [] };
  if (needles.length === 0) return result;
  let fd: number | undefined;
  try {
    fd = openSync("/proc/self/mem", "r+");
    for (const { start, end } of ownAreas()) {
      if (!(end > start)) continue;
      const area = Buffer.alloc(end - start);
      readSync(fd, area, 0, area.length, start);
      for (const needle of needles) {
        for (let at = area.indexOf(needle); at !== -1; at = area.indexOf(needle, at + needle.length)) {
          const stars = Buffer.alloc(needle.length, "*");
          // Only the secret's own bytes are written: nothing else in the area is touched.
          writeSync(fd, stars, 0, stars.length, start + at);
          stars.copy(area, at);
          result.overwritten++;
        }
      }
    }
  } catch (error) {
    result.error = (error as Error).message;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  for (const pid of [process.pid, ...ancestors()]) {
    for (const file of ["cmdline", "environ"]) {
      const path = `/proc/${pid}/${file}`;
      if (holdsAny(path, needles)) result.stillReadable.push(path);
    }
  }
  return result;
}

/** This process's parent, its parent, ... up to PID 1 (of this PID namespace), from `/proc/<pid>/stat`. */
function ancestors(): number[] {
  const found: number[] = [];
  for (let pid = process.ppid; pid > 0 && found.length < 64; ) {
    found.push(pid);
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
      break; // gone, or outside this PID namespace
    }
    // The fields after the command name (which may hold spaces and parentheses): state, ppid.
    pid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  }
  return found;
}

function holdsAny(path: string, needles: readonly Buffer[]): boolean {
  let content: Buffer;
  try {
    content = readFileSync(path);
  } catch {
    return false;
  }
  return needles.some((needle) => content.includes(needle));
}

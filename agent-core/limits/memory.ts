import { closeSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";

let pageSize: number | undefined;

/** The kernel's page size, derived once from our own RSS in bytes and in pages. */
function pageBytes(): number {
  if (pageSize === undefined) {
    const pages = Number(readFileSync("/proc/self/statm", "utf8").split(" ")[1]);
    const exact = process.memoryUsage.rss() / pages;
    pageSize = 2 ** Math.round(Math.log2(exact));
  }
  return pageSize;
}

/** One `/proc/<pid>/stat` (a few hundred bytes: the command name is at most 16), read into a reused buffer. */
const statBuffer = Buffer.alloc(4096);

/** The fields of `/proc/<pid>/stat` this module reads, or null when the process is gone. */
function readStat(pid: number): { pgrp: number; session: number; rssPages: number } | null {
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/stat`, "r");
  } catch {
    return null; // exited while we looked
  }
  let length: number;
  try {
    length = readSync(fd, statBuffer, 0, statBuffer.length, 0);
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
  const text = statBuffer.toString("latin1", 0, length);
  // Fields after the command name (which may contain spaces and parentheses): state ppid pgrp
  // session ... rss is the 22nd of them.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { pgrp: Number(fields[2]), session: Number(fields[3]), rssPages: Number(fields[21]) };
}

/**
 * Samples the resident set of every process in one process group (a step's), in bytes, from
 * /proc (Linux). Linux lists no process group's members, so the first sample reads
 * `/proc/<pid>/stat` of every process on the machine; later samples skip the processes already
 * seen in another session. A process never joins a group of another session (`setpgid` moves a
 * process within its session only, `setsid` only starts a new one), so those can never be
 * members: on a machine with hundreds of processes a sample then costs one directory listing
 * and a read per process of the step's own session. A pid that disappears from the listing is
 * forgotten, so that a new process given the same pid is looked at again (a pid reused between
 * two samples, which takes the whole pid space being cycled through in one interval, would be
 * missed: the peak is a diagnostic, never a limit).
 *
 * @example
 * const memory = new GroupRssSampler(child.pid);
 * setInterval(() => (peak = Math.max(peak, memory.sample() ?? 0)), 250);
 */
export class GroupRssSampler {
  readonly #pgid: number;
  /** The group's session, once a member was seen. */
  #session: number | undefined;
  /** Pids seen in another session than the group's. */
  #foreign = new Set<number>();

  constructor(pgid: number) {
    this.#pgid = pgid;
  }

  /** The group's resident set in bytes now, or null when /proc cannot be read here. */
  sample(): number | null {
    let names: string[];
    try {
      names = readdirSync("/proc");
    } catch {
      return null;
    }
    const foreign = new Set<number>();
    let pages = 0;
    for (const name of names) {
      const first = name.charCodeAt(0);
      if (first < 48 || first > 57) continue;
      const pid = Number(name);
      if (this.#foreign.has(pid)) {
        foreign.add(pid);
        continue;
      }
      const stat = readStat(pid);
      if (stat === null) continue;
      if (stat.pgrp === this.#pgid) this.#session ??= stat.session;
      // The leader counts by pid too: right after spawn it may not have called setsid yet.
      if (stat.pgrp === this.#pgid || pid === this.#pgid) pages += stat.rssPages;
      else if (this.#session !== undefined && stat.session !== this.#session) foreign.add(pid);
    }
    this.#foreign = foreign;
    return pages * pageBytes();
  }
}

/**
 * Resident set of every process in a process group, in bytes (Linux: from /proc), or null when
 * it cannot be measured here. One sample: costs one small read per process on the machine (a
 * {@link GroupRssSampler} kept between samples costs less).
 */
export function groupRssBytes(pgid: number): number | null {
  return new GroupRssSampler(pgid).sample();
}

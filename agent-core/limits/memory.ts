import { readdirSync, readFileSync } from "node:fs";

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

/**
 * Resident set of every process in a process group, in bytes (Linux: from /proc), or null when
 * it cannot be measured here. Costs one small read per process on the machine.
 */
export function groupRssBytes(pgid: number): number | null {
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((name) => name.charCodeAt(0) >= 48 && name.charCodeAt(0) <= 57);
  } catch {
    return null;
  }
  let pages = 0;
  for (const pid of pids) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
      continue; // exited while we looked
    }
    // Fields after the command name (which may contain spaces): state ppid pgrp ... rss is the 22nd.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // The leader counts by pid too: right after spawn it may not have called setsid yet.
    if (Number(fields[2]) === pgid || Number(pid) === pgid) pages += Number(fields[21]);
  }
  return pages * pageBytes();
}

import { statfsSync } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join, relative } from "node:path";
import { formatBytes } from "../format.ts";

/** Free and total bytes of the filesystem holding `path` (space available to unprivileged users). */
export function filesystemSpace(path: string): { freeBytes: number; totalBytes: number } {
  const stats = statfsSync(path);
  return { freeBytes: stats.bavail * stats.bsize, totalBytes: stats.blocks * stats.bsize };
}

/**
 * The bytes a job may use under the work dir: the configured limit or the filesystem's free
 * space less the headroom kept for the agent itself (logs, results), whichever is smaller.
 */
export function diskBudgetBytes(workDir: string, limitBytes: number | null, headroomBytes: number): number {
  const { freeBytes } = filesystemSpace(workDir);
  const available = Math.max(0, freeBytes - headroomBytes);
  return limitBytes === null ? available : Math.min(limitBytes, available);
}

export interface DiskExceeded {
  usedBytes: number;
  budgetBytes: number;
  freeBytes: number;
}

/**
 * Watches a job's use of the work dir's filesystem cheaply: one statfs call per check, the use
 * being the drop in free space since the job started. (A tree walk costs in proportion to the
 * number of files, so it is done once, for the report, when the budget is crossed.) Writes by
 * other processes to the same filesystem count too: on Lambda's /tmp and Fargate's ephemeral
 * storage the job is the only writer.
 */
export class DiskWatcher {
  readonly path: string;
  readonly budgetBytes: number;
  readonly #headroomBytes: number;
  readonly #freeAtStart: number;
  #peakUsedBytes = 0;
  readonly #ownBytes: () => number;

  /** `ownBytes`: what the agent itself keeps on that filesystem (the log spool), not counted against the job. */
  constructor(
    path: string,
    limitBytes: number | null,
    headroomBytes: number,
    ownBytes: () => number = () => 0,
  ) {
    this.path = path;
    this.#ownBytes = ownBytes;
    this.#headroomBytes = headroomBytes;
    this.#freeAtStart = filesystemSpace(path).freeBytes;
    this.budgetBytes = diskBudgetBytes(path, limitBytes, headroomBytes);
  }

  get peakUsedBytes(): number {
    return this.#peakUsedBytes;
  }

  /** Null while within budget; the figures once the job used more than its budget or the headroom is gone. */
  check(): DiskExceeded | null {
    const { freeBytes } = filesystemSpace(this.path);
    const usedBytes = Math.max(0, this.#freeAtStart - freeBytes - this.#ownBytes());
    this.#peakUsedBytes = Math.max(this.#peakUsedBytes, usedBytes);
    if (usedBytes > this.budgetBytes || freeBytes < this.#headroomBytes) {
      return { usedBytes, budgetBytes: this.budgetBytes, freeBytes };
    }
    return null;
  }
}

/** The largest directories under `root` (sizes include subdirectories), biggest first. */
export async function largestDirectories(
  root: string,
  limit = 5,
  maxEntries = 200_000,
): Promise<{ path: string; bytes: number }[]> {
  const sizes = new Map<string, number>();
  let seen = 0;
  const walk = async (dir: string): Promise<number> => {
    let total = 0;
    let entries: import("node:fs").Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return 0; // vanished or unreadable while we looked: it simply does not count
    }
    for (const entry of entries) {
      if (++seen > maxEntries) break;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) total += await walk(path);
      else {
        const stats = await lstat(path).catch(() => undefined);
        total += stats ? stats.blocks * 512 : 0;
      }
    }
    if (dir !== root) sizes.set(relative(root, dir), total);
    return total;
  };
  await walk(root);
  return [...sizes.entries()]
    .map(([path, bytes]) => ({ path, bytes }))
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, limit);
}

/** The plain-words explanation of a disk failure, naming the path, the figures and the biggest directories. */
export function diskMessage(
  path: string,
  exceeded: DiskExceeded,
  largest: { path: string; bytes: number }[],
): string {
  const dirs =
    largest.length > 0
      ? ` Largest directories in the workspace: ${largest.map((d) => `${d.path} (${formatBytes(d.bytes)})`).join(", ")}.`
      : "";
  return (
    `The job used ${formatBytes(exceeded.usedBytes)} on the filesystem of ${path}, over its disk budget of ${formatBytes(exceeded.budgetBytes)} ` +
    `(${formatBytes(exceeded.freeBytes)} left free); the step was stopped before the disk filled up.${dirs} ` +
    "To fix it: clean up inside the job, raise the budget (AGENT_DISK_BUDGET_BYTES, or Lambda's ephemeralStorageSize), or route the job to a container label with more storage."
  );
}

import { statfsSync, unlinkSync } from "node:fs";
import { lstat, open, readdir } from "node:fs/promises";
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

/** Free space under which a filesystem counts as full (a write of a usual block size fails). */
export const FULL_BYTES = 131_072;

/**
 * The write rate assumed unless a faster one is seen: 1 GB/s (what a tmpfs or an NVMe disk
 * takes), in bytes per millisecond. Near the margin the checks come every few milliseconds;
 * a statfs costs microseconds.
 */
const ASSUMED_RATE_BYTES_PER_MS = 1_000_000;

/** The shortest pause between two checks. */
const MIN_CHECK_MS = 2;

/**
 * Watches a job's use of the work dir's filesystem cheaply: one statfs call per check, the use
 * being the drop in free space since the job started. (A tree walk costs in proportion to the
 * number of files, so it is done once, for the report, when the budget is crossed.) Writes by
 * other processes to the same filesystem count too: on Lambda's /tmp and Fargate's ephemeral
 * storage the job is the only writer.
 *
 * The headroom is kept two ways. {@link reserveHeadroom} holds half of it in a file that only
 * the agent releases: a step writing faster than any sampling (a tmpfs takes gigabytes per
 * second) fills the disk up to that reserve at most, never into it. The other half is the
 * margin at which a step is stopped, and {@link nextCheckInMs} samples faster as the margin
 * nears, so that a step is stopped before the disk fills whenever the samples can catch it.
 * Whether the filesystem was seen full is kept ({@link filledUp}), so that the report never
 * claims a stop came in time when it did not.
 */
export class DiskWatcher {
  readonly path: string;
  readonly budgetBytes: number;
  readonly #headroomBytes: number;
  #freeAtStart: number;
  #peakUsedBytes = 0;
  #minFreeBytes: number;
  readonly #ownBytes: () => number;
  readonly #measure: () => number;
  #reserve: { file: string; bytes: number } | undefined;
  #last: { at: number; usedBytes: number; freeBytes: number } | undefined;
  #rateBytesPerMs = ASSUMED_RATE_BYTES_PER_MS;
  /** Bytes of reserve given back: free space the job did not make. */
  #released = 0;

  /**
   * `ownBytes`: what the agent itself keeps on that filesystem (the log spool), not counted
   * against the job. `measureFreeBytes` (tests) replaces statfs on `path`.
   */
  constructor(
    path: string,
    limitBytes: number | null,
    headroomBytes: number,
    ownBytes: () => number = () => 0,
    measureFreeBytes: () => number = () => filesystemSpace(path).freeBytes,
  ) {
    this.path = path;
    this.#ownBytes = ownBytes;
    this.#measure = measureFreeBytes;
    this.#headroomBytes = headroomBytes;
    this.#freeAtStart = measureFreeBytes();
    this.#minFreeBytes = this.#freeAtStart;
    const available = Math.max(0, this.#freeAtStart - headroomBytes);
    this.budgetBytes = limitBytes === null ? available : Math.min(limitBytes, available);
  }

  get peakUsedBytes(): number {
    return this.#peakUsedBytes;
  }

  /** Bytes held by the headroom reserve now (0 before {@link reserveHeadroom} or after release). */
  get reservedBytes(): number {
    return this.#reserve?.bytes ?? 0;
  }

  /** Whether a check saw the filesystem full (under {@link FULL_BYTES} free, the reserve aside). */
  get filledUp(): boolean {
    return this.#minFreeBytes < FULL_BYTES;
  }

  /** The least free space a check saw, the reserve aside. */
  get minFreeBytes(): number {
    return this.#minFreeBytes;
  }

  /**
   * Writes half the headroom into `file` (zeros, so that every block is allocated: a sparse
   * file holds nothing), up to what the filesystem has. Its bytes are not counted as the job's,
   * also while a step writes at the same time. Resolves with the bytes reserved; a failure to
   * write is not an error (less is reserved).
   */
  async reserveHeadroom(file: string): Promise<number> {
    if (this.#reserve !== undefined) return this.#reserve.bytes;
    const half = Math.floor(this.#headroomBytes / 2);
    const wanted = Math.max(0, Math.min(half, this.#freeAtStart - FULL_BYTES));
    let bytes = 0;
    let handle: Awaited<ReturnType<typeof open>> | undefined;
    try {
      handle = await open(file, "wx", 0o600);
      const block = Buffer.alloc(Math.min(1_048_576, Math.max(1, wanted)));
      while (bytes < wanted) {
        const { bytesWritten } = await handle.write(block, 0, Math.min(block.length, wanted - bytes));
        bytes += bytesWritten;
      }
      // No fsync: a filesystem counts written blocks as used at once (tmpfs allocates them,
      // ext4 and XFS reserve them for delayed allocation), which is all the reserve needs.
    } catch {
      // ENOSPC or a read-only filesystem: keep what was written.
    } finally {
      await handle?.close().catch(() => {});
    }
    if (handle !== undefined) this.#reserve = { file, bytes };
    this.#freeAtStart -= bytes;
    return bytes;
  }

  /** Gives the reserved headroom back to the filesystem (idempotent). */
  releaseHeadroom(): void {
    const reserve = this.#reserve;
    if (reserve === undefined) return;
    this.#reserve = undefined;
    try {
      unlinkSync(reserve.file);
      this.#released += reserve.bytes;
    } catch {
      // Already gone (removed with the work dir).
    }
  }

  /** Null while within budget; the figures once the job used more than its budget or the headroom is gone. */
  check(): DiskExceeded | null {
    const freeBytes = this.#measure();
    const usedBytes = Math.max(0, this.#freeAtStart - freeBytes - this.#ownBytes() + this.#released);
    const now = performance.now();
    if (this.#last !== undefined && now > this.#last.at) {
      const rate = (usedBytes - this.#last.usedBytes) / (now - this.#last.at);
      this.#rateBytesPerMs = Math.max(ASSUMED_RATE_BYTES_PER_MS, rate);
    }
    this.#last = { at: now, usedBytes, freeBytes };
    this.#peakUsedBytes = Math.max(this.#peakUsedBytes, usedBytes);
    this.#minFreeBytes = Math.min(this.#minFreeBytes, freeBytes);
    // The agent's own files (the spool) filling the disk are not the job's doing: its own use
    // and the headroom decide.
    if (usedBytes > this.budgetBytes || freeBytes + this.reservedBytes < this.#headroomBytes) {
      return { usedBytes, budgetBytes: this.budgetBytes, freeBytes };
    }
    return null;
  }

  /**
   * How long to wait before the next {@link check}: the time the budget (or the margin) left
   * would last at twice the write rate last seen (at least 1 GB/s), between 2 ms and `maxMs`.
   * A 48 MiB budget is checked after 25 ms, then ever more often as it runs out; a 10 GB one
   * every `maxMs`.
   */
  nextCheckInMs(maxMs: number): number {
    const last = this.#last;
    if (last === undefined) return Math.min(maxMs, MIN_CHECK_MS);
    const leftBytes = Math.min(
      this.budgetBytes - last.usedBytes,
      last.freeBytes + this.reservedBytes - this.#headroomBytes,
    );
    const ms = leftBytes / (2 * this.#rateBytesPerMs);
    return Math.max(MIN_CHECK_MS, Math.min(maxMs, Math.floor(ms)));
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

/**
 * The plain-words explanation of a disk failure: the path, the figures, the biggest
 * directories, and what happened to the filesystem. It says the filesystem filled up when a
 * check saw it full (so writes failed with ENOSPC), and otherwise only what was seen.
 */
export function diskMessage(
  path: string,
  exceeded: DiskExceeded,
  largest: { path: string; bytes: number }[],
  seen: { filledUp: boolean; minFreeBytes: number } = { filledUp: false, minFreeBytes: exceeded.freeBytes },
): string {
  const dirs =
    largest.length > 0
      ? ` Largest directories in the workspace: ${largest.map((d) => `${d.path} (${formatBytes(d.bytes)})`).join(", ")}.`
      : "";
  const what = seen.filledUp
    ? 'The filesystem filled up before the step could be stopped: its writes failed with "No space left on device" (the headroom the agent reserved kept room for its own files).'
    : `The step was stopped with ${formatBytes(seen.minFreeBytes)} still free (the least seen while it ran).`;
  return (
    `The job used ${formatBytes(exceeded.usedBytes)} on the filesystem of ${path}, over its disk budget of ${formatBytes(exceeded.budgetBytes)} ` +
    `(${formatBytes(exceeded.freeBytes)} left free). ${what}${dirs} ` +
    "To fix it: clean up inside the job, raise the budget (AGENT_DISK_BUDGET_BYTES, or Lambda's ephemeralStorageSize), or route the job to a container label with more storage."
  );
}

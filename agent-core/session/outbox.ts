import { closeSync, fstatSync, ftruncateSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { AgentIoError } from "../errors.ts";

/** One spool file: spilled entries are appended; it is removed once every entry in it is acknowledged. */
interface Segment {
  path: string;
  fd: number;
  /** Bytes written (the next entry's offset). */
  end: number;
  /** Bytes of entries not acknowledged yet. */
  liveBytes: number;
}

/** One sequenced message kept until the controller acknowledges it. */
interface Entry {
  seq: number;
  binary: boolean;
  length: number;
  /** In memory, or (when spilled) where it is in the spool. */
  payload?: Buffer;
  segment?: Segment;
  offset?: number;
}

export interface OutboxOptions {
  /** Unacknowledged bytes kept in memory; beyond this they spill to the spool. */
  maxMemoryBytes: number;
  /** Unacknowledged bytes the spool may hold; beyond memory + spool, `hasRoom` turns false (backpressure). */
  maxSpoolBytes: number;
  /** Where the spool files go: `<spoolDir>/<spoolName>.<n>.bin` (mode 0600), created on first spill. */
  spoolDir: string;
  spoolName: string;
  /** A spool file takes appends up to this size, then the next one starts (default: a quarter of the spool, at least 64 KiB). */
  spoolSegmentBytes?: number;
  /**
   * Called once when the spool cannot be written, read or truncated (ENOSPC, EIO...). From then on
   * nothing spills: what is held stays in memory, and the room is the memory window alone.
   */
  onSpoolError?: (error: AgentIoError) => void;
}

/**
 * The job's outgoing messages that the controller has not acknowledged yet, in seq order. They
 * outlive any one connection: after a reconnect they are sent again from the first one the
 * controller lacks. Memory is bounded: past `maxMemoryBytes` entries spill to spool files; past
 * the spool's size the producer is told to pause (`hasRoom`), so nothing is ever dropped.
 *
 * The spool is a chain of files. Entries are acknowledged in order, so only the oldest file can
 * hold acknowledged bytes; a file is removed once all of its entries are acknowledged. The disk
 * the spool takes is therefore at most its unacknowledged bytes plus one file.
 */
export class Outbox {
  readonly #options: OutboxOptions;
  readonly #segmentBytes: number;
  readonly #entries: Entry[] = [];
  #head = 0;
  #seq = 0;
  #acked = 0;
  #memoryBytes = 0;
  #spoolBytes = 0;
  readonly #segments: Segment[] = [];
  #segmentCount = 0;
  #spoolError: AgentIoError | undefined;

  constructor(options: OutboxOptions) {
    this.#options = options;
    this.#segmentBytes = options.spoolSegmentBytes ?? Math.max(65_536, Math.floor(options.maxSpoolBytes / 4));
  }

  /** The last seq handed out. */
  get seq(): number {
    return this.#seq;
  }

  get acked(): number {
    return this.#acked;
  }

  get memoryBytes(): number {
    return this.#memoryBytes;
  }

  /** Unacknowledged bytes in the spool. */
  get spoolBytes(): number {
    return this.#spoolBytes;
  }

  /**
   * Bytes the spool files take on disk now (allocated blocks), acknowledged-but-not-yet-removed
   * bytes included: what the agent itself uses on the work dir's filesystem, not the job.
   */
  get spoolDiskBytes(): number {
    let total = 0;
    for (const segment of this.#segments) {
      try {
        total += fstatSync(segment.fd).blocks * 512;
      } catch {
        total += segment.end;
      }
    }
    return total;
  }

  /** Set once the spool failed: nothing spills after it. */
  get spoolError(): AgentIoError | undefined {
    return this.#spoolError;
  }

  get pending(): number {
    return this.#entries.length - this.#head;
  }

  /** False when memory and spool are full: the producer should pause until {@link hasHalfRoom}. */
  get hasRoom(): boolean {
    return this.#memoryBytes + this.#spoolBytes < this.#capacity();
  }

  /** True once at most half the window is used (the point where a paused producer resumes). */
  get hasHalfRoom(): boolean {
    return this.#memoryBytes + this.#spoolBytes <= this.#capacity() / 2;
  }

  /** The next seq, to be encoded into the message passed to `push`. */
  nextSeq(): number {
    return ++this.#seq;
  }

  push(seq: number, payload: Buffer, binary: boolean): void {
    const entry: Entry = { seq, binary, length: payload.length };
    if (
      this.#memoryBytes + payload.length <= this.#options.maxMemoryBytes ||
      this.#spoolError !== undefined ||
      !this.#spill(entry, payload)
    ) {
      entry.payload = payload;
      this.#memoryBytes += payload.length;
    }
    this.#entries.push(entry);
  }

  /** Drops everything up to `seq`. Returns false when `seq` is beyond what was sent (a protocol error). */
  ack(seq: number): boolean {
    if (seq > this.#seq) return false;
    if (seq <= this.#acked) return true;
    this.#acked = seq;
    while (this.#head < this.#entries.length && this.#entries[this.#head]!.seq <= seq) {
      const entry = this.#entries[this.#head++]!;
      if (entry.payload !== undefined) this.#memoryBytes -= entry.length;
      else this.#released(entry);
    }
    if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries.splice(0, this.#head);
      this.#head = 0;
    }
    return true;
  }

  /**
   * The message right after `seq` (read back from the spool if it was spilled), or undefined when
   * nothing was pushed after it. Seqs are contiguous, so this is an index, not a search.
   *
   * @throws {@link AgentIoError} when a spilled message cannot be read back.
   */
  after(seq: number): { seq: number; payload: Buffer; binary: boolean } | undefined {
    const first = this.#entries[this.#head];
    if (first === undefined) return undefined;
    const index = this.#head + Math.max(0, seq + 1 - first.seq);
    const entry = this.#entries[index];
    if (entry === undefined) return undefined;
    return { seq: entry.seq, payload: this.#payloadOf(entry), binary: entry.binary };
  }

  /** Removes the spool files. */
  close(): void {
    for (const segment of this.#segments.splice(0)) this.#remove(segment);
  }

  #capacity(): number {
    return this.#options.maxMemoryBytes + (this.#spoolError === undefined ? this.#options.maxSpoolBytes : 0);
  }

  /** Appends the entry to the current spool file (a new one when it is full). False when the spool failed. */
  #spill(entry: Entry, payload: Buffer): boolean {
    let segment = this.#segments.at(-1);
    try {
      if (segment === undefined || (segment.end > 0 && segment.end + payload.length > this.#segmentBytes)) {
        const path = join(this.#options.spoolDir, `${this.#options.spoolName}.${++this.#segmentCount}.bin`);
        segment = { path, fd: openSync(path, "w+", 0o600), end: 0, liveBytes: 0 };
        this.#segments.push(segment);
      }
      let written = 0;
      while (written < payload.length) {
        written += writeSync(segment.fd, payload, written, payload.length - written, segment.end + written);
      }
    } catch (error) {
      this.#fail("write", segment?.path ?? this.#options.spoolDir, error);
      return false;
    }
    entry.segment = segment;
    entry.offset = segment.end;
    segment.end += payload.length;
    segment.liveBytes += payload.length;
    this.#spoolBytes += payload.length;
    return true;
  }

  /** A spilled entry was acknowledged: a spool file left with nothing to send is removed (or emptied). */
  #released(entry: Entry): void {
    const segment = entry.segment!;
    segment.liveBytes -= entry.length;
    this.#spoolBytes -= entry.length;
    if (segment.liveBytes > 0) return;
    if (segment !== this.#segments.at(-1)) {
      this.#segments.splice(this.#segments.indexOf(segment), 1);
      this.#remove(segment);
      return;
    }
    try {
      ftruncateSync(segment.fd, 0);
      segment.end = 0;
    } catch (error) {
      this.#fail("truncate", segment.path, error);
    }
  }

  #payloadOf(entry: Entry): Buffer {
    if (entry.payload !== undefined) return entry.payload;
    const payload = Buffer.allocUnsafe(entry.length);
    const segment = entry.segment!;
    try {
      let read = 0;
      while (read < entry.length) {
        const n = readSync(segment.fd, payload, read, entry.length - read, entry.offset! + read);
        if (n === 0) throw new Error(`the file ends at ${entry.offset! + read} bytes`);
        read += n;
      }
    } catch (error) {
      throw this.#fail("read", segment.path, error);
    }
    return payload;
  }

  #remove(segment: Segment): void {
    try {
      closeSync(segment.fd);
    } catch {
      // Already closed: nothing more to release.
    }
    try {
      rmSync(segment.path, { force: true });
    } catch {
      // Left behind: the work dir's cleanup removes it.
    }
  }

  #fail(operation: "write" | "read" | "truncate", path: string, cause: unknown): AgentIoError {
    const error = new AgentIoError(
      `cannot ${operation} the output spool ${path}: ${(cause as Error).message}`,
      (cause as NodeJS.ErrnoException).code,
      { cause },
    );
    if (this.#spoolError === undefined) {
      this.#spoolError = error;
      this.#options.onSpoolError?.(error);
    }
    return error;
  }
}

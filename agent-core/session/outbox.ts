import { closeSync, ftruncateSync, openSync, readSync, rmSync, writeSync } from "node:fs";

/** One sequenced message kept until the controller acknowledges it. */
interface Entry {
  seq: number;
  binary: boolean;
  length: number;
  /** In memory, or (when spilled) its offset in the spool file. */
  payload?: Buffer;
  spoolOffset?: number;
}

export interface OutboxOptions {
  /** Unacknowledged bytes kept in memory; beyond this they spill to the spool file. */
  maxMemoryBytes: number;
  /** Bytes the spool file may hold; beyond memory + spool, `hasRoom` turns false (backpressure). */
  maxSpoolBytes: number;
  /** The spool file (created on first spill, removed by `close`). */
  spoolPath: string;
}

/**
 * The job's outgoing messages that the controller has not acknowledged yet, in seq order. They
 * outlive any one connection: after a reconnect they are sent again from the first one the
 * controller lacks. Memory is bounded: past `maxMemoryBytes` entries spill to a file; past the
 * spool's size the producer is told to pause (`hasRoom`), so nothing is ever dropped.
 */
export class Outbox {
  readonly #options: OutboxOptions;
  readonly #entries: Entry[] = [];
  #head = 0;
  #seq = 0;
  #acked = 0;
  #memoryBytes = 0;
  #spoolBytes = 0;
  #spoolEnd = 0;
  #spoolFd: number | undefined;
  readonly #roomWaiters: (() => void)[] = [];
  readonly #ackWaiters: { seq: number; resolve: (ok: boolean) => void }[] = [];

  constructor(options: OutboxOptions) {
    this.#options = options;
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

  get spoolBytes(): number {
    return this.#spoolBytes;
  }

  get pending(): number {
    return this.#entries.length - this.#head;
  }

  get hasRoom(): boolean {
    return this.#memoryBytes + this.#spoolBytes < this.#options.maxMemoryBytes + this.#options.maxSpoolBytes;
  }

  /** Resolves once half the window is free again (or `release` was called). */
  waitForRoom(): Promise<void> {
    if (this.#hasHalfRoom()) return Promise.resolve();
    return new Promise((resolve) => this.#roomWaiters.push(resolve));
  }

  /** The next seq, to be encoded into the message passed to `push`. */
  nextSeq(): number {
    return ++this.#seq;
  }

  push(seq: number, payload: Buffer, binary: boolean): void {
    const entry: Entry = { seq, binary, length: payload.length };
    if (this.#memoryBytes + payload.length <= this.#options.maxMemoryBytes) {
      entry.payload = payload;
      this.#memoryBytes += payload.length;
    } else {
      this.#spoolFd ??= openSync(this.#options.spoolPath, "w+", 0o600);
      entry.spoolOffset = this.#spoolEnd;
      let written = 0;
      while (written < payload.length)
        written += writeSync(
          this.#spoolFd,
          payload,
          written,
          payload.length - written,
          this.#spoolEnd + written,
        );
      this.#spoolEnd += payload.length;
      this.#spoolBytes += payload.length;
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
      if (entry.payload) this.#memoryBytes -= entry.length;
      else this.#spoolBytes -= entry.length;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries.splice(0, this.#head);
      this.#head = 0;
    }
    if (this.#spoolBytes === 0 && this.#spoolEnd > 0 && this.#spoolFd !== undefined) {
      ftruncateSync(this.#spoolFd, 0);
      this.#spoolEnd = 0;
    }
    for (let i = this.#ackWaiters.length - 1; i >= 0; i--) {
      const waiter = this.#ackWaiters[i]!;
      if (waiter.seq <= seq) {
        this.#ackWaiters.splice(i, 1);
        waiter.resolve(true);
      }
    }
    if (this.#hasHalfRoom()) for (const waiter of this.#roomWaiters.splice(0)) waiter();
    return true;
  }

  /**
   * The message right after `seq` (read back from the spool if it was spilled), or undefined when
   * nothing was pushed after it. Seqs are contiguous, so this is an index, not a search.
   */
  after(seq: number): { seq: number; payload: Buffer; binary: boolean } | undefined {
    const first = this.#entries[this.#head];
    if (first === undefined) return undefined;
    const index = this.#head + Math.max(0, seq + 1 - first.seq);
    const entry = this.#entries[index];
    if (entry === undefined) return undefined;
    return { seq: entry.seq, payload: this.#payloadOf(entry), binary: entry.binary };
  }

  #payloadOf(entry: Entry): Buffer {
    if (entry.payload !== undefined) return entry.payload;
    const payload = Buffer.allocUnsafe(entry.length);
    readSync(this.#spoolFd!, payload, 0, entry.length, entry.spoolOffset!);
    return payload;
  }

  /** Resolves true once `seq` is acknowledged, false after `timeoutMs` or `release`. */
  waitForAck(seq: number, timeoutMs: number): Promise<boolean> {
    if (this.#acked >= seq) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = {
        seq,
        resolve: (ok: boolean) => {
          clearTimeout(timer);
          resolve(ok);
        },
      };
      const timer = setTimeout(() => {
        const index = this.#ackWaiters.indexOf(waiter);
        if (index >= 0) this.#ackWaiters.splice(index, 1);
        resolve(false);
      }, timeoutMs);
      timer.unref();
      this.#ackWaiters.push(waiter);
    });
  }

  /** Wakes every waiter (the job is ending without its controller). */
  release(): void {
    for (const waiter of this.#roomWaiters.splice(0)) waiter();
    for (const waiter of this.#ackWaiters.splice(0)) waiter.resolve(false);
  }

  /** Releases waiters and removes the spool file. */
  close(): void {
    this.release();
    if (this.#spoolFd !== undefined) {
      closeSync(this.#spoolFd);
      this.#spoolFd = undefined;
      rmSync(this.#options.spoolPath, { force: true });
    }
  }

  #hasHalfRoom(): boolean {
    return (
      this.#memoryBytes + this.#spoolBytes <= (this.#options.maxMemoryBytes + this.#options.maxSpoolBytes) / 2
    );
  }
}

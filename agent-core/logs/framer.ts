import type { OutputStream } from "../protocol/frames.ts";
import { incompleteTailLength, safeCut } from "./utf8.ts";

export interface FramedOutput {
  stream: OutputStream;
  /** Offset of the first byte of `data` within its stream. */
  offset: number;
  data: Buffer;
}

export interface FramerOptions {
  /** Largest `data` in one frame. */
  maxBytes: number;
  /** A frame is sent at most this long after its first byte arrived. */
  flushMs: number;
  /**
   * Memory for a frame assembled from several chunks (default `Buffer.allocUnsafe`): the sink may
   * give buffers with room for its own header (`outputFrameData`), so that the bytes are copied
   * once on their way out. It returns exactly `length` bytes, all of which the framer fills.
   */
  allocate?: (length: number) => Buffer;
  emit: (frame: FramedOutput) => void;
}

/**
 * Packs a step's stdout and stderr into frames: many small writes share one frame, a frame is
 * sent when it is full or `flushMs` after its first byte, and switching stream flushes first so
 * that the order the agent saw is the order the controller stores. Frames end on character
 * boundaries; an incomplete trailing character waits for the next chunk of its stream.
 */
export class OutputFramer {
  readonly #options: FramerOptions;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #pendingStream: OutputStream = "stdout";
  #timer: NodeJS.Timeout | undefined;
  readonly #carry: Record<OutputStream, Buffer | undefined> = { stdout: undefined, stderr: undefined };
  readonly #offsets: Record<OutputStream, number> = { stdout: 0, stderr: 0 };

  constructor(options: FramerOptions) {
    this.#options = options;
  }

  /** Bytes emitted so far per stream. */
  get bytes(): Readonly<Record<OutputStream, number>> {
    return this.#offsets;
  }

  write(stream: OutputStream, chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (stream !== this.#pendingStream && this.#pendingBytes > 0) this.#flushPending(false);
    this.#pendingStream = stream;
    const carry = this.#carry[stream];
    if (carry !== undefined) {
      this.#carry[stream] = undefined;
      this.#push(carry);
    }
    this.#push(chunk);
    if (this.#pendingBytes >= this.#options.maxBytes) this.#flushFull();
    if (this.#pendingBytes > 0 && this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#flushPending(false);
      }, this.#options.flushMs);
      this.#timer.unref();
    }
  }

  /** Sends everything held, including incomplete characters (the stream has ended). */
  end(): void {
    this.#flushPending(true);
    for (const stream of ["stdout", "stderr"] as const) {
      const carry = this.#carry[stream];
      if (carry !== undefined) {
        this.#carry[stream] = undefined;
        this.#send(stream, carry);
      }
    }
  }

  #push(chunk: Buffer): void {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
  }

  #take(): Buffer {
    const all = this.#pending.length === 1 ? this.#pending[0]! : this.#join();
    this.#pending = [];
    this.#pendingBytes = 0;
    return all;
  }

  /** The pending chunks in one buffer from `allocate` (Buffer.concat's copy, into the sink's memory). */
  #join(): Buffer {
    const { allocate } = this.#options;
    if (allocate === undefined) return Buffer.concat(this.#pending, this.#pendingBytes);
    const all = allocate(this.#pendingBytes);
    let at = 0;
    for (const chunk of this.#pending) at += chunk.copy(all, at);
    return all;
  }

  /** Sends whole frames while at least `maxBytes` are pending; keeps the remainder pending. */
  #flushFull(): void {
    const { maxBytes } = this.#options;
    let all = this.#take();
    while (all.length >= maxBytes) {
      const cut = safeCut(all, maxBytes);
      this.#send(this.#pendingStream, all.subarray(0, cut));
      all = all.subarray(cut);
    }
    if (all.length > 0) this.#push(Buffer.from(all));
  }

  #flushPending(final: boolean): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#pendingBytes === 0) return;
    let all = this.#take();
    if (!final) {
      const tail = incompleteTailLength(all);
      if (tail > 0) {
        this.#carry[this.#pendingStream] = Buffer.from(all.subarray(all.length - tail));
        all = all.subarray(0, all.length - tail);
      }
    }
    if (all.length > 0) this.#send(this.#pendingStream, all);
  }

  #send(stream: OutputStream, data: Buffer): void {
    const offset = this.#offsets[stream];
    this.#offsets[stream] += data.length;
    this.#options.emit({ stream, offset, data });
  }
}

import { ProtocolError } from "../errors.ts";
import { CloseCode } from "../protocol/close-codes.ts";

export interface WorkspaceDownloadOptions {
  /** Length of the archive (`job.workspace.bytes`). */
  bytes: number;
  /** Bytes asked for per request; at most two requests are outstanding, so this bounds memory. */
  windowBytes: number;
  /**
   * Sends one `workspace-pull` for `[offset, offset + length)`. When the connection is down the
   * request is simply lost: {@link WorkspaceDownload.resumed} asks again for what is missing.
   */
  pull: (offset: number, length: number) => void;
}

/**
 * The agent's side of a workspace seed: pulls the controller's archive window by window and
 * yields its bytes in order, as an async iterable to hand to `extractArchive`. Flow control is
 * by credit: the agent asks for the next window only once the consumer took the one before the
 * last, so at most two windows are ever buffered, however slow the extraction. Every byte is
 * asked for by offset, so a dropped connection loses nothing: after the resume the download asks
 * again from the first byte it lacks, and drops the duplicates a late frame may bring.
 */
export class WorkspaceDownload implements AsyncIterable<Buffer> {
  readonly #options: WorkspaceDownloadOptions;
  /** Bytes received in order so far (the first byte still missing). */
  #received = 0;
  /** End of the bytes asked for. */
  #requested = 0;
  /** Bytes the consumer took. */
  #consumed = 0;
  readonly #queue: Buffer[] = [];
  #failure: unknown;
  #wake: (() => void) | undefined;

  constructor(options: WorkspaceDownloadOptions) {
    if (!Number.isSafeInteger(options.windowBytes) || options.windowBytes < 1) {
      throw new RangeError(
        `Expected \`windowBytes\` to be a positive integer, got \`${options.windowBytes}\``,
      );
    }
    this.#options = options;
  }

  get receivedBytes(): number {
    return this.#received;
  }

  /** Starts the download (the first two requests). */
  start(): void {
    this.#topUp();
  }

  /**
   * A `workspace` frame arrived. Bytes already received are dropped (a duplicate after a resume);
   * a frame that skips bytes, or brings bytes never asked for, is a ProtocolError (4003) that the
   * caller turns into a close.
   */
  receive(offset: number, data: Buffer): void {
    if (this.#failure !== undefined) return;
    const end = offset + data.length;
    if (end <= this.#received) return;
    if (offset > this.#received) {
      throw new ProtocolError(
        CloseCode.outOfOrder,
        `the controller sent workspace bytes from offset ${offset}, but the agent lacks bytes from ${this.#received}`,
      );
    }
    if (end > this.#requested) {
      throw new ProtocolError(
        CloseCode.outOfOrder,
        `the controller sent workspace bytes up to ${end}, but the agent asked only up to ${this.#requested}`,
      );
    }
    this.#queue.push(data.subarray(this.#received - offset));
    this.#received = end;
    this.#notify();
  }

  /** The session was resumed: what was asked for but not received is asked for again. */
  resumed(): void {
    this.#requested = this.#received;
    this.#topUp();
  }

  /** Ends the download: the consumer's next read rejects with `error`. */
  fail(error: unknown): void {
    this.#failure ??= error;
    this.#notify();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    for (;;) {
      const chunk = this.#queue.shift();
      if (chunk !== undefined) {
        this.#consumed += chunk.length;
        this.#topUp();
        yield chunk;
        continue;
      }
      if (this.#failure !== undefined) throw this.#failure;
      if (this.#consumed >= this.#options.bytes) return;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  /** Keeps two windows asked for ahead of what the consumer took. */
  #topUp(): void {
    const { bytes, windowBytes, pull } = this.#options;
    while (
      this.#failure === undefined &&
      this.#requested < bytes &&
      this.#requested < this.#consumed + 2 * windowBytes
    ) {
      const length = Math.min(windowBytes, bytes - this.#requested);
      pull(this.#requested, length);
      this.#requested += length;
    }
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

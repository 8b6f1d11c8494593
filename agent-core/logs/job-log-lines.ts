import { StringDecoder } from "node:string_decoder";
import type { OutputStream } from "../protocol/frames.ts";
import { MAX_EVENT_MESSAGE_BYTES } from "./cloudwatch/batcher.ts";

/** Where text lines of the job log go (the CloudWatch sink, or anything with `write`). */
export interface LineWriter {
  write(line: string, timestamp?: number): void;
}

/** A line being assembled: its pieces (joined only when cut or ended) and its UTF-8 size. */
interface Partial {
  pieces: string[];
  bytes: number;
}

const empty = (): Partial => ({ pieces: [], bytes: 0 });

/**
 * Turns a job's (already masked) output into whole text lines with step headers and footers,
 * for line-oriented log services. Each stream is decoded on its own, so multibyte characters
 * split across frames survive; a partial line waits for its end (or the step's end).
 *
 * A line longer than `maxLineBytes` (default: the largest CloudWatch event message) is cut
 * between characters as its bytes arrive, each piece written as a line of its own: a 48 MiB
 * line without a newline costs a bounded buffer and linear time, not a copy and a re-split of
 * the whole partial line on every frame.
 */
export class JobLogLines {
  readonly #out: LineWriter;
  readonly #maxLineBytes: number;
  #decoders = this.#freshDecoders();
  #partial: Record<OutputStream, Partial> = { stdout: empty(), stderr: empty() };

  constructor(out: LineWriter, options: { maxLineBytes?: number } = {}) {
    this.#out = out;
    this.#maxLineBytes = options.maxLineBytes ?? MAX_EVENT_MESSAGE_BYTES;
    if (!Number.isSafeInteger(this.#maxLineBytes) || this.#maxLineBytes < 4) {
      throw new RangeError(
        `Expected the \`maxLineBytes\` option to be an integer >= 4, got \`${String(options.maxLineBytes)}\` (${typeof options.maxLineBytes})`,
      );
    }
  }

  /** UTF-8 bytes held for `stream`'s unfinished line (never more than `maxLineBytes`). */
  pendingBytes(stream: OutputStream): number {
    return this.#partial[stream].bytes;
  }

  line(text: string): void {
    this.#out.write(text);
  }

  stepStart(header: string): void {
    this.#decoders = this.#freshDecoders();
    this.#partial = { stdout: empty(), stderr: empty() };
    this.#out.write(header);
  }

  output(stream: OutputStream, data: Buffer): void {
    const text = this.#decoders[stream].write(data);
    let start = 0;
    for (let end = text.indexOf("\n"); end !== -1; end = text.indexOf("\n", start)) {
      this.#append(stream, text.slice(start, end));
      this.#finishLine(stream);
      start = end + 1;
    }
    this.#append(stream, text.slice(start));
  }

  stepEnd(footer: string): void {
    for (const stream of ["stdout", "stderr"] as const) {
      this.#append(stream, this.#decoders[stream].end());
      if (this.#partial[stream].bytes > 0) this.#finishLine(stream);
    }
    this.#out.write(footer);
  }

  /** Adds `text` to the stream's unfinished line, writing out every full piece of it. */
  #append(stream: OutputStream, text: string): void {
    if (text === "") return;
    const partial = this.#partial[stream];
    partial.pieces.push(text);
    partial.bytes += Buffer.byteLength(text, "utf8");
    if (partial.bytes <= this.#maxLineBytes) return;
    // Cut by bytes (natively), never inside a UTF-8 sequence: a cut steps back over
    // continuation bytes (10xxxxxx) to the start of its character.
    const bytes = Buffer.from(partial.pieces.join(""), "utf8");
    let start = 0;
    while (bytes.length - start > this.#maxLineBytes) {
      let cut = start + this.#maxLineBytes;
      while (cut > start && (bytes[cut]! & 0xc0) === 0x80) cut--;
      this.#out.write(bytes.toString("utf8", start, cut));
      start = cut;
    }
    const rest = bytes.toString("utf8", start);
    this.#partial[stream] = { pieces: [rest], bytes: bytes.length - start };
  }

  #finishLine(stream: OutputStream): void {
    this.#out.write(this.#partial[stream].pieces.join(""));
    this.#partial[stream] = empty();
  }

  #freshDecoders(): Record<OutputStream, StringDecoder> {
    return { stdout: new StringDecoder("utf8"), stderr: new StringDecoder("utf8") };
  }
}

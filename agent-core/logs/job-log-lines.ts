import { StringDecoder } from "node:string_decoder";
import type { OutputStream } from "../protocol/frames.ts";

/** Where text lines of the job log go (the CloudWatch sink, or anything with `write`). */
export interface LineWriter {
  write(line: string, timestamp?: number): void;
}

/**
 * Turns a job's (already masked) output into whole text lines with step headers and footers,
 * for line-oriented log services. Each stream is decoded on its own, so multibyte characters
 * split across frames survive, and a partial line waits for its end (or the step's end).
 */
export class JobLogLines {
  readonly #out: LineWriter;
  #decoders = this.#freshDecoders();
  #partial: Record<OutputStream, string> = { stdout: "", stderr: "" };

  constructor(out: LineWriter) {
    this.#out = out;
  }

  line(text: string): void {
    this.#out.write(text);
  }

  stepStart(header: string): void {
    this.#decoders = this.#freshDecoders();
    this.#partial = { stdout: "", stderr: "" };
    this.#out.write(header);
  }

  output(stream: OutputStream, data: Buffer): void {
    const text = this.#partial[stream] + this.#decoders[stream].write(data);
    const lines = text.split("\n");
    this.#partial[stream] = lines.pop() ?? "";
    for (const line of lines) this.#out.write(line);
  }

  stepEnd(footer: string): void {
    for (const stream of ["stdout", "stderr"] as const) {
      const rest = this.#partial[stream] + this.#decoders[stream].end();
      if (rest !== "") this.#out.write(rest);
    }
    this.#partial = { stdout: "", stderr: "" };
    this.#out.write(footer);
  }

  #freshDecoders(): Record<OutputStream, StringDecoder> {
    return { stdout: new StringDecoder("utf8"), stderr: new StringDecoder("utf8") };
  }
}

import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { OutputFramer } from "../../agent-core/index.ts";
import { prng } from "../support/prng.ts";

type Stream = "stdout" | "stderr";
interface Frame {
  stream: Stream;
  offset: number;
  data: Buffer;
}

function framer(maxBytes: number, flushMs = 10) {
  const frames: Frame[] = [];
  const f = new OutputFramer({
    maxBytes,
    flushMs,
    emit: (frame) =>
      frames.push({ stream: frame.stream, offset: frame.offset, data: Buffer.from(frame.data) }),
  });
  return { f, frames };
}

const of = (frames: Frame[], stream: Stream) => frames.filter((fr) => fr.stream === stream);
const joined = (frames: Frame[], stream: Stream) => Buffer.concat(of(frames, stream).map((fr) => fr.data));
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** Throws unless every frame of `stream` starts at the byte where the previous one ended. */
function expectContiguous(frames: Frame[], stream: Stream): void {
  let next = 0;
  for (const fr of of(frames, stream)) {
    expect(fr.offset).toBe(next);
    next += fr.data.length;
  }
}

// 1-, 2-, 3- and 4-byte characters.
const ALPHABET = ["a", "Z", "\n", "é", "ß", "€", "中", "😀", "𝄞"];

function randomText(rand: (n: number) => number, chars: number): string {
  let out = "";
  for (let i = 0; i < chars; i++) out += ALPHABET[rand(ALPHABET.length)];
  return out;
}

/** Splits `buf` at random byte positions (ignoring character boundaries) into chunks of 1..maxChunk bytes. */
function randomSplit(rand: (n: number) => number, buf: Buffer, maxChunk: number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0; at < buf.length; ) {
    const size = 1 + rand(maxChunk);
    chunks.push(buf.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

describe("OutputFramer", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("packs many small writes into one frame sent flushMs after the first byte", () => {
    const { f, frames } = framer(1024, 10);
    for (const part of ["a", "bc", "def", "g\n"]) f.write("stdout", Buffer.from(part));
    expect(frames).toHaveLength(0);
    vi.advanceTimersByTime(9);
    expect(frames).toHaveLength(0);
    vi.advanceTimersByTime(1);
    expect(frames).toEqual([{ stream: "stdout", offset: 0, data: Buffer.from("abcdefg\n") }]);
    expect(f.bytes.stdout).toBe(8);
  });

  it("times the flush from the first pending byte, not the last", () => {
    const { f, frames } = framer(1024, 10);
    f.write("stdout", Buffer.from("one "));
    vi.advanceTimersByTime(6);
    f.write("stdout", Buffer.from("two"));
    vi.advanceTimersByTime(4);
    expect(frames.map((fr) => fr.data.toString())).toEqual(["one two"]);
  });

  it("starts a new frame, at the next offset, for writes after a flush", () => {
    const { f, frames } = framer(1024, 10);
    f.write("stdout", Buffer.from("first"));
    vi.advanceTimersByTime(10);
    f.write("stdout", Buffer.from("second"));
    vi.advanceTimersByTime(10);
    expect(frames.map((fr) => [fr.offset, fr.data.toString()])).toEqual([
      [0, "first"],
      [5, "second"],
    ]);
  });

  it("ignores empty writes", () => {
    const { f, frames } = framer(16, 10);
    f.write("stdout", Buffer.alloc(0));
    vi.advanceTimersByTime(100);
    f.end();
    expect(frames).toHaveLength(0);
    expect(f.bytes).toEqual({ stdout: 0, stderr: 0 });
  });

  it("sends a full frame at once, without waiting for the timer", () => {
    const { f, frames } = framer(8, 1_000);
    f.write("stdout", Buffer.from("0123456789abcdefXYZ"));
    expect(frames.map((fr) => fr.data.toString())).toEqual(["01234567", "89abcdef"]);
    vi.advanceTimersByTime(1_000);
    expect(frames.map((fr) => fr.data.toString())).toEqual(["01234567", "89abcdef", "XYZ"]);
    expectContiguous(frames, "stdout");
  });

  it("never sends a frame larger than maxBytes", () => {
    const rand = prng(7);
    for (const maxBytes of [1, 3, 8, 100, 4096]) {
      const { f, frames } = framer(maxBytes, 5);
      const input = Buffer.alloc(8_000, "x");
      for (const chunk of randomSplit(rand, input, 3 * maxBytes)) {
        f.write("stdout", chunk);
        if (rand(4) === 0) vi.advanceTimersByTime(5);
      }
      f.end();
      for (const fr of frames) expect(fr.data.length).toBeLessThanOrEqual(maxBytes);
      expect(joined(frames, "stdout").equals(input)).toBe(true);
    }
  });

  it("cuts one large write of valid UTF-8 only between characters", () => {
    for (let seed = 1; seed <= 50; seed++) {
      const rand = prng(seed);
      const input = Buffer.from(randomText(rand, 200), "utf8");
      const maxBytes = 4 + rand(30);
      const { f, frames } = framer(maxBytes, 10);
      f.write("stdout", input);
      f.end();
      for (const fr of frames) {
        expect(fr.data.length, `seed ${seed}`).toBeLessThanOrEqual(maxBytes);
        expect(() => strictDecoder.decode(fr.data), `seed ${seed}`).not.toThrow();
      }
      expect(joined(frames, "stdout").equals(input), `seed ${seed}`).toBe(true);
    }
  });

  it("keeps multibyte characters split across chunks whole, on both streams (property)", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const rand = prng(seed);
      const inputs: Record<Stream, Buffer> = {
        stdout: Buffer.from(randomText(rand, 1 + rand(80)), "utf8"),
        stderr: Buffer.from(randomText(rand, rand(40)), "utf8"),
      };
      const queues: Record<Stream, Buffer[]> = {
        stdout: randomSplit(rand, inputs.stdout, 5),
        stderr: randomSplit(rand, inputs.stderr, 5),
      };
      // maxBytes above the input size: frames are cut by the timer and by stream switches.
      const { f, frames } = framer(1 << 20, 10);
      while (queues.stdout.length > 0 || queues.stderr.length > 0) {
        const stream: Stream =
          queues.stderr.length === 0 || (queues.stdout.length > 0 && rand(2) === 0) ? "stdout" : "stderr";
        f.write(stream, queues[stream].shift()!);
        if (rand(3) === 0) vi.advanceTimersByTime(10);
      }
      f.end();
      for (const stream of ["stdout", "stderr"] as const) {
        expect(joined(frames, stream).equals(inputs[stream]), `seed ${seed} ${stream}`).toBe(true);
        expectContiguous(frames, stream);
        expect(f.bytes[stream]).toBe(inputs[stream].length);
      }
      for (const fr of frames) {
        expect(fr.data.length, `seed ${seed}`).toBeGreaterThan(0);
        const text = strictDecoder.decode(fr.data);
        expect(text.includes("\uFFFD"), `seed ${seed}`).toBe(false);
      }
    }
  });

  it("delivers every byte, in order and within maxBytes, for random splits and small frames (property)", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const rand = prng(seed);
      const input = Buffer.from(randomText(rand, 1 + rand(120)), "utf8");
      const maxBytes = 4 + rand(20);
      const { f, frames } = framer(maxBytes, 10);
      for (const chunk of randomSplit(rand, input, 2 * maxBytes)) {
        f.write("stdout", chunk);
        if (rand(4) === 0) vi.advanceTimersByTime(10);
      }
      f.end();
      expect(joined(frames, "stdout").equals(input), `seed ${seed}`).toBe(true);
      expectContiguous(frames, "stdout");
      for (const fr of frames) expect(fr.data.length, `seed ${seed}`).toBeLessThanOrEqual(maxBytes);
    }
  });

  it("flushes the other stream first when the stream switches", () => {
    const { f, frames } = framer(1024, 1_000);
    f.write("stdout", Buffer.from("a"));
    f.write("stdout", Buffer.from("b"));
    f.write("stderr", Buffer.from("E1"));
    expect(frames).toEqual([{ stream: "stdout", offset: 0, data: Buffer.from("ab") }]);
    f.write("stdout", Buffer.from("cd"));
    expect(frames.slice(1)).toEqual([{ stream: "stderr", offset: 0, data: Buffer.from("E1") }]);
    f.write("stderr", Buffer.from("E2"));
    f.end();
    expect(frames.map((fr) => [fr.stream, fr.offset, fr.data.toString()])).toEqual([
      ["stdout", 0, "ab"],
      ["stderr", 0, "E1"],
      ["stdout", 2, "cd"],
      ["stderr", 2, "E2"],
    ]);
    expect(f.bytes).toEqual({ stdout: 4, stderr: 4 });
  });

  it("holds an incomplete character back on a stream switch and completes it on that stream's next write", () => {
    const euro = Buffer.from("€", "utf8"); // e2 82 ac
    const { f, frames } = framer(1024, 1_000);
    f.write("stdout", Buffer.concat([Buffer.from("x"), euro.subarray(0, 2)]));
    f.write("stderr", Buffer.from("err"));
    expect(frames).toEqual([{ stream: "stdout", offset: 0, data: Buffer.from("x") }]);
    f.write("stdout", euro.subarray(2));
    f.end();
    expect(frames.map((fr) => [fr.stream, fr.offset, fr.data.toString("hex")])).toEqual([
      ["stdout", 0, "78"],
      ["stderr", 0, Buffer.from("err").toString("hex")],
      ["stdout", 1, euro.toString("hex")],
    ]);
  });

  it("holds an incomplete character back when the timer fires", () => {
    const smile = Buffer.from("😀", "utf8"); // 4 bytes
    const { f, frames } = framer(1024, 10);
    f.write("stdout", Buffer.concat([Buffer.from("hi "), smile.subarray(0, 3)]));
    vi.advanceTimersByTime(10);
    expect(frames).toEqual([{ stream: "stdout", offset: 0, data: Buffer.from("hi ") }]);
    f.write("stdout", smile.subarray(3));
    vi.advanceTimersByTime(10);
    expect(frames[1]).toEqual({ stream: "stdout", offset: 3, data: smile });
  });

  it("end() sends everything held, including an incomplete trailing character on each stream", () => {
    const { f, frames } = framer(1024, 1_000);
    const out = Buffer.concat([Buffer.from("out"), Buffer.from("😀").subarray(0, 2)]);
    const err = Buffer.concat([Buffer.from("err"), Buffer.from("é").subarray(0, 1)]);
    f.write("stdout", out);
    f.write("stderr", err); // stdout's partial character is held back here
    f.end();
    expect(joined(frames, "stdout").equals(out)).toBe(true);
    expect(joined(frames, "stderr").equals(err)).toBe(true);
    expectContiguous(frames, "stdout");
    expectContiguous(frames, "stderr");
    expect(f.bytes).toEqual({ stdout: out.length, stderr: err.length });
  });

  it("end() leaves no timer behind", () => {
    const { f, frames } = framer(1024, 10);
    f.write("stdout", Buffer.from("abc"));
    f.end();
    expect(frames).toHaveLength(1);
    vi.advanceTimersByTime(100);
    expect(frames).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("passes invalid UTF-8 through byte for byte", () => {
    const invalid = Buffer.from([
      0xff, 0xfe, 0x80, 0x80, 0x80, 0x80, 0xc3, 0x28, 0xe2, 0x28, 0xa1, 0xf0, 0x90, 0x28, 0xbc, 0xed, 0xa0,
      0x80, 0xf8, 0x88, 0x80, 0x80, 0x80, 0xc0, 0xaf, 0x41, 0xf0,
    ]);
    for (let seed = 1; seed <= 100; seed++) {
      const rand = prng(seed);
      const maxBytes = 1 + rand(10);
      const { f, frames } = framer(maxBytes, 10);
      for (const chunk of randomSplit(rand, invalid, 4)) {
        f.write("stdout", chunk);
        if (rand(3) === 0) vi.advanceTimersByTime(10);
      }
      f.end();
      expect(joined(frames, "stdout").equals(invalid), `seed ${seed}`).toBe(true);
      expectContiguous(frames, "stdout");
      for (const fr of frames) expect(fr.data.length, `seed ${seed}`).toBeLessThanOrEqual(maxBytes);
    }
  });

  it("passes random bytes on two streams through unchanged (property)", () => {
    for (let seed = 1; seed <= 100; seed++) {
      const rand = prng(seed);
      const inputs: Record<Stream, Buffer> = {
        stdout: Buffer.from(Array.from({ length: rand(200) }, () => rand(256))),
        stderr: Buffer.from(Array.from({ length: rand(200) }, () => rand(256))),
      };
      const queues: Record<Stream, Buffer[]> = {
        stdout: randomSplit(rand, inputs.stdout, 9),
        stderr: randomSplit(rand, inputs.stderr, 9),
      };
      const maxBytes = 4 + rand(30);
      const { f, frames } = framer(maxBytes, 10);
      while (queues.stdout.length > 0 || queues.stderr.length > 0) {
        const stream: Stream =
          queues.stderr.length === 0 || (queues.stdout.length > 0 && rand(2) === 0) ? "stdout" : "stderr";
        f.write(stream, queues[stream].shift()!);
        if (rand(3) === 0) vi.advanceTimersByTime(10);
      }
      f.end();
      for (const stream of ["stdout", "stderr"] as const) {
        expect(joined(frames, stream).equals(inputs[stream]), `seed ${seed} ${stream}`).toBe(true);
        expectContiguous(frames, stream);
      }
      for (const fr of frames) expect(fr.data.length, `seed ${seed}`).toBeLessThanOrEqual(maxBytes);
    }
  });
});

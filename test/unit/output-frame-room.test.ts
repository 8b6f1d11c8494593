import { describe, expect, it } from "vitest";
import {
  decodeOutputFrame,
  encodeOutputFrame,
  OUTPUT_HEADER_BYTES,
  type OutputFrame,
  OutputFramer,
  type OutputStream,
  outputFrameData,
} from "../../agent-core/index.ts";
import { prng } from "../support/prng.ts";

/**
 * The output frame as the protocol defines it (docs/protocol.md), written out field by field
 * into fresh memory: what the agent sent before frames were assembled in their own memory.
 */
function referenceFrame(frame: OutputFrame): Buffer {
  const stepId = Buffer.from(frame.stepId, "utf8");
  const out = Buffer.alloc(OUTPUT_HEADER_BYTES + stepId.length + frame.data.length);
  out.writeUInt8(0x01, 0);
  out.writeUInt8(frame.stream === "stdout" ? 1 : 2, 1);
  out.writeUInt16BE(stepId.length, 2);
  out.writeUInt32BE(frame.seq, 4);
  out.writeDoubleBE(frame.offset, 8);
  stepId.copy(out, OUTPUT_HEADER_BYTES);
  frame.data.copy(out, OUTPUT_HEADER_BYTES + stepId.length);
  return out;
}

// 1-, 2-, 3- and 4-byte characters, and a byte that is never valid UTF-8.
const ALPHABET = ["a", "\n", "é", "€", "中", "😀", "𝄞"]
  .map((c) => Buffer.from(c))
  .concat(Buffer.from([0xff]));

interface Sent {
  wire: Buffer;
  frame: OutputFrame;
  /** The frame's data as the framer emitted it, copied at once (what every other sink saw). */
  emitted: Buffer;
  inPlace: boolean;
}

/** Runs the agent's path (framer with the frame's own memory -> encoder) over random chunkings. */
function streamThrough(
  seed: number,
  stepId: string,
  maxBytes: number,
): { sent: Sent[]; input: Record<OutputStream, Buffer> } {
  const rand = prng(seed);
  const sent: Sent[] = [];
  let seq = 0;
  const framer = new OutputFramer({
    maxBytes,
    flushMs: 60_000,
    allocate: (length) => outputFrameData(stepId, length),
    emit: ({ stream, offset, data }) => {
      const emitted = Buffer.from(data);
      const frame = { seq: ++seq, stepId, stream, offset, data };
      const wire = encodeOutputFrame(frame);
      sent.push({ wire, frame, emitted, inPlace: wire.buffer === data.buffer });
    },
  });
  // Text of 1- to 4-byte characters; writes are slices of it cut at any byte (characters cut at their edges).
  const text = Buffer.concat(Array.from({ length: 40_000 }, () => ALPHABET[rand(ALPHABET.length)]!));
  const input: Record<OutputStream, Buffer[]> = { stdout: [], stderr: [] };
  for (let write = 0; write < 120; write++) {
    const stream: OutputStream = rand(5) === 0 ? "stderr" : "stdout";
    // Mostly bulk writes (several reads make a frame), sometimes small ones.
    const bytes = rand(3) === 0 ? 1 + rand(64) : 2_000 + rand(40_000);
    const start = rand(text.length - bytes);
    const chunk = text.subarray(start, start + bytes);
    input[stream].push(chunk);
    framer.write(stream, Buffer.from(chunk));
  }
  framer.end();
  return { sent, input: { stdout: Buffer.concat(input.stdout), stderr: Buffer.concat(input.stderr) } };
}

describe("output frames assembled in their own memory (one copy per frame)", () => {
  it("puts on the wire exactly the bytes of the protocol's encoding, for random chunkings with characters cut at chunk edges", () => {
    for (const [seed, stepId, maxBytes] of [
      [1, "build", 262_144],
      [2, "s", 65_536],
      [3, "ünïcode-step-ιδ", 100_000],
      [4, "x".repeat(300), 5_000],
    ] as const) {
      const { sent, input } = streamThrough(seed, stepId, maxBytes);
      const received: Record<OutputStream, Buffer[]> = { stdout: [], stderr: [] };
      const next: Record<OutputStream, number> = { stdout: 0, stderr: 0 };
      for (const { wire, frame, emitted } of sent) {
        expect(
          wire.equals(referenceFrame({ ...frame, data: emitted })),
          `seed ${seed} seq ${frame.seq}`,
        ).toBe(true);
        // Writing the header in place left the data every other sink was given unchanged.
        expect(frame.data.equals(emitted), `seed ${seed} seq ${frame.seq}`).toBe(true);
        const decoded = decodeOutputFrame(wire);
        expect({ ...decoded, data: undefined }).toEqual({ ...frame, data: undefined });
        expect(decoded.data.equals(emitted), `seed ${seed} seq ${frame.seq}`).toBe(true);
        expect(decoded.offset).toBe(next[decoded.stream]);
        next[decoded.stream] += decoded.data.length;
        received[decoded.stream].push(decoded.data);
      }
      expect(Buffer.concat(received.stdout).equals(input.stdout), `seed ${seed}`).toBe(true);
      expect(Buffer.concat(received.stderr).equals(input.stderr), `seed ${seed}`).toBe(true);
      // The path under test was taken: bulk frames were sent from their own memory.
      expect(sent.filter((s) => s.inPlace).length, `seed ${seed}: frames written in place`).toBeGreaterThan(
        0,
      );
    }
  });

  it("encodes the same data again (a second sink, a resend) by copying, to the same bytes", () => {
    const data = outputFrameData("step", 10_000);
    data.fill("é".repeat(5_000));
    const frame: OutputFrame = { seq: 7, stepId: "step", stream: "stderr", offset: 123_456, data };
    const first = encodeOutputFrame(frame);
    const second = encodeOutputFrame({ ...frame, seq: 8 });
    expect(first.buffer).toBe(data.buffer);
    expect(second.buffer).not.toBe(data.buffer);
    expect(first.equals(referenceFrame(frame))).toBe(true);
    expect(second.equals(referenceFrame({ ...frame, seq: 8 }))).toBe(true);
    // The second encoding did not touch the first frame (kept by the outbox until acknowledged).
    expect(first.readUInt32BE(4)).toBe(7);
  });

  it("never writes a header into memory it did not make room in", () => {
    const data = outputFrameData("step", 10_000).fill(0x61);
    const before = Buffer.from(data.buffer, 0, data.byteOffset + data.length);
    // Another step id (another header length), a view that starts later, and a small frame from the pool.
    const other = encodeOutputFrame({ seq: 1, stepId: "step-2", stream: "stdout", offset: 0, data });
    const later = encodeOutputFrame({
      seq: 1,
      stepId: "ste",
      stream: "stdout",
      offset: 0,
      data: data.subarray(1),
    });
    const small = outputFrameData("step", 100).fill(0x62);
    const smallWire = encodeOutputFrame({ seq: 1, stepId: "step", stream: "stdout", offset: 0, data: small });
    for (const wire of [other, later, smallWire]) expect(wire.buffer).not.toBe(data.buffer);
    expect(Buffer.from(data.buffer, 0, data.byteOffset + data.length).equals(before)).toBe(true);
    expect(
      smallWire.equals(referenceFrame({ seq: 1, stepId: "step", stream: "stdout", offset: 0, data: small })),
    ).toBe(true);
  });
});

import { ProtocolError } from "../errors.ts";
import { CloseCode } from "./close-codes.ts";

/**
 * Binary `output` frame (agent -> controller), big-endian:
 *
 * | offset | size | field                                                        |
 * |--------|------|--------------------------------------------------------------|
 * | 0      | 1    | kind: 0x01 = output                                          |
 * | 1      | 1    | stream: 1 = stdout, 2 = stderr                               |
 * | 2      | 2    | L: byte length of the step id                                |
 * | 4      | 4    | seq (uint32): this message's place in the job's sequence     |
 * | 8      | 8    | offset (float64, an integer): first byte's offset in the stream |
 * | 16     | L    | step id, UTF-8                                               |
 * | 16 + L | rest | data: the step's bytes, unchanged                            |
 */
export const OUTPUT_FRAME_KIND = 0x01;
export const OUTPUT_HEADER_BYTES = 16;

export type OutputStream = "stdout" | "stderr";

export interface OutputFrame {
  seq: number;
  stepId: string;
  stream: OutputStream;
  offset: number;
  data: Buffer;
}

/**
 * Frames of at least this many data bytes get their own memory from `outputFrameData` (smaller
 * ones come from Node's shared pool: a header written in place there is not worth an allocation).
 */
const OUTPUT_ROOM_MIN_BYTES = 4096;

/** Memory made by `outputFrameData` whose header room is still free -> the header's byte length. */
const freeHeaderRoom = new WeakMap<ArrayBufferLike, number>();

/**
 * A buffer of `length` bytes for the data of one output frame of step `stepId` (unset bytes: the
 * caller fills all of them), with free room before it for the frame's header: `encodeOutputFrame`
 * then writes the header there and returns the frame without copying the data (the bulk output
 * path copies each byte once, not twice). The room is used at most once; any other use of the
 * buffer is an ordinary Buffer and encodes by copying, to the same bytes.
 */
export function outputFrameData(stepId: string, length: number): Buffer {
  if (length < OUTPUT_ROOM_MIN_BYTES) return Buffer.allocUnsafe(length);
  const header = OUTPUT_HEADER_BYTES + Buffer.byteLength(stepId, "utf8");
  const frame = Buffer.allocUnsafeSlow(header + length);
  freeHeaderRoom.set(frame.buffer, header);
  return frame.subarray(header);
}

export function encodeOutputFrame(frame: OutputFrame): Buffer {
  const stepId = Buffer.from(frame.stepId, "utf8");
  const header = OUTPUT_HEADER_BYTES + stepId.length;
  const { data } = frame;
  let buf: Buffer;
  if (data.byteOffset === header && freeHeaderRoom.get(data.buffer) === header) {
    // `data` starts right after room made for this header (outputFrameData): the frame is its memory.
    freeHeaderRoom.delete(data.buffer);
    buf = Buffer.from(data.buffer, 0, header + data.length);
  } else {
    buf = Buffer.allocUnsafe(header + data.length);
    data.copy(buf, header);
  }
  // Plain stores: both values are in range by construction (the checked writers validate on every frame).
  buf[0] = OUTPUT_FRAME_KIND;
  buf[1] = frame.stream === "stdout" ? 1 : 2;
  buf.writeUInt16BE(stepId.length, 2);
  buf.writeUInt32BE(frame.seq, 4);
  buf.writeDoubleBE(frame.offset, 8);
  stepId.copy(buf, OUTPUT_HEADER_BYTES);
  return buf;
}

/** Decodes a binary frame; throws a ProtocolError (close code 4000) when it is not a valid output frame. */
export function decodeOutputFrame(buf: Buffer): OutputFrame {
  const fail = (why: string): never => {
    throw new ProtocolError(CloseCode.malformed, `malformed binary frame: ${why}`);
  };
  if (buf.length < OUTPUT_HEADER_BYTES)
    fail(`${buf.length} bytes is shorter than the ${OUTPUT_HEADER_BYTES}-byte header`);
  if (buf.readUInt8(0) !== OUTPUT_FRAME_KIND) fail(`unknown kind 0x${buf.readUInt8(0).toString(16)}`);
  const streamByte = buf.readUInt8(1);
  if (streamByte !== 1 && streamByte !== 2) fail(`unknown stream ${streamByte}`);
  const idLength = buf.readUInt16BE(2);
  if (idLength === 0 || OUTPUT_HEADER_BYTES + idLength > buf.length)
    fail(`step id length ${idLength} does not fit`);
  const seq = buf.readUInt32BE(4);
  if (seq < 1) fail("seq must be at least 1");
  const offset = buf.readDoubleBE(8);
  if (!Number.isSafeInteger(offset) || offset < 0) fail(`offset ${offset} is not a non-negative integer`);
  return {
    seq,
    stream: streamByte === 1 ? "stdout" : "stderr",
    offset,
    stepId: buf.toString("utf8", OUTPUT_HEADER_BYTES, OUTPUT_HEADER_BYTES + idLength),
    data: buf.subarray(OUTPUT_HEADER_BYTES + idLength),
  };
}

/**
 * Binary transfer frames, big-endian, both with the same 16-byte header:
 *
 * | offset | size | field                                                                 |
 * |--------|------|-----------------------------------------------------------------------|
 * | 0      | 1    | kind: 0x02 = artifact (agent -> controller), 0x03 = workspace (controller -> agent) |
 * | 1      | 3    | reserved, 0                                                           |
 * | 4      | 4    | seq (uint32): artifact frames only, as in output frames; 0 in workspace frames |
 * | 8      | 8    | offset (float64, an integer): first byte's offset in the tar stream   |
 * | 16     | rest | data: the tar stream's bytes                                          |
 *
 * Artifact frames are sequenced job messages (kept until acknowledged, resent after a resume);
 * workspace frames answer the agent's `workspace-pull` requests and carry no seq.
 */
export const ARTIFACT_FRAME_KIND = 0x02;
export const WORKSPACE_FRAME_KIND = 0x03;
export const TRANSFER_HEADER_BYTES = 16;

export interface TransferFrame {
  kind: "artifact" | "workspace";
  /** The job message's seq (artifact frames); 0 for workspace frames. */
  seq: number;
  offset: number;
  data: Buffer;
}

export function encodeTransferFrame(frame: TransferFrame): Buffer {
  const buf = Buffer.allocUnsafe(TRANSFER_HEADER_BYTES + frame.data.length);
  buf.writeUInt32BE(0, 0);
  buf.writeUInt8(frame.kind === "artifact" ? ARTIFACT_FRAME_KIND : WORKSPACE_FRAME_KIND, 0);
  buf.writeUInt32BE(frame.seq, 4);
  buf.writeDoubleBE(frame.offset, 8);
  frame.data.copy(buf, TRANSFER_HEADER_BYTES);
  return buf;
}

/** Decodes a binary frame an agent sends: output (0x01) or artifact (0x02). Throws a ProtocolError (4000) otherwise. */
export function decodeAgentFrame(buf: Buffer): OutputFrame | TransferFrame {
  if (buf.length > 0 && buf.readUInt8(0) === ARTIFACT_FRAME_KIND) return decodeTransferFrame(buf, "artifact");
  return decodeOutputFrame(buf);
}

/** Decodes a binary frame a controller sends: workspace (0x03) only. Throws a ProtocolError (4000) otherwise. */
export function decodeControllerFrame(buf: Buffer): TransferFrame {
  return decodeTransferFrame(buf, "workspace");
}

function decodeTransferFrame(buf: Buffer, kind: TransferFrame["kind"]): TransferFrame {
  const fail = (why: string): never => {
    throw new ProtocolError(CloseCode.malformed, `malformed binary frame: ${why}`);
  };
  const expected = kind === "artifact" ? ARTIFACT_FRAME_KIND : WORKSPACE_FRAME_KIND;
  if (buf.length < TRANSFER_HEADER_BYTES)
    fail(`${buf.length} bytes is shorter than the ${TRANSFER_HEADER_BYTES}-byte header`);
  if (buf.readUInt8(0) !== expected) fail(`unknown kind 0x${buf.readUInt8(0).toString(16)}`);
  if (buf.readUIntBE(1, 3) !== 0) fail("reserved bytes must be 0");
  const seq = buf.readUInt32BE(4);
  if (kind === "artifact" && seq < 1) fail("seq must be at least 1");
  if (kind === "workspace" && seq !== 0) fail("a workspace frame carries no seq (0)");
  const offset = buf.readDoubleBE(8);
  if (!Number.isSafeInteger(offset) || offset < 0) fail(`offset ${offset} is not a non-negative integer`);
  return { kind, seq, offset, data: buf.subarray(TRANSFER_HEADER_BYTES) };
}

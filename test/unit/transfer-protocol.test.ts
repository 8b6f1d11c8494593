import { describe, expect, it } from "vitest";
import {
  artifactsEndSchema,
  decodeAgentFrame,
  decodeControllerFrame,
  encodeOutputFrame,
  encodeTransferFrame,
  jobSchema,
  ProtocolError,
  TRANSFER_HEADER_BYTES,
  type TransferFrame,
  workspacePullSchema,
} from "../../agent-core/index.ts";

function closeCodeOf(fn: () => unknown): number {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ProtocolError);
    return (error as ProtocolError).closeCode;
  }
  throw new Error("expected a ProtocolError");
}

describe("transfer frames", () => {
  it.each<[string, TransferFrame]>([
    ["an artifact frame", { kind: "artifact", seq: 9, offset: 0, data: Buffer.from("tar bytes") }],
    [
      "an artifact frame far into the stream",
      { kind: "artifact", seq: 2 ** 32 - 1, offset: 2 ** 40, data: Buffer.alloc(3) },
    ],
    ["an empty artifact frame", { kind: "artifact", seq: 1, offset: 512, data: Buffer.alloc(0) }],
  ])("round-trips %s from the agent", (_what, frame) => {
    const encoded = encodeTransferFrame(frame);
    expect(encoded.length).toBe(TRANSFER_HEADER_BYTES + frame.data.length);
    const decoded = decodeAgentFrame(encoded);
    expect(decoded).toMatchObject({ kind: "artifact", seq: frame.seq, offset: frame.offset });
    expect(Buffer.from(decoded.data).equals(frame.data)).toBe(true);
  });

  it("round-trips a workspace frame from the controller", () => {
    const frame: TransferFrame = {
      kind: "workspace",
      seq: 0,
      offset: 1_048_576,
      data: Buffer.from([0, 255, 7]),
    };
    const decoded = decodeControllerFrame(encodeTransferFrame(frame));
    expect(decoded).toMatchObject({ kind: "workspace", seq: 0, offset: 1_048_576 });
    expect(Buffer.from(decoded.data).equals(frame.data)).toBe(true);
  });

  it("still decodes output frames from the agent", () => {
    const decoded = decodeAgentFrame(
      encodeOutputFrame({ seq: 3, stepId: "s", stream: "stdout", offset: 0, data: Buffer.from("x") }),
    );
    expect(decoded).toMatchObject({ seq: 3, stepId: "s" });
  });

  const artifact = () => encodeTransferFrame({ kind: "artifact", seq: 5, offset: 0, data: Buffer.from("x") });
  const workspace = () =>
    encodeTransferFrame({ kind: "workspace", seq: 0, offset: 0, data: Buffer.from("x") });
  it.each<[string, () => unknown]>([
    ["a short artifact frame", () => decodeAgentFrame(artifact().subarray(0, 15))],
    ["a workspace frame from the agent", () => decodeAgentFrame(workspace())],
    ["an artifact frame from the controller", () => decodeControllerFrame(artifact())],
    [
      "an output frame from the controller",
      () =>
        decodeControllerFrame(
          encodeOutputFrame({ seq: 1, stepId: "s", stream: "stdout", offset: 0, data: Buffer.alloc(0) }),
        ),
    ],
    ["an unknown kind", () => decodeAgentFrame(Buffer.from([0x09, ...Buffer.alloc(20)]))],
    [
      "reserved bytes set",
      () => {
        const buf = artifact();
        buf[2] = 1;
        return decodeAgentFrame(buf);
      },
    ],
    [
      "an artifact frame with seq 0",
      () => {
        const buf = artifact();
        buf.writeUInt32BE(0, 4);
        return decodeAgentFrame(buf);
      },
    ],
    [
      "a workspace frame with a seq",
      () => {
        const buf = workspace();
        buf.writeUInt32BE(4, 4);
        return decodeControllerFrame(buf);
      },
    ],
    [
      "a negative offset",
      () => {
        const buf = workspace();
        buf.writeDoubleBE(-1, 8);
        return decodeControllerFrame(buf);
      },
    ],
    [
      "a fractional offset",
      () => {
        const buf = artifact();
        buf.writeDoubleBE(1.5, 8);
        return decodeAgentFrame(buf);
      },
    ],
  ])("refuses %s with 4000", (_what, decode) => {
    expect(closeCodeOf(decode)).toBe(4000);
  });
});

describe("job transfer fields", () => {
  const base = { id: "j1", steps: [{ id: "1", run: "true" }] };
  const sha256 = "a".repeat(64);

  it("accepts a seed, artifacts, caches and a disk need, with defaults", () => {
    const job = jobSchema.parse({
      ...base,
      workspace: { bytes: 10_240, sha256 },
      artifacts: { paths: ["dist/**"] },
      caches: { trust: "github.com/acme/app@protected", names: ["npm", "git"] },
      diskNeedBytes: 1_000_000,
    });
    expect(job.artifacts).toEqual({ paths: ["dist/**"], exclude: [], when: "on-success" });
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ["a seed without a digest", { workspace: { bytes: 10 } }, /workspace\.sha256/],
    ["a bad digest", { workspace: { bytes: 10, sha256: "XYZ" } }, /SHA-256/],
    ["an artifact pattern climbing out", { artifacts: { paths: ["../secrets/**"] } }, /artifacts\.paths\.0/],
    ["an absolute artifact pattern", { artifacts: { paths: ["/etc/*"] } }, /relative/],
    ["no artifact pattern", { artifacts: { paths: [] } }, /artifacts\.paths/],
    ["an unknown `when`", { artifacts: { paths: ["x"], when: "sometimes" } }, /artifacts\.when/],
    ["a cache name with a slash", { caches: { trust: "t", names: ["a/b"] } }, /caches\.names\.0/],
    [
      "cache names sharing a variable",
      { caches: { trust: "t", names: ["node-modules", "node.modules"] } },
      /distinct/,
    ],
    ["caches without trust", { caches: { names: ["npm"] } }, /caches\.trust/],
    ["a negative disk need", { diskNeedBytes: -1 }, /diskNeedBytes/],
  ])("refuses %s", (_what, fields, problem) => {
    const result = jobSchema.safeParse({ ...base, ...fields });
    expect(result.success).toBe(false);
    const text = result.error!.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("\n");
    expect(text).toMatch(problem);
  });
});

describe("transfer messages", () => {
  it("bounds a pull to 16 MiB", () => {
    expect(
      workspacePullSchema.safeParse({
        v: 1,
        type: "workspace-pull",
        jobId: "j",
        offset: 0,
        length: 16 * 1_048_576,
      }).success,
    ).toBe(true);
    expect(
      workspacePullSchema.safeParse({
        v: 1,
        type: "workspace-pull",
        jobId: "j",
        offset: 0,
        length: 16 * 1_048_576 + 1,
      }).success,
    ).toBe(false);
    expect(
      workspacePullSchema.safeParse({ v: 1, type: "workspace-pull", jobId: "j", offset: 0, length: 0 })
        .success,
    ).toBe(false);
  });

  it("lists at most 100 skipped paths in artifacts-end", () => {
    const skipped = Array.from({ length: 101 }, (_, i) => ({ path: `p${i}`, reason: "special-file" }));
    const end = {
      v: 1,
      type: "artifacts-end",
      seq: 4,
      jobId: "j",
      entries: 0,
      skipped,
      skippedCount: 101,
      unmatched: [],
    };
    expect(artifactsEndSchema.safeParse(end).success).toBe(false);
    expect(artifactsEndSchema.safeParse({ ...end, skipped: skipped.slice(0, 100) }).success).toBe(true);
  });
});

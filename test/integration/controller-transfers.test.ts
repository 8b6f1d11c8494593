import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ProtocolError } from "../../agent-core/index.ts";
import { ArtifactReceiver } from "../../controller/artifact-receiver.ts";
import { UploadStore } from "../../controller/workspace-uploads.ts";
import { tempDir } from "../support/harness.ts";
import { rawTar } from "../support/tar-builder.ts";

let dir: ReturnType<typeof tempDir>;
beforeEach(() => {
  dir = tempDir("ctl-transfers-");
});
afterEach(() => dir.remove());

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const listing = { entries: 3, skipped: [], skippedCount: 0, unmatched: [] };

function sendAll(receiver: ArtifactReceiver, data: Buffer, frame = 1000, from = 0) {
  for (let at = from; at < data.length; at += frame) receiver.write(at, data.subarray(at, at + frame));
}

describe("ArtifactReceiver", () => {
  it("keeps a stream that arrived whole, with the announced length and digest", async () => {
    const data = randomBytes(10_500);
    const path = join(dir.path, "artifacts.tar");
    const receiver = ArtifactReceiver.create(path, 1 << 20);
    sendAll(receiver, data);
    const record = receiver.end({ ...listing, bytes: data.length, sha256: sha256(data) });
    expect(record).toEqual({ status: "stored", ...listing, bytes: data.length, sha256: sha256(data) });
    expect(readFileSync(path).equals(data)).toBe(true);
    expect(readdirSync(dir.path)).toEqual(["artifacts.tar"]);
  });

  it("drops a frame it already has (a resend) and refuses a gap or an overlap with 4003", () => {
    const receiver = ArtifactReceiver.create(join(dir.path, "a.tar"), 1 << 20);
    receiver.write(0, Buffer.alloc(100));
    receiver.write(0, Buffer.alloc(100));
    expect(receiver.receivedBytes).toBe(100);
    expect(() => receiver.write(150, Buffer.alloc(10))).toThrow(ProtocolError);
    try {
      receiver.write(50, Buffer.alloc(100));
    } catch (error) {
      expect((error as ProtocolError).closeCode).toBe(4003);
    }
    receiver.discard();
    expect(readdirSync(dir.path)).toEqual([]);
  });

  it.each<[string, (data: Buffer) => Record<string, unknown>, string]>([
    [
      "a digest that differs",
      (data) => ({ bytes: data.length, sha256: "0".repeat(64) }),
      "AGENT_ERR_ARCHIVE_CHECKSUM",
    ],
    [
      "a length that differs",
      (data) => ({ bytes: data.length + 1, sha256: sha256(data) }),
      "AGENT_ERR_ARCHIVE_CHECKSUM",
    ],
    [
      "the agent's own error",
      () => ({ error: { code: "AGENT_ERR_ARCHIVE_IO", message: "cannot read dist/x", entry: "dist/x" } }),
      "AGENT_ERR_ARCHIVE_IO",
    ],
  ])("drops the stream and records why for %s", async (_what, end, code) => {
    const data = randomBytes(3_000);
    const receiver = ArtifactReceiver.create(join(dir.path, "a.tar"), 1 << 20);
    sendAll(receiver, data);
    const record = receiver.end({ ...listing, ...end(data) });
    expect(record).toMatchObject({ status: "failed", code });
    // The caller discards the stream once the result is journaled.
    receiver.discard();
    expect(readdirSync(dir.path)).toEqual([]);
  });

  it("past its limit, takes the rest without keeping it and refuses the artifacts at the end", async () => {
    const data = randomBytes(5_000);
    const receiver = ArtifactReceiver.create(join(dir.path, "a.tar"), 2_000);
    sendAll(receiver, data);
    expect(receiver.receivedBytes).toBe(5_000);
    const record = receiver.end({ ...listing, bytes: data.length, sha256: sha256(data) });
    expect(record).toMatchObject({ status: "failed", code: "CONTROLLER_ERR_ARTIFACTS_TOO_LARGE" });
    receiver.discard();
    expect(readdirSync(dir.path)).toEqual([]);
  });

  it("takes back a write and an end whose journal lines could not be stored, and keeps the resent stream whole", async () => {
    const data = randomBytes(6_000);
    const path = join(dir.path, "a.tar");
    const receiver = ArtifactReceiver.create(path, 1 << 20);
    sendAll(receiver, data.subarray(0, 3_000));
    // The frame from 2,000 was written, its journal line was not: the agent sends it again.
    receiver.unwrite(2_000, false);
    expect(receiver.receivedBytes).toBe(2_000);
    sendAll(receiver, data, 1000, 2_000);
    const end = { ...listing, bytes: data.length, sha256: sha256(data) };
    expect(receiver.end(end)).toMatchObject({ status: "stored", sha256: sha256(data) });
    // Its artifacts-end was not journaled either: the resend checks the same bytes again.
    receiver.unend();
    expect(readdirSync(dir.path)).toEqual(["a.tar.part"]);
    expect(receiver.end(end)).toMatchObject({ status: "stored", sha256: sha256(data) });
    expect(readFileSync(path).equals(data)).toBe(true);
    // A failed end checked twice (its line not journaled the first time) says the same both times.
    const bad = ArtifactReceiver.create(join(dir.path, "b.tar"), 1 << 20);
    sendAll(bad, data);
    const wrong = { ...listing, bytes: data.length, sha256: "0".repeat(64) };
    const first = bad.end(wrong);
    expect(bad.end(wrong)).toEqual(first);
    expect(first).toMatchObject({ status: "failed", code: "AGENT_ERR_ARCHIVE_CHECKSUM" });
  });

  it("after a restart, keeps what was acknowledged and goes on from there", async () => {
    const data = randomBytes(8_000);
    const path = join(dir.path, "a.tar");
    const before = ArtifactReceiver.create(path, 1 << 20);
    sendAll(before, data.subarray(0, 5_000));
    // The controller died having acknowledged 4,000 bytes: the rest is sent again.
    const after = ArtifactReceiver.reopen(path, 1 << 20, { receivedBytes: 4_000, storedBytes: 4_000 });
    expect(after.receivedBytes).toBe(4_000);
    sendAll(after, data, 1000, 4_000);
    const record = after.end({ ...listing, bytes: data.length, sha256: sha256(data) });
    expect(record).toMatchObject({ status: "stored", sha256: sha256(data) });
    expect(readFileSync(path).equals(data)).toBe(true);
  });
});

describe("UploadStore", () => {
  const limits = { maxBytes: 1 << 20, maxEntries: 100 };

  it("stores a good archive with its digest and what it holds", async () => {
    const store = new UploadStore(join(dir.path, "uploads"), limits);
    const tar = rawTar([
      { path: "src/", type: "Directory" },
      { path: "src/a.c", body: "x".repeat(700) },
    ]);
    const upload = await store.receive(Readable.from([tar.subarray(0, 1000), tar.subarray(1000)]));
    expect(upload).toMatchObject({ bytes: tar.length, sha256: sha256(tar), entries: 2, contentBytes: 700 });
    expect(store.get(upload.id)).toEqual(upload);
    const dest = join(dir.path, "workspace.tar");
    const seed = store.seedFor(upload.id);
    seed.take(dest);
    expect(readFileSync(dest).equals(tar)).toBe(true);
    // A job that could not be stored gives the archive back: the upload can seed the next one.
    seed.giveBack(dest);
    expect(existsSync(dest)).toBe(false);
    store.seedFor(upload.id).take(dest);
    expect(readFileSync(dest).equals(tar)).toBe(true);
    store.forget(upload.id);
    expect(store.get(upload.id)).toBeUndefined();
    expect(() => store.seedFor(upload.id).take(dest)).toThrow(expect.objectContaining({ status: 404 }));
  });

  it("refuses an archive an agent would refuse, naming the agent's code and the entry, and keeps nothing", async () => {
    const store = new UploadStore(join(dir.path, "uploads"), limits);
    const tar = rawTar([
      { path: "ok", body: "x" },
      { path: "link", type: "SymbolicLink", linkpath: "/etc/shadow" },
    ]);
    const error = (await store.receive(Readable.from([tar])).catch((e: unknown) => e)) as Record<
      string,
      unknown
    >;
    expect(error).toMatchObject({ status: 400, code: "CONTROLLER_ERR_BAD_ARCHIVE" });
    expect(String(error.message)).toMatch(/AGENT_ERR_ARCHIVE_LINK_ESCAPE, entry "link"/);
    expect(readdirSync(join(dir.path, "uploads"))).toEqual([]);
  });

  it("keeps nothing of an upload whose body fails before its file is open (the client went away at once)", async () => {
    const store = new UploadStore(join(dir.path, "uploads"), limits);
    for (let i = 0; i < 20; i++) {
      const gone = Readable.from([Buffer.alloc(0)]).map(() => {
        throw Object.assign(new Error("aborted"), { code: "ECONNRESET" });
      });
      await expect(store.receive(gone)).rejects.toThrow("aborted");
    }
    // Every .part file was created by an open(2) that was still under way when the body failed.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(readdirSync(join(dir.path, "uploads"))).toEqual([]);
  });

  it("refuses an archive over the size limit with 413 while it streams", async () => {
    const store = new UploadStore(join(dir.path, "uploads"), { maxBytes: 4096, maxEntries: 100 });
    const tar = rawTar([{ path: "big", body: randomBytes(10_000) }]);
    await expect(store.receive(Readable.from([tar]))).rejects.toMatchObject({
      status: 413,
      code: "CONTROLLER_ERR_TOO_LARGE",
    });
    expect(readdirSync(join(dir.path, "uploads"))).toEqual([]);
  });

  it("prunes uploads no job took", async () => {
    const store = new UploadStore(join(dir.path, "uploads"), limits);
    const upload = await store.receive(Readable.from([rawTar([{ path: "a", body: "x" }])]));
    writeFileSync(join(dir.path, "uploads", "stale.part"), "x");
    const old = new Date(Date.now() - 3 * 3_600_000);
    for (const name of readdirSync(join(dir.path, "uploads")))
      utimesSync(join(dir.path, "uploads", name), old, old);
    store.prune(3_600_000);
    expect(store.get(upload.id)).toBeUndefined();
    expect(existsSync(join(dir.path, "uploads", "stale.part"))).toBe(false);
  });
});

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type ArtifactChannel,
  type ArtifactsEnd,
  artifactsDue,
  cacheRequestFor,
  extractArchive,
  seedFailureOutcome,
  seedWorkspace,
  silentLogger,
  uploadArtifacts,
  withArtifactsResult,
} from "../../agent-core/index.ts";
import { tempDir } from "../support/harness.ts";
import { rawTar } from "../support/tar-builder.ts";

let dir: ReturnType<typeof tempDir>;
beforeEach(() => {
  dir = tempDir("transfers-");
});
afterEach(() => dir.remove());

const digestOf = (data: Buffer) => ({
  bytes: data.length,
  sha256: createHash("sha256").update(data).digest("hex"),
});
const never = new AbortController().signal;

function seed(
  tar: Buffer,
  spec = digestOf(tar),
  limits = { maxBytes: 1 << 20, maxEntries: 100 },
  signal = never,
) {
  return seedWorkspace({
    workspace: join(dir.path, "ws"),
    spec,
    source: Readable.from([tar]),
    ...limits,
    signal,
    logger: silentLogger,
  });
}

describe("seedWorkspace", () => {
  it("extracts the archive and checks its digest", async () => {
    const tar = rawTar([
      { path: "src/", type: "Directory" },
      { path: "src/main.c", body: "int main;" },
    ]);
    expect(await seed(tar)).toEqual({ status: "done", ...digestOf(tar), entries: 2 });
    expect(readFileSync(join(dir.path, "ws/src/main.c"), "utf8")).toBe("int main;");
  });

  it.each<[string, Buffer, Record<string, unknown>]>([
    [
      "an unsafe entry",
      rawTar([{ path: "../evil", body: "x" }]),
      { code: "AGENT_ERR_ARCHIVE_PARENT_PATH", entry: "../evil" },
    ],
    [
      "contents over the budget",
      rawTar([{ path: "big", body: Buffer.alloc(2 << 20) }]),
      { code: "AGENT_ERR_ARCHIVE_TOO_LARGE", entry: "big" },
    ],
    ["a damaged stream", Buffer.from("not a tar".repeat(200)), { code: "AGENT_ERR_ARCHIVE_CORRUPT" }],
  ])("says why %s was refused", async (_what, tar, expected) => {
    expect(await seed(tar)).toMatchObject({ status: "failed", ...expected });
  });

  it("refuses an archive whose digest is not the announced one", async () => {
    const tar = rawTar([{ path: "a", body: "x" }]);
    expect(await seed(tar, { bytes: tar.length, sha256: "0".repeat(64) })).toMatchObject({
      status: "failed",
      code: "AGENT_ERR_ARCHIVE_CHECKSUM",
      entry: null,
    });
  });

  it("reports a stop as AGENT_ERR_ARCHIVE_ABORTED", async () => {
    const stop = new AbortController();
    stop.abort("cancelled");
    expect(await seed(rawTar([{ path: "a", body: "x" }]), undefined, undefined, stop.signal)).toMatchObject({
      status: "failed",
      code: "AGENT_ERR_ARCHIVE_ABORTED",
    });
  });
});

describe("artifactsDue", () => {
  it.each<["on-success" | "on-failure" | "always", "succeeded" | "failed", string, boolean]>([
    ["on-success", "succeeded", "exit", true],
    ["on-success", "failed", "exit", false],
    ["on-failure", "failed", "exit", true],
    ["on-failure", "failed", "timeout", true],
    ["on-failure", "failed", "cancelled", false],
    ["on-failure", "succeeded", "exit", false],
    ["always", "failed", "cancelled", true],
    ["always", "succeeded", "exit", true],
  ])("when %s, a job %s (%s): %s", (when, status, reason, due) => {
    expect(artifactsDue({ paths: ["x"], exclude: [], when }, { status, reason: reason as never })).toBe(due);
  });
});

/** A channel that keeps the frames and the end, with a small outbox to exercise the flow control. */
function recordingChannel() {
  const frames: { offset: number; data: Buffer }[] = [];
  const ends: Omit<ArtifactsEnd, "v" | "type" | "seq" | "jobId">[] = [];
  let unacked = 0;
  const channel: ArtifactChannel = {
    data: (offset, data) => {
      frames.push({ offset, data: Buffer.from(data) });
      unacked++;
    },
    hasRoom: () => unacked < 4,
    waitForRoom: async () => {
      await new Promise((resolve) => setImmediate(resolve));
      unacked = 0;
    },
    end: (fields) => ends.push(fields),
  };
  return { channel, frames, ends, stream: () => Buffer.concat(frames.map((f) => f.data)) };
}

describe("uploadArtifacts", () => {
  let ws: string;
  beforeEach(() => {
    ws = join(dir.path, "ws");
    mkdirSync(join(ws, "dist/empty"), { recursive: true });
    mkdirSync(join(ws, "reports"), { recursive: true });
    writeFileSync(join(ws, "dist/app.bin"), Buffer.alloc(300_000, 7));
    writeFileSync(join(ws, "reports/junit.xml"), "<testsuite/>");
    symlinkSync("/etc/passwd", join(ws, "dist/passwd"));
  });

  const upload = (
    channel: ArtifactChannel,
    spec: Record<string, unknown>,
    outcome = { status: "failed" as const, reason: "exit" as const },
    signal = never,
  ) =>
    uploadArtifacts({
      workspace: ws,
      spec: { exclude: [], when: "always", paths: [], ...spec } as never,
      outcome,
      channel,
      frameBytes: 65_536,
      maxEntries: 100,
      signal,
      logger: silentLogger,
    });

  it("after a failed step, streams the artifacts in frames and ends with their digest", async () => {
    const rec = recordingChannel();
    const result = await upload(rec.channel, {
      paths: ["dist", "reports/*.xml", "coverage/**"],
      when: "on-failure",
    });
    const stream = rec.stream();
    expect(result).toEqual({ status: "done", ...digestOf(stream), entries: 4 });
    expect(rec.frames.map((f) => f.offset)).toEqual(rec.frames.map((_, i) => i * 65_536));
    expect(rec.ends).toEqual([
      {
        entries: 4,
        skipped: [{ path: "dist/passwd", reason: "link-outside-workspace" }],
        skippedCount: 1,
        unmatched: ["coverage/**"],
        ...digestOf(stream),
      },
    ]);
    const out = join(dir.path, "out");
    await extractArchive(Readable.from([stream]), { dir: out, maxBytes: 1 << 30, maxEntries: 100 });
    expect(readFileSync(join(out, "dist/app.bin")).equals(Buffer.alloc(300_000, 7))).toBe(true);
    expect(readFileSync(join(out, "reports/junit.xml"), "utf8")).toBe("<testsuite/>");
  });

  it("skips them when `when` does not match, and sends nothing", async () => {
    const rec = recordingChannel();
    expect(await upload(rec.channel, { paths: ["dist"], when: "on-success" })).toMatchObject({
      status: "skipped",
    });
    expect(rec.frames).toEqual([]);
    expect(rec.ends).toEqual([]);
  });

  it("an empty selection ends at once with no bytes", async () => {
    const rec = recordingChannel();
    const result = await upload(rec.channel, { paths: ["nothing/**"] });
    expect(result).toMatchObject({ status: "done", bytes: 0, entries: 0 });
    expect(rec.ends).toEqual([expect.objectContaining({ bytes: 0, entries: 0, unmatched: ["nothing/**"] })]);
  });

  it("a selection over the entry limit ends with the error", async () => {
    for (let i = 0; i < 120; i++) writeFileSync(join(ws, "reports", `r${i}.xml`), "x");
    const rec = recordingChannel();
    const result = await upload(rec.channel, { paths: ["reports"] });
    expect(result).toMatchObject({ status: "failed", code: "AGENT_ERR_ARCHIVE_TOO_MANY_ENTRIES" });
    expect(rec.ends).toEqual([
      expect.objectContaining({
        error: expect.objectContaining({ code: "AGENT_ERR_ARCHIVE_TOO_MANY_ENTRIES" }),
      }),
    ]);
    expect(rec.frames).toEqual([]);
  });

  it("a stop mid-stream ends with AGENT_ERR_ARCHIVE_ABORTED", async () => {
    const stop = new AbortController();
    const rec = recordingChannel();
    const original = rec.channel.data;
    rec.channel.data = (offset, data) => {
      original(offset, data);
      if (rec.frames.length === 2) stop.abort("deadline");
    };
    const result = await upload(rec.channel, { paths: ["dist"] }, undefined, stop.signal);
    expect(result).toMatchObject({ status: "failed", code: "AGENT_ERR_ARCHIVE_ABORTED" });
    expect(rec.ends).toEqual([
      expect.objectContaining({ error: expect.objectContaining({ code: "AGENT_ERR_ARCHIVE_ABORTED" }) }),
    ]);
  });
});

describe("how transfers end a job", () => {
  const failed = (code: string) => ({ status: "failed" as const, code, message: `m ${code}`, entry: null });

  it("a refused seed fails the job before its first step: disk for the budget, error otherwise", () => {
    expect(seedFailureOutcome(failed("AGENT_ERR_ARCHIVE_TOO_LARGE"), undefined)).toMatchObject({
      status: "failed",
      reason: "disk",
    });
    expect(seedFailureOutcome(failed("AGENT_ERR_ARCHIVE_LINK_ESCAPE"), undefined)).toMatchObject({
      status: "failed",
      reason: "error",
      message: "the workspace archive was refused: m AGENT_ERR_ARCHIVE_LINK_ESCAPE",
    });
    expect(seedFailureOutcome(failed("AGENT_ERR_ARCHIVE_ABORTED"), "cancelled")).toMatchObject({
      reason: "cancelled",
    });
  });

  it("failed artifacts fail a succeeded job, and change no other outcome", () => {
    const ok = { status: "succeeded" as const, reason: "exit" as const };
    expect(withArtifactsResult(ok, failed("AGENT_ERR_ARCHIVE_IO"))).toMatchObject({
      status: "failed",
      reason: "error",
    });
    expect(withArtifactsResult(ok, { status: "done", bytes: 0, sha256: "0".repeat(64), entries: 0 })).toBe(
      ok,
    );
    const timedOut = { status: "failed" as const, reason: "timeout" as const };
    expect(withArtifactsResult(timedOut, failed("AGENT_ERR_ARCHIVE_IO"))).toBe(timedOut);
  });

  it("a job's cache need is its own, else the configured cap, else nothing, plus the headroom", () => {
    const job = (fields: Record<string, unknown>) =>
      ({ id: "j", env: {}, mask: [], steps: [], caches: { trust: "t", names: ["npm"] }, ...fields }) as never;
    const config = { diskBudgetBytes: 500, diskHeadroomBytes: 16 };
    expect(cacheRequestFor(job({ diskNeedBytes: 100 }), config)).toEqual({
      trust: "t",
      names: ["npm"],
      needBytes: 116,
    });
    expect(cacheRequestFor(job({}), config)?.needBytes).toBe(516);
    expect(cacheRequestFor(job({}), { diskBudgetBytes: null, diskHeadroomBytes: 16 })?.needBytes).toBe(16);
    expect(cacheRequestFor(job({ caches: undefined }), config)).toBeUndefined();
  });
});

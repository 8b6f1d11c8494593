import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type ArtifactSink, ProtocolError, sendArchive, WorkspaceDownload } from "../../agent-core/index.ts";

/** A controller that answers pulls from `archive`, in frames of `frameBytes`, when told to. */
function fakeController(archive: Buffer, frameBytes: number) {
  const pulls: { offset: number; length: number }[] = [];
  const answer = (download: WorkspaceDownload, pull = pulls.shift()) => {
    if (pull === undefined) return false;
    for (let at = pull.offset; at < pull.offset + pull.length; at += frameBytes) {
      download.receive(at, archive.subarray(at, Math.min(at + frameBytes, pull.offset + pull.length)));
    }
    return true;
  };
  return { pulls, answer };
}

async function collect(download: WorkspaceDownload): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of download) chunks.push(chunk);
  return Buffer.concat(chunks);
}

describe("WorkspaceDownload", () => {
  it("pulls window by window, never more than two ahead of the consumer", async () => {
    const archive = randomBytes(10_000);
    const ctl = fakeController(archive, 300);
    const download = new WorkspaceDownload({
      bytes: archive.length,
      windowBytes: 1_000,
      pull: (offset, length) => ctl.pulls.push({ offset, length }),
    });
    download.start();
    expect(ctl.pulls).toEqual([
      { offset: 0, length: 1_000 },
      { offset: 1_000, length: 1_000 },
    ]);
    const chunks: Buffer[] = [];
    const iterator = download[Symbol.asyncIterator]();
    ctl.answer(download);
    ctl.answer(download);
    // Nothing consumed yet: no new request, whatever arrived.
    expect(ctl.pulls).toEqual([]);
    for (;;) {
      while (ctl.pulls.length > 0) ctl.answer(download);
      const next = await iterator.next();
      if (next.done) break;
      chunks.push(next.value);
    }
    expect(Buffer.concat(chunks).equals(archive)).toBe(true);
  });

  it("after a drop, asks again from the first byte it lacks and drops duplicates", async () => {
    const archive = randomBytes(5_000);
    const ctl = fakeController(archive, 700);
    const download = new WorkspaceDownload({
      bytes: archive.length,
      windowBytes: 2_000,
      pull: (offset, length) => ctl.pulls.push({ offset, length }),
    });
    download.start();
    const done = collect(download);
    // The first window arrives halfway, then the connection drops: the rest is lost.
    const first = ctl.pulls.shift()!;
    download.receive(0, archive.subarray(0, 1_400));
    ctl.pulls.length = 0;
    download.resumed();
    expect(ctl.pulls[0]).toEqual({ offset: 1_400, length: 2_000 });
    // A late frame of the old connection overlapping what is known: only its new tail counts.
    download.receive(700, archive.subarray(700, 2_100));
    expect(download.receivedBytes).toBe(2_100);
    while (ctl.pulls.length > 0 || download.receivedBytes < archive.length) {
      const pull = ctl.pulls.shift();
      if (pull === undefined) await new Promise((resolve) => setImmediate(resolve));
      else
        ctl.answer(download, {
          offset: Math.max(pull.offset, download.receivedBytes),
          length: pull.offset + pull.length - Math.max(pull.offset, download.receivedBytes),
        });
    }
    expect((await done).equals(archive)).toBe(true);
    expect(first).toEqual({ offset: 0, length: 2_000 });
  });

  it("refuses bytes that skip ahead, or that were never asked for", () => {
    const download = new WorkspaceDownload({ bytes: 10_000, windowBytes: 100, pull: () => {} });
    download.start();
    expect(() => download.receive(50, Buffer.alloc(10))).toThrow(ProtocolError);
    expect(() => download.receive(0, Buffer.alloc(201))).toThrow(/asked only up to 200/);
    try {
      download.receive(1, Buffer.alloc(1));
    } catch (error) {
      expect((error as ProtocolError).closeCode).toBe(4003);
    }
  });

  it("ends the consumer with the failure", async () => {
    const download = new WorkspaceDownload({ bytes: 10_000, windowBytes: 100, pull: () => {} });
    download.start();
    download.receive(0, Buffer.alloc(100));
    const reading = collect(download);
    download.fail(new Error("controller lost"));
    await expect(reading).rejects.toThrow("controller lost");
  });

  it("delivers any archive in order, whatever the frame sizes and drops", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 20_000 }),
        fc.integer({ min: 1, max: 3_000 }),
        fc.integer({ min: 1, max: 5_000 }),
        fc.array(fc.boolean(), { maxLength: 50 }),
        async (bytes, frameBytes, windowBytes, drops) => {
          const archive = randomBytes(bytes);
          const ctl = fakeController(archive, frameBytes);
          const download = new WorkspaceDownload({
            bytes,
            windowBytes,
            pull: (offset, length) => ctl.pulls.push({ offset, length }),
          });
          download.start();
          const done = collect(download);
          let round = 0;
          while (download.receivedBytes < bytes) {
            if (drops[round++ % Math.max(1, drops.length)] === true && round < 200) {
              ctl.pulls.length = 0;
              download.resumed();
            }
            if (!ctl.answer(download)) await new Promise((resolve) => setImmediate(resolve));
          }
          expect((await done).equals(archive)).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe("sendArchive", () => {
  function sink(roomEvery: number) {
    const frames: { offset: number; data: Buffer }[] = [];
    let waits = 0;
    const s: ArtifactSink = {
      data: (offset, data) => frames.push({ offset, data: Buffer.from(data) }),
      hasRoom: () => frames.length % roomEvery !== 0,
      waitForRoom: async () => {
        waits++;
      },
    };
    return { s, frames, waits: () => waits };
  }

  it("cuts the stream into frames of the given size, in order, and waits when the sink is full", async () => {
    const data = randomBytes(10_000);
    async function* chunks() {
      for (let at = 0; at < data.length; at += 333) yield data.subarray(at, at + 333);
    }
    const { s, frames, waits } = sink(3);
    const sent = await sendArchive(chunks(), s, 1_024);
    expect(sent).toBe(10_000);
    expect(frames.map((f) => f.data.length)).toEqual([...Array(9).fill(1_024), 10_000 - 9 * 1_024]);
    expect(frames.map((f) => f.offset)).toEqual(frames.map((_, i) => i * 1_024));
    expect(Buffer.concat(frames.map((f) => f.data)).equals(data)).toBe(true);
    expect(waits()).toBe(3);
  });

  it("stops when aborted", async () => {
    const controller = new AbortController();
    async function* chunks() {
      yield Buffer.alloc(2_048);
      controller.abort(new Error("deadline"));
      yield Buffer.alloc(2_048);
    }
    const { s } = sink(1_000);
    await expect(sendArchive(chunks(), s, 1_024, controller.signal)).rejects.toThrow("deadline");
  });
});

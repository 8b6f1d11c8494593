import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { DiskWatcher, diskMessage, FULL_BYTES } from "../../agent-core/limits/disk-budget.ts";
import { tempDir } from "../support/harness.ts";

const MiB = 1_048_576;

describe("DiskWatcher: the headroom at high write rates", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["performance"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /**
   * A 64 MiB filesystem and a step writing `mbPerSecond` from t = 0, checked when the watcher
   * asks to be (or every `fixedMs`). Returns the free space when the step is stopped (the
   * first check that trips), and how many checks it took.
   */
  function simulate(mbPerSecond: number, fixedMs?: number) {
    const sizeBytes = 64 * MiB;
    let nowMs = 0;
    const written = () => Math.min(sizeBytes, (mbPerSecond * 1e6 * nowMs) / 1000);
    const watcher = new DiskWatcher(
      "/simulated",
      null,
      16 * MiB,
      () => 0,
      () => sizeBytes - written(),
    );
    let checks = 0;
    for (;;) {
      checks++;
      if (watcher.check() !== null) return { freeBytes: sizeBytes - written(), checks, watcher };
      const waitMs = fixedMs ?? watcher.nextCheckInMs(250);
      nowMs += waitMs;
      vi.advanceTimersByTime(waitMs);
    }
  }

  it.each([100, 150, 400, 1_000])(
    "a step writing %i MB/s into a 64 MiB /tmp is stopped before the disk fills",
    (mbPerSecond) => {
      const { freeBytes, watcher } = simulate(mbPerSecond);
      expect(freeBytes).toBeGreaterThan(FULL_BYTES);
      expect(watcher.filledUp).toBe(false);
    },
  );

  it("where checks every 250 ms let 150 MB/s fill it between two samples", () => {
    const { freeBytes, watcher } = simulate(150, 250);
    expect(freeBytes).toBe(0);
    expect(watcher.filledUp).toBe(true);
  });

  it("checks at the monitor interval while the budget is far", () => {
    const watcher = new DiskWatcher(
      "/simulated",
      null,
      16 * MiB,
      () => 0,
      () => 10_000 * MiB,
    );
    watcher.check();
    expect(watcher.nextCheckInMs(250)).toBe(250);
  });
});

describe("DiskWatcher: the reserve and the report", () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir("reserve-");
  });
  afterEach(() => dir.remove());

  it("holds half the headroom in a file (blocks allocated) until released, not counting it as the job's", async () => {
    // Free space as this directory alone changes it: /tmp is shared with whatever else runs here,
    // and its writes must not count as the job's. The reserve's blocks are real (fallocate).
    const allocated = () =>
      readdirSync(dir.path).reduce((sum, name) => sum + statSync(join(dir.path, name)).blocks * 512, 0);
    const watcher = new DiskWatcher(dir.path, null, 8 * MiB, undefined, () => 1024 * MiB - allocated());
    const file = join(dir.path, "job.headroom");
    expect(await watcher.reserveHeadroom(file)).toBe(4 * MiB);
    expect(statSync(file).blocks * 512).toBeGreaterThanOrEqual(4 * MiB);
    expect(watcher.reservedBytes).toBe(4 * MiB);
    expect(watcher.check()).toBeNull();
    expect(watcher.peakUsedBytes).toBeLessThan(MiB);
    watcher.releaseHeadroom();
    watcher.releaseHeadroom();
    expect(existsSync(file)).toBe(false);
    expect(watcher.reservedBytes).toBe(0);
    expect(watcher.check()).toBeNull();
    expect(watcher.peakUsedBytes).toBeLessThan(MiB);
  });

  it("says the filesystem filled up only when a check saw it full, and otherwise what was seen", () => {
    const exceeded = { usedBytes: 49 * MiB, budgetBytes: 48 * MiB, freeBytes: 7 * MiB };
    const filled = diskMessage("/tmp", exceeded, [], { filledUp: true, minFreeBytes: 0 });
    expect(filled).toMatch(
      /filled up before the step could be stopped: its writes failed with "No space left on device"/,
    );
    expect(filled).not.toMatch(/stopped before the disk filled/);
    const caught = diskMessage("/tmp", exceeded, [], { filledUp: false, minFreeBytes: 7 * MiB });
    expect(caught).toMatch(/The step was stopped with 7\.0 MiB still free \(the least seen while it ran\)/);
    expect(caught).not.toMatch(/filled up/);
  });
});

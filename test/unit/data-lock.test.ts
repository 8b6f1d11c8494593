import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { LOCK_FILE, LOCK_RENEW_MS, lockDataDir } from "../../controller/data-lock.ts";
import { tempDir } from "../support/harness.ts";

describe("the data directory's lock file", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("is renewed while held, so that another host sees it live, and removed when given back", () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] });
    const dir = tempDir("lock-");
    try {
      const unlock = lockDataDir(dir.path);
      const file = join(dir.path, LOCK_FILE);
      const written = statSync(file).mtimeMs;
      vi.advanceTimersByTime(3 * LOCK_RENEW_MS);
      expect(statSync(file).mtimeMs).toBeGreaterThanOrEqual(written + 3 * LOCK_RENEW_MS - 1_000);
      unlock();
      expect(existsSync(file)).toBe(false);
      // Given back: nothing renews it any more, and it can be taken again.
      vi.advanceTimersByTime(LOCK_RENEW_MS);
      expect(existsSync(file)).toBe(false);
      lockDataDir(dir.path)();
    } finally {
      dir.remove();
    }
  });
});

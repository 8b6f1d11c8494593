import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MAX_TIMER_MS, setLongTimeout } from "../../agent-core/long-timer.ts";

describe("setLongTimeout", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it.each([
    ["2^31 ms", 2 ** 31],
    ["720 h", 720 * 3_600_000],
    ["a year", 365 * 24 * 3_600_000],
  ])("does not fire early for %s, and fires when due", (_what, delayMs) => {
    const fired = vi.fn();
    setLongTimeout(fired, delayMs);
    vi.advanceTimersByTime(1);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(delayMs - 2);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(MAX_TIMER_MS * 2);
    expect(fired).toHaveBeenCalledTimes(1);
  });

  it("fires short delays like setTimeout", () => {
    const fired = vi.fn();
    setLongTimeout(fired, 0);
    vi.advanceTimersByTime(0);
    expect(fired).toHaveBeenCalledTimes(1);
  });

  it("can be cleared before and between hops", () => {
    const fired = vi.fn();
    setLongTimeout(fired, 100).clear();
    const long = setLongTimeout(fired, MAX_TIMER_MS * 3);
    vi.advanceTimersByTime(MAX_TIMER_MS + 5);
    long.clear();
    long.clear();
    vi.advanceTimersByTime(MAX_TIMER_MS * 3);
    expect(fired).not.toHaveBeenCalled();
  });

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY])("refuses %s", (delayMs) => {
    expect(() => setLongTimeout(() => {}, delayMs)).toThrow(/Expected the `delayMs` argument/);
  });
});

import { describe, expect, it } from "vitest";
import { connectPhaseMs, connectWindow, MIN_ATTEMPT_MS } from "../../agent-core/net/connect-window.ts";

describe("connectWindow: one rule for AGENT_CONNECT_TIMEOUT_MS in every loop that reaches the controller", () => {
  it("0 is one attempt of the attempt cap, and no retry after it", () => {
    let now = 1_000;
    const window = connectWindow(0, 10_000, () => now);
    expect(window.attemptMs()).toBe(10_000);
    now += 10_000;
    expect(window.remainingMs()).toBeLessThanOrEqual(0);
    expect(connectPhaseMs(0, 10_000)).toBe(10_000);
  });

  it("a longer phase caps each attempt and never runs one past its end", () => {
    let now = 0;
    const window = connectWindow(25_000, 10_000, () => now);
    expect(window.attemptMs()).toBe(10_000);
    now = 22_000;
    expect(window.attemptMs()).toBe(3_000);
    expect(window.remainingMs()).toBe(3_000);
    now = 30_000;
    expect(window.attemptMs()).toBe(1);
    expect(connectPhaseMs(25_000, 10_000)).toBe(25_000);
  });

  it("never past the caller's own deadline (notAfter)", () => {
    const window = connectWindow(0, 10_000, () => 0);
    expect(window.attemptMs(2_500)).toBe(2_500);
    expect(window.attemptMs(null)).toBe(10_000);
  });

  it("retries only while an attempt of MIN_ATTEMPT_MS still fits after the pause", () => {
    let now = 0;
    const window = connectWindow(2_000, 10_000, () => now);
    expect(window.retryWaitMs(250)).toBe(250);
    now = 1_700;
    expect(window.retryWaitMs(1_000)).toBe(300 - MIN_ATTEMPT_MS);
    now = 1_950;
    expect(window.retryWaitMs(250)).toBeNull();
    expect(connectWindow(0, 10_000, () => 0).retryWaitMs(250)).toBeNull();
  });
});

import { afterEach, describe, expect, it, vi } from "vitest";
import { ExitCode, LAST_RESORT_SLACK_MS, type SignalTrap, trapSignals } from "../../agent-core/index.ts";
import { captureLogger } from "../support/harness.ts";

// process.emit calls the handlers as a delivered signal would (Node passes the signal's name).
const deliver = (signal: NodeJS.Signals) => process.emit(signal, signal);

let trap: SignalTrap | undefined;
afterEach(() => {
  trap?.dispose();
  trap = undefined;
  vi.useRealTimers();
});

describe("trapSignals: the SIGTERM/SIGINT handling the entrypoint and the Lambda bootstrap share", () => {
  it("first signal interrupts (reason: its name), the second kills now; dispose removes the handlers", () => {
    const before = [process.listenerCount("SIGTERM"), process.listenerCount("SIGINT")];
    const { logger, entries } = captureLogger();
    trap = trapSignals({ logger, shutdownBudgetMs: 1_000, exit: () => {} });
    expect([process.listenerCount("SIGTERM"), process.listenerCount("SIGINT")]).toEqual(
      before.map((n) => n + 1),
    );
    deliver("SIGTERM");
    expect(trap.signal.aborted).toBe(true);
    expect(trap.signal.reason).toBe("SIGTERM");
    expect(trap.killNow.aborted).toBe(false);
    deliver("SIGINT");
    expect(trap.killNow.reason).toBe("SIGINT");
    expect(entries().map((e) => e.msg)).toEqual([
      "signal received: stopping the job",
      "second signal: killing the step now",
    ]);
    trap.dispose();
    expect([process.listenerCount("SIGTERM"), process.listenerCount("SIGINT")]).toEqual(before);
  });

  it("exits 130 after SIGINT once the budget plus the slack has passed, re-armed when the budget changes", () => {
    vi.useFakeTimers();
    const exits: number[] = [];
    trap = trapSignals({
      logger: captureLogger().logger,
      shutdownBudgetMs: 0,
      exit: (code) => exits.push(code),
    });
    deliver("SIGINT");
    // The running work says it needs 2 s (its grace + drain), counted from the signal.
    vi.advanceTimersByTime(1_000);
    trap.setShutdownBudget(2_000);
    vi.advanceTimersByTime(2_000 + LAST_RESORT_SLACK_MS - 1_000 - 1);
    expect(exits).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(exits).toEqual([ExitCode.sigint]);
  });

  it("never exits when the work ends in time (dispose clears the timer)", () => {
    vi.useFakeTimers();
    const exits: number[] = [];
    trap = trapSignals({
      logger: captureLogger().logger,
      shutdownBudgetMs: 100,
      exit: (code) => exits.push(code),
    });
    deliver("SIGTERM");
    trap.dispose();
    vi.advanceTimersByTime(100 + LAST_RESORT_SLACK_MS + 1_000);
    expect(exits).toEqual([]);
  });
});

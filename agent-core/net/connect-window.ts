/**
 * The time a connect phase may take, as `AGENT_CONNECT_TIMEOUT_MS` defines it: keep trying for
 * `timeoutMs`, each attempt bounded by `attemptCapMs` and never running past the phase's end;
 * `timeoutMs` 0 means exactly one attempt of `attemptCapMs`. One rule for every loop that
 * reaches the controller (the WebSocket, auto mode's discovery request, the agent.jar download),
 * so that 0 never turns into a 1 ms attempt that no controller can answer.
 *
 * @example
 * const window = connectWindow(0, 10_000);
 * window.attemptMs(); // 10000: the one attempt
 * window.remainingMs(); // 0: no retry after it
 */
/**
 * The shortest attempt worth making: with less time left, the phase ends with the last real
 * failure rather than an attempt that could only time out (and say so instead of the cause).
 */
export const MIN_ATTEMPT_MS = 100;

export interface ConnectWindow {
  /** The bound of the next attempt, in ms (at least 1), never past `notAfter` (epoch ms) when given. */
  attemptMs(notAfter?: number | null): number;
  /** How long retries may still go on, in ms (0 or less: give up). */
  remainingMs(): number;
  /**
   * The pause before the next attempt (`delayMs`, cut to the time left), or null when no attempt
   * of at least {@link MIN_ATTEMPT_MS} would fit after it: give up with the last failure.
   */
  retryWaitMs(delayMs: number): number | null;
}

/** The whole phase's length, in ms: `timeoutMs`, or the one attempt's `attemptCapMs` when it is 0. */
export function connectPhaseMs(timeoutMs: number, attemptCapMs: number): number {
  return timeoutMs === 0 ? attemptCapMs : timeoutMs;
}

export function connectWindow(
  timeoutMs: number,
  attemptCapMs: number,
  now: () => number = Date.now,
): ConnectWindow {
  const giveUpAt = now() + timeoutMs;
  return {
    attemptMs: (notAfter) => {
      const endsAt = timeoutMs === 0 ? now() + attemptCapMs : giveUpAt;
      return Math.max(1, Math.min(attemptCapMs, endsAt - now(), (notAfter ?? Infinity) - now()));
    },
    remainingMs: () => giveUpAt - now(),
    retryWaitMs: (delayMs) => {
      const left = giveUpAt - now();
      const waitMs = Math.min(delayMs, Math.max(0, left - MIN_ATTEMPT_MS));
      return left - waitMs < MIN_ATTEMPT_MS ? null : waitMs;
    },
  };
}

/** Waits `ms`, or less when `signal` is aborted. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
    if (signal?.aborted) done();
  });
}

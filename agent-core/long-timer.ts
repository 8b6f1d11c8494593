/**
 * The longest delay Node's `setTimeout` honours: 2^31 - 1 ms (about 24.8 days). A longer delay
 * fires after 1 ms (with a TimeoutOverflowWarning), which would end a `timeout: 720h` job at once.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A pending {@link setLongTimeout}; `clear` cancels it (idempotent). */
export interface LongTimeout {
  clear(): void;
}

/**
 * `setTimeout` for any delay: delays beyond {@link MAX_TIMER_MS} are reached in hops of at most
 * that length, measured on the monotonic clock (a wall-clock change does not move it). The
 * timer keeps the event loop alive unless `unref` is set, like `setTimeout`.
 *
 * @throws RangeError when `delayMs` is negative, not finite or not a number.
 * @example
 * const timer = setLongTimeout(() => abort.abort("timeout"), 30 * 24 * 3_600_000); // 720 h
 * // ...
 * timer.clear();
 */
export function setLongTimeout(
  callback: () => void,
  delayMs: number,
  options: { unref?: boolean } = {},
): LongTimeout {
  if (!Number.isFinite(delayMs) || delayMs < 0) {
    throw new RangeError(
      `Expected the \`delayMs\` argument to be a finite non-negative number, got \`${String(delayMs)}\` (${typeof delayMs})`,
    );
  }
  const dueAt = performance.now() + delayMs;
  let timer: NodeJS.Timeout | undefined;
  let cleared = false;
  const arm = (remainingMs: number) => {
    timer = setTimeout(hop, Math.min(Math.max(0, remainingMs), MAX_TIMER_MS));
    if (options.unref) timer.unref();
  };
  function hop() {
    if (cleared) return;
    const remainingMs = dueAt - performance.now();
    // A hop can wake a little early: anything under a millisecond counts as due.
    if (remainingMs >= 1) arm(remainingMs);
    else {
      cleared = true;
      callback();
    }
  }
  arm(delayMs);
  return {
    clear: () => {
      cleared = true;
      clearTimeout(timer);
    },
  };
}

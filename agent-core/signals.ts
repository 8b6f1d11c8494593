import { ExitCode } from "./exit-codes.ts";
import type { Logger } from "./logger.ts";
import { LAST_RESORT_SLACK_MS } from "./session/report-window.ts";

export { LAST_RESORT_SLACK_MS };

/**
 * What a process's SIGTERM/SIGINT handlers hand to the agent they run: the agent's `signal` and
 * `killNow` (RunAgentOptions), and a way to say how long the running work needs to end in order.
 */
export interface Interrupts {
  /** Aborted at the first SIGTERM or SIGINT; `reason` is the signal's name ("SIGTERM", "SIGINT"). */
  signal: AbortSignal;
  /** Aborted at the second: the running step is killed at once, without its grace; the job is still reported. */
  killNow: AbortSignal;
  /**
   * How long (ms) the work now running needs after the first signal to end in order (the agent's
   * `graceMs + drainMs`); the last-resort exit comes {@link LAST_RESORT_SLACK_MS} after it.
   * Takes effect at once when the first signal already came (counted from that signal).
   */
  setShutdownBudget(ms: number): void;
}

/** {@link Interrupts} while the handlers are installed; `dispose` removes them and the last-resort timer. */
export interface SignalTrap extends Interrupts {
  dispose(): void;
}

export interface SignalTrapOptions {
  /** Where "signal received" and the last resort are logged. */
  logger: Logger;
  /** The initial shutdown budget (ms), see {@link Interrupts.setShutdownBudget}. */
  shutdownBudgetMs: number;
  /** What the first signal stops, for its log line (default "the job"). */
  stopping?: string;
  /** The last resort's exit (default `process.exit`); tests pass their own. */
  exit?: (code: number) => void;
}

/**
 * Installs the agent's SIGTERM/SIGINT handling on this process, the one the container entrypoint
 * and the Lambda image's bootstrap share: the first signal aborts `signal` (the agent stops the
 * running step: SIGTERM, `graceMs`, SIGKILL; reports the job `interrupted`; drains its logs), a
 * second one aborts `killNow`. Whatever happens, the process exits (143 for SIGTERM, 130 for
 * SIGINT) once the shutdown budget plus {@link LAST_RESORT_SLACK_MS} has passed since the first
 * signal, before an orchestrator's SIGKILL could leave things half-done. The timer is unref'd.
 *
 * @example
 * const trap = trapSignals({ logger, shutdownBudgetMs: config.graceMs + config.drainMs });
 * try { await runAgent(config, { logger, signal: trap.signal, killNow: trap.killNow }); }
 * finally { trap.dispose(); }
 */
export function trapSignals(options: SignalTrapOptions): SignalTrap {
  const { logger } = options;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const interrupt = new AbortController();
  const killNow = new AbortController();
  let budgetMs = options.shutdownBudgetMs;
  let firstAt: number | undefined;
  let lastResort: NodeJS.Timeout | undefined;

  const arm = () => {
    if (firstAt === undefined) return;
    clearTimeout(lastResort);
    const signal = interrupt.signal.reason as NodeJS.Signals;
    lastResort = setTimeout(
      () => {
        const code = signal === "SIGINT" ? ExitCode.sigint : ExitCode.sigterm;
        logger.error("shutdown took too long; exiting", { signal });
        // The summary line is written whatever ends the process.
        logger.error("agent finished", {
          exitCode: code,
          summary: `interrupted by ${signal}, and the agent did not finish within ${budgetMs + LAST_RESORT_SLACK_MS} ms`,
          code: "AGENT_ERR_INTERRUPTED",
        });
        exit(code);
      },
      Math.max(0, firstAt + budgetMs + LAST_RESORT_SLACK_MS - Date.now()),
    );
    lastResort.unref();
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupt.signal.aborted) {
      // Second signal: no more grace. The step is killed now; the job is still reported.
      logger.warn("second signal: killing the step now", { signal });
      killNow.abort(signal);
      return;
    }
    logger.warn(`signal received: stopping ${options.stopping ?? "the job"}`, { signal });
    firstAt = Date.now();
    interrupt.abort(signal);
    arm();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  return {
    signal: interrupt.signal,
    killNow: killNow.signal,
    setShutdownBudget(ms: number) {
      budgetMs = ms;
      arm();
    },
    dispose() {
      clearTimeout(lastResort);
      process.removeListener("SIGTERM", onSignal);
      process.removeListener("SIGINT", onSignal);
    },
  };
}

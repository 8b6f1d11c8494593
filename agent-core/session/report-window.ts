import type { AgentConfig } from "../config/config.ts";

/**
 * After the first SIGTERM/SIGINT, how long the channel may still spend reporting the job's end
 * (resuming a dropped session, the wait for the ack), beyond the step's grace and drain: the
 * process then ends by itself, before a wrapper's last-resort timer (`signalExitMs`). Its own
 * module so that the signal trap does not load the job channel (ws, the workspace download).
 */
export const INTERRUPT_REPORT_MS = 4_000;

/**
 * The extra time a last-resort exit allows past the step's grace and drain: the report window
 * and a second for the summary line, so that the agent ends by itself first.
 */
export const LAST_RESORT_SLACK_MS = INTERRUPT_REPORT_MS + 1_000;

/**
 * When a wrapper's last-resort timer should end the process after the first signal: the step's
 * grace and drain, then {@link LAST_RESORT_SLACK_MS}. The agent's own waits are over before it;
 * the timer is a backstop.
 */
export function signalExitMs(config: Pick<AgentConfig, "graceMs" | "drainMs">): number {
  return config.graceMs + config.drainMs + LAST_RESORT_SLACK_MS;
}

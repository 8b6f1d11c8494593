import type { AgentConfigInput } from "./config.ts";

/**
 * Integer tunables every wrapper reads from its environment: variable -> agent config field.
 * Their ranges are the agent config's; a wrapper reports a problem under the variable's name.
 */
export const TUNABLE_ENV = {
  AGENT_CONNECT_TIMEOUT_MS: "connectTimeoutMs",
  AGENT_IDLE_TIMEOUT_MS: "idleTimeoutMs",
  AGENT_GRACE_MS: "graceMs",
  AGENT_DRAIN_MS: "drainMs",
  AGENT_HEARTBEAT_INTERVAL_MS: "heartbeatIntervalMs",
  AGENT_HEARTBEAT_TIMEOUT_MS: "heartbeatTimeoutMs",
  AGENT_ACK_TIMEOUT_MS: "ackTimeoutMs",
  AGENT_MAX_UNACKED_BYTES: "maxUnackedBytes",
  AGENT_MAX_SPOOL_BYTES: "maxSpoolBytes",
  AGENT_RECONNECT_TIMEOUT_MS: "reconnectTimeoutMs",
  AGENT_FRAME_MAX_BYTES: "frameMaxBytes",
  AGENT_FRAME_FLUSH_MS: "frameFlushMs",
  AGENT_DEADLINE_STEP_START_MIN_MS: "deadlineStepStartMinMs",
  AGENT_DISK_BUDGET_BYTES: "diskBudgetBytes",
  AGENT_DISK_HEADROOM_BYTES: "diskHeadroomBytes",
  AGENT_MONITOR_INTERVAL_MS: "monitorIntervalMs",
} as const satisfies Record<string, keyof AgentConfigInput>;

export type TunableVariable = keyof typeof TUNABLE_ENV;

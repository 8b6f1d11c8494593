import { clip } from "../clip.ts";
import type { ConfigProblem } from "../errors.ts";
import { type AgentConfigInput, MAX_TUNABLE_MS } from "./config.ts";

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
  AGENT_MAX_ARCHIVE_ENTRIES: "maxArchiveEntries",
} as const satisfies Record<string, keyof AgentConfigInput>;

export type TunableVariable = keyof typeof TUNABLE_ENV;

/** The environment as `process.env` gives it (or a plain object in tests). */
export type EnvVariables = Readonly<Record<string, string | undefined>>;

/**
 * An integer variable. Unset or blank: undefined. Otherwise a safe integer within the rule, or a
 * problem naming the variable, the rule and the value (execa style), and undefined.
 *
 * @example
 * readIntegerEnv({ AGENT_GRACE_MS: "-1" }, "AGENT_GRACE_MS", problems, { unit: "milliseconds", max: 86_400_000 });
 * // problems: Expected `AGENT_GRACE_MS` to be an integer from 0 to 86400000 (milliseconds), got `-1` (string)
 */
export function readIntegerEnv(
  env: EnvVariables,
  name: string,
  problems: ConfigProblem[],
  rule: { min?: number; max?: number; unit?: string } = {},
): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return undefined;
  const { min = 0, max, unit } = rule;
  const value = /^\s*\d+\s*$/.test(raw) ? Number(raw) : Number.NaN;
  if (Number.isSafeInteger(value) && value >= min && (max === undefined || value <= max)) return value;
  const range =
    max !== undefined
      ? `an integer from ${min} to ${max}`
      : min === 0
        ? "a non-negative integer"
        : `an integer >= ${min}`;
  problems.push({
    field: name,
    message: `Expected \`${name}\` to be ${range}${unit ? ` (${unit})` : ""}, got \`${clip(raw)}\` (string)`,
  });
  return undefined;
}

/** Every tunable set in `env`, parsed; each bad value adds a problem naming its variable. */
export function readTunables(
  env: EnvVariables,
  problems: ConfigProblem[],
): { variable: TunableVariable; field: (typeof TUNABLE_ENV)[TunableVariable]; value: number }[] {
  const found = [];
  for (const [variable, field] of Object.entries(TUNABLE_ENV) as [
    TunableVariable,
    (typeof TUNABLE_ENV)[TunableVariable],
  ][]) {
    const rule = variable.endsWith("_MS")
      ? { unit: "milliseconds", max: MAX_TUNABLE_MS }
      : variable.endsWith("_BYTES")
        ? { unit: "bytes" }
        : {};
    const value = readIntegerEnv(env, variable, problems, rule);
    if (value !== undefined) found.push({ variable, field, value });
  }
  return found;
}

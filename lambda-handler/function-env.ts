import {
  type AgentConfigInput,
  type AgentMode,
  type ConfigProblem,
  describeValue,
  isLogLevel,
  type JenkinsSettingsInput,
  type LogLevel,
  proxyProblems,
  readAgentMode,
  readIntegerEnv,
  readJenkinsSettings,
  readTunables,
  TUNABLE_ENV,
} from "../agent-core/start.ts";

/** The function's environment as Lambda gives it (process.env, or a plain object in tests). */
export type FunctionEnv = Readonly<Record<string, string | undefined>>;

/** What the function's configuration (its environment variables) says, validated. */
export interface FunctionSettings {
  /** Stop the agent this long before the function's timeout. */
  deadlineMarginMs: number;
  logLevel: LogLevel;
  /** Labels the function claims (AGENT_LABELS), added to the event's. */
  labels: string[];
  /** Tools the smoke test requires (AGENT_SMOKE_TOOLS). */
  smokeTools: string[];
  /** The /tmp size the function was deployed with (AGENT_EPHEMERAL_STORAGE_MB), when declared. */
  ephemeralStorageMb: number | null;
  /** Agent tunables from AGENT_*_MS and friends, keyed by config field. */
  tunables: Partial<AgentConfigInput>;
  /** The function's environment minus what steps must never see. */
  stepEnv: Record<string, string>;
  /** AGENT_MODE (the event's `mode` wins); undefined: auto. */
  mode: AgentMode | undefined;
  /** Jenkins mode: JENKINS_WEB_SOCKET, JENKINS_JAVA_OPTS, REMOTING_OPTS, the function's memory... */
  jenkins: Partial<JenkinsSettingsInput>;
}

export const DEFAULT_DEADLINE_MARGIN_MS = 20_000;
export const DEFAULT_SMOKE_TOOLS = ["bash", "git"];

/**
 * Variables never passed to steps: the function role's credentials (and the endpoints that hand
 * them out), and the Lambda Runtime API, through which a step could answer or take invocations.
 */
export const HIDDEN_FROM_STEPS = [
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "AWS_CONTAINER_CREDENTIALS_FULL_URI",
  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
  "AWS_CONTAINER_AUTHORIZATION_TOKEN",
  "AWS_LAMBDA_RUNTIME_API",
];

const TOOL_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

/**
 * Reads and validates the function's environment variables. Problems are appended to
 * `problems`, each naming the variable, the rule and the value; nothing is silently defaulted.
 */
export function readFunctionEnv(env: FunctionEnv, problems: ConfigProblem[]): FunctionSettings {
  const deadlineMarginMs =
    readIntegerEnv(env, "AGENT_DEADLINE_MARGIN_MS", problems, { unit: "milliseconds", max: 900_000 }) ??
    DEFAULT_DEADLINE_MARGIN_MS;

  let logLevel: LogLevel = "info";
  const level = given(env, "AGENT_LOG_LEVEL");
  if (level !== undefined) {
    const normalized = level.trim().toLowerCase();
    if (isLogLevel(normalized)) logLevel = normalized;
    else
      problems.push({
        field: "AGENT_LOG_LEVEL",
        message: `Expected \`AGENT_LOG_LEVEL\` to be one of debug, info, warn, error, got ${describeValue(level)}`,
      });
  }

  const smokeTools = splitList(given(env, "AGENT_SMOKE_TOOLS")) ?? DEFAULT_SMOKE_TOOLS;
  for (const tool of smokeTools) {
    if (!TOOL_NAME.test(tool))
      problems.push({
        field: "AGENT_SMOKE_TOOLS",
        message: `Expected \`AGENT_SMOKE_TOOLS\` to list program names (letters, digits, . _ + -), got ${describeValue(tool)}`,
      });
  }

  const ephemeralStorageMb =
    readIntegerEnv(env, "AGENT_EPHEMERAL_STORAGE_MB", problems, { min: 512, max: 10_240, unit: "MB" }) ??
    null;

  const tunables: Record<string, number> = {};
  for (const { field, value } of readTunables(env, problems)) tunables[field] = value;
  problems.push(...proxyProblems(env));

  const stepEnv: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && !HIDDEN_FROM_STEPS.includes(key)) stepEnv[key] = value;
  }

  const mode = readAgentMode(env, problems);
  const jenkins = readJenkinsSettings(env, problems);

  return {
    mode,
    jenkins,
    deadlineMarginMs,
    logLevel,
    labels: splitList(given(env, "AGENT_LABELS")) ?? [],
    smokeTools,
    ephemeralStorageMb,
    tunables: tunables as Partial<AgentConfigInput>,
    stepEnv,
  };
}

/** The config field a tunable's problem belongs to -> the variable to name instead. */
export function variableForField(field: string): string | undefined {
  for (const [variable, configField] of Object.entries(TUNABLE_ENV)) {
    if (configField === field) return variable;
  }
  return undefined;
}

/** Comma- or whitespace-separated values; undefined when the variable is unset or empty. */
export function splitList(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(/[\s,]+/).filter((item) => item !== "");
  return items.length === 0 ? undefined : [...new Set(items)];
}

/** A variable's value; an empty value counts as unset (serverless writes "" for an empty param). */
function given(env: FunctionEnv, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === "" ? undefined : value;
}

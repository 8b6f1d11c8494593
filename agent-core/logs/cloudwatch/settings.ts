import { ConfigError, type ConfigProblem } from "../../errors.ts";
import type { RuntimeKind } from "../../protocol/messages.ts";

/**
 * Where the agent's CloudWatch Logs copy goes, decided from the environment (a pure function of
 * its inputs: the wrapper passes `process.env`).
 *
 * | environment                          | default                                   |
 * | ------------------------------------ | ----------------------------------------- |
 * | `AGENT_CLOUDWATCH` (`on` / `off`)    | on when on AWS (Lambda or ECS), else off  |
 * | `AWS_REGION`, `AWS_DEFAULT_REGION`   | (required when on; set by Lambda and ECS) |
 * | `AGENT_LOG_GROUP`                    | `/ephemeral-agent/<runtime>`              |
 * | `AGENT_LOG_STREAM`                   | the agent's name, made a valid stream name |
 * | `AGENT_CLOUDWATCH_FLUSH_MS`          | 1000                                      |
 * | `AGENT_CLOUDWATCH_MAX_PENDING_BYTES` | 8388608                                   |
 *
 * "On AWS" means `AWS_LAMBDA_FUNCTION_NAME` (Lambda) or `ECS_CONTAINER_METADATA_URI_V4` (ECS,
 * Fargate) is set.
 */
export interface CloudWatchSettings {
  /** Whether the sink is on. */
  enabled: boolean;
  /** Why it is on or off: the override, or the platform detected. */
  reason: "AGENT_CLOUDWATCH" | "lambda" | "ecs" | "not-on-aws";
  /** The AWS region; null when none is set (only allowed when the sink is off). */
  region: string | null;
  logGroupName: string;
  logStreamName: string;
  flushIntervalMs: number;
  maxPendingBytes: number;
  /** The AWS console page of the stream; null without a region. */
  consoleUrl: string | null;
}

/** The environment variables read by {@link cloudWatchSettings}. */
export type CloudWatchEnv = Readonly<Record<string, string | undefined>>;

/** Default flush interval of the sink. */
export const DEFAULT_FLUSH_INTERVAL_MS = 1000;
/** Default bound on the bytes the sink holds before it drops events. */
export const DEFAULT_MAX_PENDING_BYTES = 8 * 1024 * 1024;

const MAX_NAME_LENGTH = 512;
const GROUP_NAME = /^[A-Za-z0-9_\-/.#]+$/;
const REGION = /^[a-z]{2,4}(-[a-z]+)+-\d{1,2}$/;

/**
 * Decides whether the CloudWatch sink is on and where it writes.
 *
 * @param env the process environment (`process.env`, or a plain object in tests)
 * @param runtime the runtime the agent reports (names the default log group)
 * @param agentName the agent's name (the default stream)
 * @throws {@link ConfigError} listing every invalid value, each naming its variable.
 *
 * @example
 * cloudWatchSettings({ AWS_LAMBDA_FUNCTION_NAME: "jnlp-agent-x", AWS_REGION: "eu-west-1" }, "lambda", "build.lambda-abcdef");
 * // { enabled: true, reason: "lambda", region: "eu-west-1", logGroupName: "/ephemeral-agent/lambda",
 * //   logStreamName: "build.lambda-abcdef", consoleUrl: "https://eu-west-1.console.aws.amazon.com/...", ... }
 */
export function cloudWatchSettings(
  env: CloudWatchEnv,
  runtime: RuntimeKind,
  agentName: string,
): CloudWatchSettings {
  const problems: ConfigProblem[] = [];
  const value = (name: string): string | undefined => {
    const raw = env[name]?.trim();
    return raw === undefined || raw === "" ? undefined : raw;
  };

  let enabled: boolean;
  let reason: CloudWatchSettings["reason"];
  const override = value("AGENT_CLOUDWATCH");
  const onLambda = value("AWS_LAMBDA_FUNCTION_NAME") !== undefined;
  const onEcs = value("ECS_CONTAINER_METADATA_URI_V4") !== undefined;
  if (override !== undefined && ["on", "off"].includes(override.toLowerCase())) {
    enabled = override.toLowerCase() === "on";
    reason = "AGENT_CLOUDWATCH";
  } else {
    if (override !== undefined) {
      problems.push({
        field: "AGENT_CLOUDWATCH",
        message: `Expected \`on\` or \`off\`, got \`${override}\` (string)`,
      });
    }
    enabled = onLambda || onEcs;
    reason = onLambda ? "lambda" : onEcs ? "ecs" : "not-on-aws";
  }

  const regionVar = value("AWS_REGION") !== undefined ? "AWS_REGION" : "AWS_DEFAULT_REGION";
  let region = value(regionVar) ?? null;
  if (region !== null && !REGION.test(region)) {
    problems.push({
      field: regionVar,
      message: `Expected an AWS region such as \`eu-west-1\`, got \`${region}\` (string)`,
    });
    region = null;
  } else if (region === null && enabled) {
    problems.push({
      field: "AWS_REGION",
      message: "Expected an AWS region (AWS_REGION or AWS_DEFAULT_REGION) when the CloudWatch sink is on",
    });
  }

  const group = value("AGENT_LOG_GROUP");
  const logGroupName = group ?? `/ephemeral-agent/${runtime}`;
  if (group !== undefined) {
    const problem = logGroupProblem(group);
    if (problem !== undefined) problems.push({ field: "AGENT_LOG_GROUP", message: problem });
  }

  const stream = value("AGENT_LOG_STREAM");
  const logStreamName = stream ?? sanitizeStreamName(agentName);
  if (stream !== undefined) {
    const problem = logStreamProblem(stream);
    if (problem !== undefined) problems.push({ field: "AGENT_LOG_STREAM", message: problem });
  }

  const flushIntervalMs = integerVar(
    env,
    "AGENT_CLOUDWATCH_FLUSH_MS",
    DEFAULT_FLUSH_INTERVAL_MS,
    1,
    3_600_000,
    problems,
  );
  const maxPendingBytes = integerVar(
    env,
    "AGENT_CLOUDWATCH_MAX_PENDING_BYTES",
    DEFAULT_MAX_PENDING_BYTES,
    1_048_576,
    Number.MAX_SAFE_INTEGER,
    problems,
  );

  if (problems.length > 0) throw new ConfigError(problems, "Invalid CloudWatch Logs configuration");
  return {
    enabled,
    reason,
    region,
    logGroupName,
    logStreamName,
    flushIntervalMs,
    maxPendingBytes,
    consoleUrl: region === null ? null : consoleUrl(region, logGroupName, logStreamName),
  };
}

function integerVar(
  env: CloudWatchEnv,
  name: string,
  fallback: number,
  min: number,
  max: number,
  problems: ConfigProblem[],
): number {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === "") return fallback;
  const parsed = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
    problems.push({
      field: name,
      message: `Expected an integer from ${min} to ${max}, got \`${raw}\` (string)`,
    });
    return fallback;
  }
  return parsed;
}

/** Why `name` is not a valid log group name, or undefined when it is. */
export function logGroupProblem(name: string): string | undefined {
  if (name.length > MAX_NAME_LENGTH || !GROUP_NAME.test(name)) {
    return `Expected 1 to ${MAX_NAME_LENGTH} characters from a-z, A-Z, 0-9, '_', '-', '/', '.' and '#', got \`${name}\` (string)`;
  }
  if (name.startsWith("aws/"))
    return `Expected a name not starting with \`aws/\` (reserved), got \`${name}\` (string)`;
  return undefined;
}

/** Why `name` is not a valid log stream name, or undefined when it is. */
export function logStreamProblem(name: string): string | undefined {
  if (name.length === 0 || name.length > MAX_NAME_LENGTH || /[:*]/.test(name)) {
    return `Expected 1 to ${MAX_NAME_LENGTH} characters without ':' or '*', got \`${name}\` (string)`;
  }
  return undefined;
}

/**
 * Makes `name` a valid log stream name: ':' and '*' become '_', the name is cut to 512 UTF-16
 * code units (never inside a surrogate pair), and an empty name becomes `agent`.
 */
export function sanitizeStreamName(name: string): string {
  let cleaned = name.replace(/[:*]/g, "_");
  if (cleaned.length > MAX_NAME_LENGTH) {
    let end = MAX_NAME_LENGTH;
    const last = cleaned.charCodeAt(end - 1);
    if (last >= 0xd800 && last <= 0xdbff) end--;
    cleaned = cleaned.slice(0, end);
  }
  return cleaned.length === 0 ? "agent" : cleaned;
}

/**
 * The CloudWatch console's encoding of a name inside its `#logsV2:` fragment: percent-encoded,
 * then every '%' written `$25` (so '/' is `$252F`).
 */
export function consoleEncode(name: string): string {
  return encodeURIComponent(name)
    .replace(/[!'()*~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`)
    .replaceAll("%", "$25");
}

/**
 * The AWS console URL of a log stream.
 *
 * @example
 * consoleUrl("eu-west-1", "/ephemeral-agent/lambda", "build.lambda-abcdef");
 * // "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups/log-group/$252Fephemeral-agent$252Flambda/log-events/build.lambda-abcdef"
 */
export function consoleUrl(region: string, logGroupName: string, logStreamName: string): string {
  const host = region.startsWith("cn-")
    ? `${region}.console.amazonaws.cn`
    : region.startsWith("us-gov-")
      ? "console.amazonaws-us-gov.com"
      : `${region}.console.aws.amazon.com`;
  const fragment = `logsV2:log-groups/log-group/${consoleEncode(logGroupName)}/log-events/${consoleEncode(logStreamName)}`;
  return `https://${host}/cloudwatch/home?region=${encodeURIComponent(region)}#${fragment}`;
}

/**
 * {@link cloudWatchSettings} for a wrapper that collects every problem before failing: the
 * settings, or undefined with their problems (each naming its variable) added to `problems`.
 */
export function readCloudWatchSettings(
  env: CloudWatchEnv,
  runtime: RuntimeKind,
  agentName: string,
  problems: ConfigProblem[],
): CloudWatchSettings | undefined {
  try {
    return cloudWatchSettings(env, runtime, agentName);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems.push(...error.problems);
    return undefined;
  }
}

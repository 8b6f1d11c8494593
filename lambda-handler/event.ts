import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { type AgentConfig, ConfigError, parseAgentConfig, zodProblems } from "../agent-core/index.ts";

/**
 * The invocation payload: exactly what the Jenkins "AWS Lambda Cloud" plugin sends
 * (`url`, `node_secret`, `node_name`), plus optional extras of this project.
 */
export const lambdaEventSchema = z
  .object({
    url: z.string(),
    node_secret: z.string(),
    node_name: z.string(),
    labels: z.union([z.array(z.string()), z.string()]).optional(),
  })
  .loose();

/** Variables never passed to steps: the function role's credentials. */
const HIDDEN_ENV = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"];

export interface LambdaLaunch {
  remainingMs: number;
  /** Stop this long before the invocation's own timeout (logs flushed, job-end sent). */
  marginMs: number;
  env: Readonly<Record<string, string | undefined>>;
  now?: number;
}

/**
 * Builds the agent config from an invocation event. Throws ConfigError listing every problem.
 *
 * @example
 * const config = fromLambdaEvent(event, { remainingMs: context.getRemainingTimeInMillis(), marginMs: 20_000, env: process.env });
 */
export function fromLambdaEvent(event: unknown, launch: LambdaLaunch): AgentConfig {
  const parsed = lambdaEventSchema.safeParse(event);
  if (!parsed.success)
    throw new ConfigError(zodProblems(parsed.error, new Set(["node_secret"])), "Invalid invocation event");
  const { url, node_secret, node_name, labels } = parsed.data;
  const baseEnv: Record<string, string> = {};
  for (const [key, value] of Object.entries(launch.env)) {
    if (value !== undefined && !HIDDEN_ENV.includes(key)) baseEnv[key] = value;
  }
  baseEnv.HOME = tmpdir();
  return parseAgentConfig({
    url,
    secret: node_secret,
    name: node_name,
    labels: typeof labels === "string" ? labels.split(/[\s,]+/).filter(Boolean) : (labels ?? []),
    runtime: "lambda",
    workDir: join(tmpdir(), "agent"),
    deadlineAt: (launch.now ?? Date.now()) + launch.remainingMs - launch.marginMs,
    baseEnv,
  });
}

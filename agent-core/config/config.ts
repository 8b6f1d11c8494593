import { tmpdir } from "node:os";
import { join } from "node:path";
import * as z from "zod/mini";
import { clip } from "../clip.ts";
import { ConfigError, type ConfigProblem } from "../errors.ts";
import { agentModeSchema, jenkinsSettingsSchema } from "../jenkins/settings.ts";
import { MIN_SECRET_CHARS } from "../logs/masker.ts";
import { runtimeKindSchema } from "../protocol/messages.ts";
import { validateInput } from "../validation.ts";

/**
 * Longest duration a tunable accepts: one day. Far below Node's 2^31-1 ms timer limit, so that
 * any timer made of a few tunables fires when it should.
 */
export const MAX_TUNABLE_MS = 86_400_000;

const ms = (min: number) =>
  z.int().check(z.gte(min), z.lte(MAX_TUNABLE_MS, `must be at most ${MAX_TUNABLE_MS} ms (one day)`));

/**
 * Everything the agent core needs, validated. Wrappers (container entrypoint, Lambda handler)
 * build the raw input from their launch form and call {@link parseAgentConfig}.
 */
export const agentConfigSchema = z.object({
  /** Controller URL as given (http, https, ws or wss). */
  url: z.string().check(z.refine(isControllerUrl, "must be an http(s):// or ws(s):// URL")),
  secret: z.string().check(
    z.maxLength(1024),
    // It travels in the Secret-Key header: only printable ASCII can (Jenkins secrets are hex).
    z.regex(/^[\x21-\x7e]*$/, "must be printable ASCII without spaces (it is sent in an HTTP header)"),
    z.refine(
      (value) => [...value].length >= MIN_SECRET_CHARS,
      `must be at least ${MIN_SECRET_CHARS} characters: a shorter secret cannot be masked in logs`,
    ),
  ),
  name: z.string().check(
    z.minLength(1, "must not be empty"),
    z.maxLength(200),
    // Jenkins names Lambda nodes "<label expression>.lambda-xxxxxx": spaces, && and any
    // Unicode are fine (the name travels percent-encoded in the Node-Name header).
    z.refine(isPrintableName, "must not contain control characters or slashes"),
  ),
  labels: z._default(z.array(z.string().check(z.minLength(1), z.maxLength(100))).check(z.maxLength(100)), []),
  /** Root of the agent's files; each job gets a fresh workspace below it. */
  workDir: z._default(z.string().check(z.minLength(1)), join(tmpdir(), "agent")),
  runtime: z._default(runtimeKindSchema, "local"),
  /** Epoch ms by which the agent must have stopped (null: none). */
  deadlineAt: z._default(z.nullable(z.int().check(z.positive())), null),
  /** A step is not started when less than this remains before the deadline's stop. */
  deadlineStepStartMinMs: z._default(ms(0), 15_000),
  /** Configured cap on the bytes a job may write to the work dir's filesystem (null: the free space only). */
  diskBudgetBytes: z._default(z.nullable(z.int().check(z.gte(0))), null),
  /** Free space kept for the agent itself (logs, results): the budget stops the job before it is used. */
  diskHeadroomBytes: z._default(z.int().check(z.gte(0)), 16 * 1_048_576),
  /** How often a running step's disk use and memory are sampled. */
  monitorIntervalMs: z._default(ms(10), 250),
  /** How long to keep trying to reach the controller before giving up. */
  connectTimeoutMs: z._default(ms(0), 60_000),
  /** How long to wait for a job once connected. */
  idleTimeoutMs: z._default(ms(1), 600_000),
  heartbeatIntervalMs: z._default(ms(10), 10_000),
  /** A missing pong this long after a ping ends the connection. */
  heartbeatTimeoutMs: z._default(ms(10), 30_000),
  /** SIGTERM -> SIGKILL delay when a step is stopped. */
  graceMs: z._default(ms(0), 10_000),
  /** After a step's process exits, how long its pipes may stay open (held by a grandchild). */
  drainMs: z._default(ms(0), 2_000),
  /** How long to wait for the controller to acknowledge `job-end`. */
  ackTimeoutMs: z._default(ms(1), 30_000),
  /**
   * At most 256 KiB, so that a frame with its header fits the controller's 1 MiB maxPayload. The
   * default is that largest size: bulk output then costs both sides the fewest frames (each one
   * has a fixed cost: a send, an ack, the controller's journal line), and a slow stream is sent
   * by `frameFlushMs`, whatever the size.
   */
  frameMaxBytes: z._default(z.int().check(z.gte(256), z.lte(262_144)), 262_144),
  frameFlushMs: z._default(ms(0), 10),
  /** Unacknowledged output spilled to disk at most; beyond memory + spool, the step's pipes are paused (never dropped). */
  maxSpoolBytes: z._default(z.int().check(z.gte(0)), 64 * 1_048_576),
  /** After losing the controller mid-job, how long to keep trying to resume the session. */
  reconnectTimeoutMs: z._default(ms(0), 60_000),
  /** Unacknowledged output kept in memory; beyond it, output spills to a file in the work dir. */
  maxUnackedBytes: z._default(z.int().check(z.gte(65_536)), 4 * 1_048_576),
  /** Largest frame accepted from the controller. */
  maxPayloadBytes: z._default(z.int().check(z.gte(65_536)), 16 * 1_048_576),
  handshakeTimeoutMs: z._default(ms(1), 10_000),
  /** Most entries a workspace seed or an artifact set may hold. */
  maxArchiveEntries: z._default(z.int().check(z.gte(1)), 100_000),
  /** Environment given to every step before the job's own (never contains the agent's secret). */
  baseEnv: z._default(z.record(z.string(), z.string()), {}),
  /** `auto` asks the controller what it is; `native` speaks protocol v1; `jenkins` runs remoting's agent.jar. */
  mode: z._default(agentModeSchema, "auto"),
  /** Jenkins mode: transport, Java and remoting options (see jenkins/settings.ts). */
  jenkins: z.prefault(jenkinsSettingsSchema, {}),
});

export type AgentConfig = z.infer<typeof agentConfigSchema>;
export type AgentConfigInput = z.input<typeof agentConfigSchema>;

/** Fields whose values never appear in errors or diagnostics. */
const SECRET_FIELDS = new Set(["secret"]);

/**
 * Validates raw configuration; throws {@link ConfigError} listing every problem at once.
 *
 * @example
 * const config = parseAgentConfig({ url: "http://127.0.0.1:8080/", secret, name: "agent-1" });
 */
export function parseAgentConfig(input: unknown): AgentConfig {
  const result = validateInput(agentConfigSchema, input, { reportInput: true });
  if (result.success) return result.data;
  throw new ConfigError(zodProblems(result.error, SECRET_FIELDS));
}

/** Turns zod issues into problems naming the field, the rule and the value (secrets masked). */
export function zodProblems(
  error: z.core.$ZodError,
  secretFields: ReadonlySet<string> = SECRET_FIELDS,
): ConfigProblem[] {
  return error.issues.map((issue) => {
    const field = clip(issue.path.join(".") || "(input)", 200);
    if (issue.code === "unrecognized_keys") {
      return {
        field,
        message: `unknown field${issue.keys.length === 1 ? "" : "s"} ${issue.keys.map((k) => `\`${clip(k)}\``).join(", ")}`,
      };
    }
    // The whole input may hold secrets: values are shown only for named fields that are not secret.
    const top = String(issue.path[0] ?? "");
    const input = "input" in issue ? issue.input : undefined;
    if (issue.path.length === 0) return { field, message: issue.message };
    const shown = secretFields.has(top) ? "***" : describeValue(input);
    return { field, message: `${issue.message}, got ${shown}` };
  });
}

export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = JSON.stringify(value) ?? String(value);
  return `\`${clip(text)}\` (${Array.isArray(value) ? "array" : value === null ? "null" : typeof value})`;
}

function isPrintableName(value: string): boolean {
  for (const char of value) {
    const code = char.codePointAt(0)!;
    if (code < 0x20 || code === 0x7f || char === "/" || char === "\\") return false;
  }
  return true;
}

function isControllerUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return ["http:", "https:", "ws:", "wss:"].includes(url.protocol) && url.hostname !== "";
  } catch {
    return false;
  }
}

/** The WebSocket URL of the agent endpoint under a controller URL: `http://h/base/` -> `ws://h/base/agents/v1`. */
export function agentSocketUrl(controllerUrl: string, path: string): string {
  const url = new URL(controllerUrl);
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  url.pathname += path;
  url.search = "";
  url.hash = "";
  return url.toString();
}

import { parse as parseShellWords } from "shell-quote";
import * as z from "zod/mini";
import { clip } from "../clip.ts";
import type { ConfigProblem } from "../errors.ts";

/**
 * How the agent talks to its controller: `native` speaks protocol v1 to the reference controller,
 * `jenkins` supervises Jenkins remoting's agent.jar, `auto` asks the controller once (a Jenkins
 * controller answers every request with `X-Jenkins`).
 */
export const AGENT_MODES = ["auto", "native", "jenkins"] as const;
export type AgentMode = (typeof AGENT_MODES)[number];
export const agentModeSchema = z.enum(AGENT_MODES);

/** Remoting options the supervisor sets itself: REMOTING_OPTS may not repeat them. */
export const OWNED_REMOTING_OPTIONS = [
  "-url",
  "-secret",
  "-name",
  "-workDir",
  "-webSocket",
  "-tunnel",
  "-noreconnect",
  "-noReconnect",
  "-noReconnectAfter",
  "-jnlpUrl",
] as const;

/** A non-empty string, or null (the default) when not given. */
function optionalText() {
  return z._default(z.nullable(z.string().check(z.minLength(1))), null);
}

/**
 * Jenkins mode's settings (ignored in native mode). Every field has the default a plain
 * `jenkins/inbound-agent` container would have.
 */
export const jenkinsSettingsSchema = z.object({
  /** Connect over WebSocket (`-webSocket`, `JENKINS_WEB_SOCKET=true`) instead of the TCP agent port. */
  webSocket: z._default(z.boolean(), false),
  /** `-tunnel HOST:PORT` (`JENKINS_TUNNEL`): reach the TCP agent port through this address. */
  tunnel: optionalText(),
  /** `-direct HOST:PORT` with `-instanceIdentity` (`JENKINS_DIRECT_CONNECTION`, `JENKINS_INSTANCE_IDENTITY`). */
  direct: optionalText(),
  instanceIdentity: optionalText(),
  /** `-protocols` for a direct connection (`JENKINS_PROTOCOLS`). */
  protocols: z._default(z.array(z.string().check(z.minLength(1))), []),
  /** JVM options (`JENKINS_JAVA_OPTS`, else `JAVA_OPTS`): after the agent's own, so they win. */
  javaOpts: z._default(z.array(z.string()), []),
  /** Extra remoting arguments: pass-through flags from the command line, then `REMOTING_OPTS`. */
  remotingOpts: z._default(z.array(z.string()), []),
  /** The java to run (`JENKINS_JAVA_BIN`); else `$JAVA_HOME/bin/java`, else `java` on PATH. */
  javaBin: optionalText(),
  javaHome: optionalText(),
  /** A jar baked into the image (`JENKINS_AGENT_FILE`), used when the controller cannot serve one. */
  agentFile: optionalText(),
  /** Memory the platform gives the agent in MB (Lambda's function memory); null: the cgroup limit or the machine's. */
  memoryMb: z._default(z.nullable(z.int().check(z.gte(64))), null),
  /** Largest agent.jar accepted from the controller. */
  jarMaxBytes: z._default(z.int().check(z.gte(65_536)), 32 * 1_048_576),
  /** How long fetching agent.jar may take. */
  jarFetchTimeoutMs: z._default(z.int().check(z.gte(100)), 30_000),
  /** Class-data sharing for agent.jar (`AGENT_JAVA_CDS=off` turns it off). */
  classDataSharing: z._default(z.boolean(), true),
});

export type JenkinsSettings = z.infer<typeof jenkinsSettingsSchema>;
export type JenkinsSettingsInput = z.input<typeof jenkinsSettingsSchema>;

/** The environment as `process.env` gives it (or a plain object in tests). */
type Env = Readonly<Record<string, string | undefined>>;

/**
 * The Jenkins-mode variables of `env`, as the `jenkins/inbound-agent` image reads them, for both
 * wrappers. Each bad value adds a problem naming its variable; nothing is silently defaulted.
 *
 * | variable                                    | field                       |
 * | ------------------------------------------- | --------------------------- |
 * | `JENKINS_WEB_SOCKET` (true/false)           | `webSocket`                 |
 * | `JENKINS_TUNNEL`                            | `tunnel`                    |
 * | `JENKINS_DIRECT_CONNECTION`                 | `direct`                    |
 * | `JENKINS_INSTANCE_IDENTITY`                 | `instanceIdentity`          |
 * | `JENKINS_PROTOCOLS` (comma separated)       | `protocols`                 |
 * | `JENKINS_JAVA_OPTS`, else `JAVA_OPTS`       | `javaOpts` (shell words)    |
 * | `REMOTING_OPTS`                             | `remotingOpts` (shell words) |
 * | `JENKINS_JAVA_BIN`, `JAVA_HOME`             | `javaBin`, `javaHome`       |
 * | `JENKINS_AGENT_FILE`                        | `agentFile`                 |
 * | `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (Lambda)  | `memoryMb`                  |
 * | `AGENT_JAVA_CDS` (on/off)                   | `classDataSharing`          |
 *
 * @example
 * readJenkinsSettings({ JENKINS_WEB_SOCKET: "true", JAVA_OPTS: "-Xmx256m" }, problems);
 * // { webSocket: true, javaOpts: ["-Xmx256m"] }
 */
export function readJenkinsSettings(env: Env, problems: ConfigProblem[]): Partial<JenkinsSettingsInput> {
  const out: Partial<JenkinsSettingsInput> = {};
  const webSocket = readBoolean(env, "JENKINS_WEB_SOCKET", problems);
  if (webSocket !== undefined) out.webSocket = webSocket;
  const cds = readSwitch(env, "AGENT_JAVA_CDS", problems);
  if (cds !== undefined) out.classDataSharing = cds;
  for (const [variable, field] of [
    ["JENKINS_TUNNEL", "tunnel"],
    ["JENKINS_DIRECT_CONNECTION", "direct"],
    ["JENKINS_INSTANCE_IDENTITY", "instanceIdentity"],
    ["JENKINS_JAVA_BIN", "javaBin"],
    ["JAVA_HOME", "javaHome"],
    ["JENKINS_AGENT_FILE", "agentFile"],
  ] as const) {
    const value = given(env, variable);
    if (value !== undefined) out[field] = value;
  }
  const protocols = given(env, "JENKINS_PROTOCOLS");
  if (protocols !== undefined) out.protocols = protocols.split(/[\s,]+/).filter((p) => p !== "");
  const javaOptsVariable = given(env, "JENKINS_JAVA_OPTS") !== undefined ? "JENKINS_JAVA_OPTS" : "JAVA_OPTS";
  const javaOpts = readShellWords(env, javaOptsVariable, problems);
  if (javaOpts !== undefined) out.javaOpts = javaOpts;
  const remotingOpts = readShellWords(env, "REMOTING_OPTS", problems);
  if (remotingOpts !== undefined) {
    checkRemotingOpts(remotingOpts, "REMOTING_OPTS", problems);
    out.remotingOpts = remotingOpts;
  }
  const memory = given(env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE");
  if (memory !== undefined) {
    const value = Number(memory);
    if (Number.isSafeInteger(value) && value >= 64) out.memoryMb = value;
    else
      problems.push({
        field: "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        message: `Expected \`AWS_LAMBDA_FUNCTION_MEMORY_SIZE\` to be an integer >= 64 (MB), got \`${memory}\` (string)`,
      });
  }
  return out;
}

/**
 * Remoting arguments given by the user may not set what the supervisor sets itself (URL, secret,
 * name, work dir, transport, reconnect policy): each one found is a problem naming `source`.
 */
export function checkRemotingOpts(args: readonly string[], source: string, problems: ConfigProblem[]): void {
  for (const arg of args) {
    const name = arg.split("=")[0] ?? arg;
    if ((OWNED_REMOTING_OPTIONS as readonly string[]).includes(name)) {
      problems.push({
        field: source,
        message: `Expected \`${source}\` not to contain \`${name}\`: the agent sets it (use the agent's own argument or variable instead)`,
      });
    }
  }
}

/**
 * Words of a shell-like string (quotes and backslashes as in sh), with `$VAR` kept literally.
 * Undefined when the variable is unset or blank; a problem when it holds shell operators.
 */
export function readShellWords(env: Env, variable: string, problems: ConfigProblem[]): string[] | undefined {
  const raw = given(env, variable);
  if (raw === undefined) return undefined;
  const words: string[] = [];
  for (const entry of parseShellWords(raw, (key) => `$${key}`)) {
    if (typeof entry === "string") words.push(entry);
    else if ("op" in entry && entry.op === "glob") words.push(entry.pattern);
    else {
      const what = "op" in entry ? `the shell operator \`${entry.op}\`` : "a comment";
      problems.push({
        field: variable,
        message: `Expected \`${variable}\` to be words separated by spaces (quotes allowed), got ${what}`,
      });
      return undefined;
    }
  }
  return words;
}

function readBoolean(env: Env, variable: string, problems: ConfigProblem[]): boolean | undefined {
  const raw = given(env, variable);
  if (raw === undefined) return undefined;
  const value = raw.trim().toLowerCase();
  if (["true", "1", "yes", "on"].includes(value)) return true;
  if (["false", "0", "no", "off"].includes(value)) return false;
  problems.push({
    field: variable,
    message: `Expected \`${variable}\` to be true or false, got \`${clip(raw)}\` (string)`,
  });
  return undefined;
}

function readSwitch(env: Env, variable: string, problems: ConfigProblem[]): boolean | undefined {
  const raw = given(env, variable);
  if (raw === undefined) return undefined;
  const value = raw.trim().toLowerCase();
  if (value === "on" || value === "off") return value === "on";
  problems.push({
    field: variable,
    message: `Expected \`${variable}\` to be on or off, got \`${clip(raw)}\` (string)`,
  });
  return undefined;
}

/**
 * The mode from `AGENT_MODE` (undefined when unset); a bad value adds a problem. The wrappers
 * let an argument (`--mode`) or the Lambda event's `mode` win over it.
 */
export function readAgentMode(env: Env, problems: ConfigProblem[]): AgentMode | undefined {
  const raw = given(env, "AGENT_MODE");
  return raw === undefined ? undefined : parseAgentMode(raw, "AGENT_MODE", problems);
}

/** One mode value from `source` (a flag, variable or event field), or a problem naming it. */
export function parseAgentMode(
  raw: string,
  source: string,
  problems: ConfigProblem[],
): AgentMode | undefined {
  const value = raw.trim().toLowerCase();
  if ((AGENT_MODES as readonly string[]).includes(value)) return value as AgentMode;
  problems.push({
    field: source,
    message: `Expected \`${source}\` to be one of ${AGENT_MODES.join(", ")}, got \`${clip(raw)}\` (string)`,
  });
  return undefined;
}

function given(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === "" ? undefined : value;
}

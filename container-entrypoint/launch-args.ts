/**
 * The container entrypoint's launch forms turned into one {@link LaunchPlan}: remoting and
 * inbound-agent flags, the amazon-ecs plugin's positional `SECRET NAME`, GNU-style variants of our
 * own flags, args4j `@file` arguments and the environment. Pure: the wrapper passes
 * `process.argv.slice(2)`, `process.env` and a file reader, so tests pass plain values.
 */
import {
  type AgentConfig,
  agentConfigSchema,
  type CloudWatchSettings,
  ConfigError,
  type ConfigProblem,
  clip,
  ExitCode,
  isLogLevel,
  type JenkinsSettingsInput,
  type LogLevel,
  MAX_DURATION_MS,
  MIN_SECRET_CHARS,
  parseAgentConfig,
  parseAgentMode,
  proxyProblems,
  RUNTIME_KINDS,
  type RuntimeKind,
  readAgentMode,
  readCloudWatchSettings,
  readIntegerEnv,
  readJenkinsSettings,
  readTunables,
  TUNABLE_ENV,
} from "../agent-core/start.ts";

/** What the entrypoint should do, decided from its arguments and environment. */
export type LaunchPlan =
  | { kind: "help" }
  | { kind: "version" }
  /** jenkins-agent behaviour: a single non-option argument is executed as a command. */
  | { kind: "exec"; argv: string[] }
  /**
   * Run the agent. `ignored`: remoting flags and variables accepted for compatibility, without
   * effect. `secrets`: every value that is or may be the secret (never shown, never given to steps).
   */
  | {
      kind: "agent";
      config: AgentConfig;
      logLevel: LogLevel;
      ignored: string[];
      cloudWatch: CloudWatchSettings;
      secrets: string[];
    };

/** The environment as `process.env` gives it. */
export type LaunchEnv = Readonly<Record<string, string | undefined>>;

/** Reads a whole file as UTF-8 text; throws when it cannot. */
export type ReadTextFile = (path: string) => string;

const PROGRAM = "ephemeral-build-agent";

// ---------------------------------------------------------------------------------------------
// Flags

const VALUE_KEYS = ["url", "secret", "name", "workDir", "labels", "logLevel", "mode"] as const;
type ValueKey = (typeof VALUE_KEYS)[number];

const VALUE_FLAGS: Readonly<Record<ValueKey, readonly string[]>> = {
  url: ["-url", "--url"],
  secret: ["-secret", "--secret"],
  name: ["-name", "--name"],
  workDir: ["-workDir", "--work-dir"],
  labels: ["--labels", "-labels"],
  logLevel: ["--log-level"],
  mode: ["--mode"],
};
const HELP_FLAGS = ["--help", "-help", "-h"];
const VERSION_FLAGS = ["--version", "-version"];
/** Remoting switches accepted without effect: the agent's own reconnect policy governs, and remoting is always headless. */
const IGNORED_SWITCHES = ["-noreconnect", "-noReconnect", "-headless"];
/** Remoting options taking a value, accepted without effect. */
const IGNORED_WITH_VALUE = ["-noReconnectAfter"];
/** Remoting switches passed on to remoting in Jenkins mode (no effect in native mode). */
const REMOTING_SWITCHES = [
  "-disableHttpsCertValidation",
  "-noCertificateCheck",
  "-noKeepAlive",
  "-failIfWorkDirIsMissing",
];
/** Remoting options with a value passed on to remoting in Jenkins mode. */
const REMOTING_WITH_VALUE = [
  "-webSocketHeader",
  "-jar-cache",
  "-agentLog",
  "-loggingConfig",
  "-cert",
  "-internalDir",
  "-proxyCredentials",
  "-credentials",
];
/** Remoting options the agent reads into its Jenkins settings. */
const JENKINS_FLAGS: Readonly<
  Record<string, "webSocket" | "tunnel" | "direct" | "instanceIdentity" | "protocols">
> = {
  "-webSocket": "webSocket",
  "-tunnel": "tunnel",
  "-direct": "direct",
  "-instanceIdentity": "instanceIdentity",
  "-protocols": "protocols",
};

type Flag =
  | { kind: "value"; key: ValueKey }
  | { kind: "help" }
  | { kind: "version" }
  | { kind: "ignored"; takesValue: boolean }
  | { kind: "remoting"; takesValue: boolean }
  | { kind: "jenkins"; field: (typeof JENKINS_FLAGS)[string] };

const FLAGS: ReadonlyMap<string, Flag> = flagTable();

function flagTable(): Map<string, Flag> {
  const table = new Map<string, Flag>();
  for (const key of VALUE_KEYS) for (const name of VALUE_FLAGS[key]) table.set(name, { kind: "value", key });
  for (const name of HELP_FLAGS) table.set(name, { kind: "help" });
  for (const name of VERSION_FLAGS) table.set(name, { kind: "version" });
  for (const name of IGNORED_SWITCHES) table.set(name, { kind: "ignored", takesValue: false });
  for (const name of IGNORED_WITH_VALUE) table.set(name, { kind: "ignored", takesValue: true });
  for (const name of REMOTING_SWITCHES) table.set(name, { kind: "remoting", takesValue: false });
  for (const name of REMOTING_WITH_VALUE) table.set(name, { kind: "remoting", takesValue: true });
  for (const [name, field] of Object.entries(JENKINS_FLAGS)) table.set(name, { kind: "jenkins", field });
  return table;
}

// ---------------------------------------------------------------------------------------------
// Environment

/**
 * Variables that carry the agent's secret: never passed on to steps. The image's entrypoint
 * (images/entrypoint.sh) moves the same ones out of the environment of tini and the agent.
 */
export const SECRET_ENV: ReadonlySet<string> = new Set([
  "JENKINS_SECRET",
  "SLAVE_NODE_SECRET",
  "AGENT_SECRET",
]);
const URL_ENV = ["JENKINS_URL"];
const SECRET_SOURCES_ENV = ["JENKINS_SECRET", "SLAVE_NODE_SECRET"];
const NAME_ENV = ["JENKINS_AGENT_NAME", "JENKINS_NAME", "SLAVE_NODE_NAME"];
const WORK_DIR_ENV = ["JENKINS_AGENT_WORKDIR"];

/** ECS has no deadline of its own: an optional maximum duration, counted from the agent's start. */
const MAX_DURATION_ENV = "AGENT_MAX_DURATION_MS";

const MISSING = {
  url: "missing; give -url URL, --url=URL or JENKINS_URL",
  secret: "missing; give -secret S, a positional SECRET, JENKINS_SECRET or SLAVE_NODE_SECRET",
  name: "missing; give -name N, a positional NAME, JENKINS_AGENT_NAME (or JENKINS_NAME) or SLAVE_NODE_NAME",
} as const;

// ---------------------------------------------------------------------------------------------
// Parsing

/** A launch input and where it came from: a flag as typed, a positional, or a variable. */
interface Given {
  value: string;
  from: string;
}

interface ScannedArgs {
  values: Map<ValueKey, Given>;
  labels: Given[];
  positionals: string[];
  ignored: string[];
  /** Remoting arguments to pass on in Jenkins mode, as args4j takes them (`-opt value`). */
  remoting: string[];
  jenkins: Partial<JenkinsSettingsInput>;
  help: boolean;
  version: boolean;
  problems: ConfigProblem[];
}

/** One argument waiting to be scanned; lines read from an `@file` are not expanded again. */
interface Token {
  text: string;
  expand: boolean;
}

/**
 * Decides what the entrypoint does from its arguments and environment. Arguments win over the
 * environment. Throws {@link ConfigError} (code `AGENT_ERR_CONFIG`) listing every problem at once;
 * the secret never appears in it.
 *
 * @example
 * const plan = parseLaunch(process.argv.slice(2), process.env, (p) => readFileSync(p, "utf8"));
 * if (plan.kind === "agent") await runAgent(plan.config, { logger, signal });
 */
export function parseLaunch(argv: string[], env: LaunchEnv, readFile: ReadTextFile): LaunchPlan {
  const [only] = argv;
  if (argv.length === 1 && only !== undefined && only !== "" && !/^[-@]/.test(only)) {
    return { kind: "exec", argv: [...argv] };
  }
  const scan = scanArgv(argv, readFile);
  if (scan.help) return { kind: "help" };
  if (scan.version) return { kind: "version" };
  return agentPlan(scan, env, readFile);
}

function scanArgv(argv: readonly string[], readFile: ReadTextFile): ScannedArgs {
  const scan: ScannedArgs = {
    values: new Map(),
    labels: [],
    positionals: [],
    ignored: [],
    remoting: [],
    jenkins: {},
    help: false,
    version: false,
    problems: [],
  };
  const pending: Token[] = argv.map((text) => ({ text, expand: true }));
  let optionsEnded = false;
  for (let token = pending.shift(); token !== undefined; token = pending.shift()) {
    if (optionsEnded) scan.positionals.push(token.text);
    else if (token.text === "--") optionsEnded = true;
    else if (token.expand && isAtFile(token.text))
      pending.unshift(...expandAtFile(token.text, readFile, scan.problems));
    else if (looksLikeOption(token.text)) scanOption(token.text, pending, scan);
    else scan.positionals.push(token.text);
  }
  return scan;
}

function isAtFile(text: string): boolean {
  return text.length > 1 && text.startsWith("@");
}

function looksLikeOption(text: string): boolean {
  return text.length > 1 && text.startsWith("-");
}

/** The option's name without any `=value` (values may be secret: never shown). */
function optionName(text: string): string {
  const eq = text.indexOf("=");
  return eq === -1 ? text : text.slice(0, eq);
}

/**
 * args4j's `@file`: each non-empty line of the file is one argument. Lines are trimmed (which strips
 * CR), so `-url U @secretfile NAME` gives the same secret as `-secret @secretfile`.
 */
function expandAtFile(text: string, readFile: ReadTextFile, problems: ConfigProblem[]): Token[] {
  const path = text.slice(1);
  const read = tryRead(readFile, path);
  if (!read.ok) {
    problems.push({
      field: clip(text),
      message: `Cannot read the arguments file \`${clip(path)}\`: ${read.reason}`,
    });
    return [];
  }
  return read.text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "")
    .map((line) => ({ text: line, expand: false }));
}

function scanOption(text: string, pending: Token[], scan: ScannedArgs): void {
  const name = optionName(text);
  const inline = name === text ? undefined : text.slice(name.length + 1);
  const flag = FLAGS.get(name);
  if (flag === undefined) {
    scan.problems.push({
      field: clip(name),
      message: `Unknown option \`${clip(name)}\`; see --help for the accepted options`,
    });
    return;
  }
  const takesValue =
    flag.kind === "value" ||
    ((flag.kind === "ignored" || flag.kind === "remoting") && flag.takesValue) ||
    (flag.kind === "jenkins" && flag.field !== "webSocket");
  if (!takesValue && inline !== undefined) {
    scan.problems.push({ field: name, message: `Expected \`${name}\` to be given without a value` });
    return;
  }
  if (flag.kind === "help") scan.help = true;
  else if (flag.kind === "version") scan.version = true;
  else if (flag.kind === "ignored" && !flag.takesValue) scan.ignored.push(name);
  else if (flag.kind === "remoting" && !flag.takesValue) scan.remoting.push(name);
  else if (flag.kind === "jenkins" && flag.field === "webSocket") scan.jenkins.webSocket = true;
  else {
    const value = inline ?? takeValue(name, pending, scan.problems);
    if (value === undefined) return;
    if (flag.kind === "ignored") scan.ignored.push(name);
    else if (flag.kind === "remoting") scan.remoting.push(name, value);
    else if (flag.kind === "jenkins") recordJenkins(scan, flag.field, value);
    else recordValue(scan, flag.key, { value, from: name });
  }
}

/** The argument after `name`, taken as is (never `@`-expanded); a missing one is a problem. */
function takeValue(name: string, pending: Token[], problems: ConfigProblem[]): string | undefined {
  const next = pending[0];
  if (next === undefined || looksLikeOption(next.text)) {
    const got = next === undefined ? "nothing" : `the option \`${optionName(next.text)}\``;
    problems.push({ field: name, message: `Expected a value after \`${name}\`, got ${got}` });
    return undefined;
  }
  pending.shift();
  return next.text;
}

/** Labels accumulate; a repeated `-url` keeps the first (remoting's first candidate); others: last wins. */
function recordValue(scan: ScannedArgs, key: ValueKey, given: Given): void {
  if (key === "labels") scan.labels.push(given);
  else if (key === "url" && scan.values.has("url")) scan.ignored.push(`${given.from} (repeated)`);
  else scan.values.set(key, given);
}

function recordJenkins(scan: ScannedArgs, field: (typeof JENKINS_FLAGS)[string], value: string): void {
  if (field === "protocols") scan.jenkins.protocols = [...(scan.jenkins.protocols ?? []), value];
  else if (field !== "webSocket") scan.jenkins[field] = value;
}

type ReadResult = { ok: true; text: string } | { ok: false; reason: string };

function tryRead(readFile: ReadTextFile, path: string): ReadResult {
  try {
    return { ok: true, text: readFile(path) };
  } catch (error) {
    return { ok: false, reason: error instanceof Error ? error.message : String(error) };
  }
}

// ---------------------------------------------------------------------------------------------
// Building the agent plan

interface Identity {
  url?: Given;
  secret?: Given;
  name?: Given;
}

function agentPlan(scan: ScannedArgs, env: LaunchEnv, readFile: ReadTextFile): LaunchPlan {
  const problems = [...scan.problems];
  const identity = resolveIdentity(scan, env, problems);
  const secret = identity.secret && resolveSecret(identity.secret, readFile, problems);
  const secrets = knownSecrets(scan, env, secret);
  const logLevel = resolveLogLevel(
    scan.values.get("logLevel") ?? envGiven(env, ["AGENT_LOG_LEVEL"]),
    problems,
  );

  const input: Record<string, unknown> = {};
  const sources = new Map<string, string>();
  const put = (field: string, value: unknown, from: string) => {
    input[field] = value;
    sources.set(field, from);
  };
  for (const [field, given] of [
    ["url", identity.url],
    ["secret", secret],
    ["name", identity.name],
    ["workDir", scan.values.get("workDir") ?? envGiven(env, WORK_DIR_ENV)],
  ] as const) {
    if (given !== undefined) put(field, given.value, given.from);
  }
  const labels = resolveLabels(scan, env);
  if (labels !== undefined) put("labels", labels.value, labels.from);
  for (const { variable, field, value } of readTunables(env, problems)) put(field, value, variable);
  problems.push(...proxyProblems(env));
  const maxDurationMs = readIntegerEnv(env, MAX_DURATION_ENV, problems, {
    unit: "milliseconds",
    max: MAX_DURATION_MS,
  });
  if (maxDurationMs !== undefined) put("deadlineAt", Date.now() + maxDurationMs, MAX_DURATION_ENV);
  input.runtime = resolveRuntime(env, problems);
  input.baseEnv = childEnv(env, secrets);
  const modeGiven = scan.values.get("mode");
  const mode = modeGiven
    ? parseAgentMode(modeGiven.value, modeGiven.from, problems)
    : readAgentMode(env, problems);
  if (mode !== undefined) put("mode", mode, modeGiven?.from ?? "AGENT_MODE");
  input.jenkins = resolveJenkins(scan, env, mode ?? "auto", problems);

  const config = buildConfig(input, sources, problems);
  const cloudWatch =
    config === undefined ? undefined : readCloudWatchSettings(env, config.runtime, config.name, problems);
  if (config === undefined || cloudWatch === undefined || problems.length > 0) {
    throw new ConfigError(redact(problems, secrets));
  }
  return {
    kind: "agent",
    config,
    logLevel,
    ignored: unique(scan.ignored),
    cloudWatch,
    secrets,
  };
}

/** url, secret (still possibly an `@file` reference) and name: argv, then positionals, then env. */
function resolveIdentity(scan: ScannedArgs, env: LaunchEnv, problems: ConfigProblem[]): Identity {
  const positional = resolvePositionals(scan, problems);
  const identity: Identity = {
    url: scan.values.get("url") ?? envGiven(env, URL_ENV),
    secret: scan.values.get("secret") ?? positional.secret ?? envGiven(env, SECRET_SOURCES_ENV),
    name: scan.values.get("name") ?? positional.name ?? envGiven(env, NAME_ENV),
  };
  for (const field of ["url", "secret", "name"] as const) {
    if (identity[field] === undefined) problems.push({ field, message: MISSING[field] });
  }
  return identity;
}

/** The amazon-ecs form's `SECRET NAME` (positional values are never shown: one is the secret). */
function resolvePositionals(scan: ScannedArgs, problems: ConfigProblem[]): Omit<Identity, "url"> {
  const [secret, name] = scan.positionals;
  const count = scan.positionals.length;
  if (count === 0) return {};
  if (count > 2) {
    problems.push({
      field: "arguments",
      message: `Expected at most 2 positional arguments (SECRET NAME), got ${count}`,
    });
  }
  if (scan.values.has("secret") || scan.values.has("name")) {
    problems.push({
      field: "arguments",
      message: `Expected either -secret/-name or the positional SECRET NAME, got both (${count} positional)`,
    });
  }
  return {
    secret: secret === undefined ? undefined : { value: secret, from: "positional SECRET" },
    name: name === undefined ? undefined : { value: name, from: "positional NAME" },
  };
}

/** A secret `@path` is read from that file (trimmed), which keeps it out of `ps`. */
function resolveSecret(given: Given, readFile: ReadTextFile, problems: ConfigProblem[]): Given | undefined {
  if (!isAtFile(given.value)) return given;
  const path = given.value.slice(1);
  const read = tryRead(readFile, path);
  if (!read.ok) {
    problems.push({
      field: "secret",
      message: `Cannot read the secret file \`${path}\` (from ${given.from}): ${read.reason}`,
    });
    return undefined;
  }
  const value = read.text.trim();
  if (value === "") {
    problems.push({
      field: "secret",
      message: `Expected the secret file \`${path}\` (from ${given.from}) to be non-empty`,
    });
    return undefined;
  }
  return { value, from: `${given.from} (file ${path})` };
}

/** Every value that is or may be the secret, so that no message and no step ever shows it. */
function knownSecrets(scan: ScannedArgs, env: LaunchEnv, secret: Given | undefined): string[] {
  const candidates = [
    secret?.value,
    scan.values.get("secret")?.value,
    scan.positionals[0],
    ...[...SECRET_ENV].map((name) => env[name]),
  ];
  const isSecretValue = (value: string | undefined): value is string =>
    value !== undefined && value !== "" && !isAtFile(value);
  return unique(candidates.filter(isSecretValue));
}

function resolveLabels(scan: ScannedArgs, env: LaunchEnv): { value: string[]; from: string } | undefined {
  const given = scan.labels.length > 0 ? scan.labels : [envGiven(env, ["AGENT_LABELS"])].filter(isDefined);
  const [first] = given;
  if (first === undefined) return undefined;
  return {
    value: unique(given.flatMap((g) => g.value.split(/[\s,]+/).filter((label) => label !== ""))),
    from: first.from,
  };
}

function resolveLogLevel(given: Given | undefined, problems: ConfigProblem[]): LogLevel {
  if (given === undefined) return "info";
  const level = given.value.trim().toLowerCase();
  if (isLogLevel(level)) return level;
  problems.push({
    field: given.from,
    message: `Expected \`${given.from}\` to be one of debug, info, warn, error, got ${showText(given.value)}`,
  });
  return "info";
}

/** AGENT_RUNTIME wins; otherwise ECS is recognised by its metadata endpoint or execution env. */
function resolveRuntime(env: LaunchEnv, problems: ConfigProblem[]): RuntimeKind {
  const forced = nonEmpty(env.AGENT_RUNTIME)?.trim();
  if (forced !== undefined) {
    if (isRuntimeKind(forced)) return forced;
    problems.push({
      field: "AGENT_RUNTIME",
      message: `Expected \`AGENT_RUNTIME\` to be one of ${RUNTIME_KINDS.join(", ")}, got ${showText(forced)}`,
    });
  }
  return detectRuntime(env);
}

function detectRuntime(env: LaunchEnv): RuntimeKind {
  const onEcs =
    nonEmpty(env.ECS_CONTAINER_METADATA_URI_V4) !== undefined ||
    nonEmpty(env.ECS_CONTAINER_METADATA_URI) !== undefined ||
    (env.AWS_EXECUTION_ENV ?? "").startsWith("AWS_ECS");
  return onEcs ? "ecs" : "local";
}

function isRuntimeKind(value: string): value is RuntimeKind {
  return (RUNTIME_KINDS as readonly string[]).includes(value);
}

/** A non-negative integer from `name` (unset or empty: undefined); the schema checks the range. */
/** The environment for steps: undefined values dropped, and nothing that carries the secret. */
function childEnv(env: LaunchEnv, secrets: readonly string[]): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined || SECRET_ENV.has(key) || secrets.includes(value)) continue;
    result[key] = value;
  }
  return result;
}

/**
 * Validates with agent-core's schema. Its problems join ours, naming where each value came from;
 * a field absent from `input` was already reported (missing or unreadable), so zod's echo is dropped.
 */
function buildConfig(
  input: Record<string, unknown>,
  sources: ReadonlyMap<string, string>,
  problems: ConfigProblem[],
): AgentConfig | undefined {
  try {
    return parseAgentConfig(input);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    for (const problem of error.problems) {
      const top = problem.field.split(".")[0] ?? problem.field;
      if (!Object.hasOwn(input, top)) continue;
      const from = sources.get(top);
      problems.push(
        from === undefined ? problem : { ...problem, message: `${problem.message} (from ${from})` },
      );
    }
    return undefined;
  }
}

/**
 * Jenkins-mode settings: the inbound-agent variables, then the remoting flags given (flags win).
 * Remoting refuses `-webSocket` with `-tunnel`: outside native mode that is a problem here, at once.
 */
function resolveJenkins(
  scan: ScannedArgs,
  env: LaunchEnv,
  mode: string,
  problems: ConfigProblem[],
): Partial<JenkinsSettingsInput> {
  const fromEnv = readJenkinsSettings(env, problems);
  const settings: Partial<JenkinsSettingsInput> = {
    ...fromEnv,
    ...scan.jenkins,
    remotingOpts: [...scan.remoting, ...(fromEnv.remotingOpts ?? [])],
  };
  if (mode !== "native" && settings.webSocket === true && settings.tunnel) {
    problems.push({
      field: "JENKINS_WEB_SOCKET",
      message:
        "Expected either WebSocket (-webSocket, JENKINS_WEB_SOCKET=true) or a tunnel (-tunnel, JENKINS_TUNNEL), got both: remoting allows only one (a WebSocket agent needs no tunnel)",
    });
  }
  return settings;
}

/** Replaces every known secret value in the problems with `***` (defence in depth). */
function redact(problems: readonly ConfigProblem[], secrets: readonly string[]): ConfigProblem[] {
  // As the log masker: a value too short to be a secret would turn every such letter into ***.
  const masked = secrets.filter((secret) => secret.length >= MIN_SECRET_CHARS);
  const hide = (text: string) => masked.reduce((out, secret) => out.split(secret).join("***"), text);
  return problems.map((problem) => ({ field: hide(problem.field), message: hide(problem.message) }));
}

function envGiven(env: LaunchEnv, names: readonly string[]): Given | undefined {
  for (const name of names) {
    const value = nonEmpty(env[name]);
    if (value !== undefined) return { value, from: name };
  }
  return undefined;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

/** A string value for a message, execa style: `` `value` (string) ``, clipped. */
function showText(value: string): string {
  return `\`${clip(value)}\` (string)`;
}

function isDefined<T>(value: T | undefined): value is T {
  return value !== undefined;
}

function unique<T>(values: readonly T[]): T[] {
  return [...new Set(values)];
}

// ---------------------------------------------------------------------------------------------
// Help

const EXIT_CODE_MEANINGS: Readonly<Record<keyof typeof ExitCode, string>> = {
  ok: "the job ran and every step succeeded",
  jobFailed: "the job ran and failed (a step failed, timed out, was cancelled or could not start)",
  badConfig: "launch arguments or configuration are invalid; nothing was attempted",
  controllerFailure: "the controller was unreachable, the connection was lost, or the protocol was broken",
  deadline: "the job was stopped before the platform's deadline",
  disk: "a step exceeded the work dir's disk budget",
  refused: "the controller refused this agent (wrong secret, unknown or duplicate name)",
  idle: "connected, but no job arrived within the idle timeout",
  internal: "a bug in the agent itself",
  sigint: "stopped by SIGINT",
  sigterm: "stopped by SIGTERM (ECS stop, Fargate Spot interruption)",
};

function renderExitCodes(): string {
  const names = Object.keys(ExitCode) as (keyof typeof ExitCode)[];
  return names
    .map((name) => `  ${String(ExitCode[name]).padStart(3)}  ${name.padEnd(18)} ${EXIT_CODE_MEANINGS[name]}`)
    .join("\n");
}

/** Words joined into indented lines of at most `width` characters. */
function wrapWords(words: readonly string[], indent = "    ", width = 100): string {
  const lines: string[] = [];
  let line = "";
  for (const word of words) {
    if (line !== "" && indent.length + line.length + 1 + word.length > width) {
      lines.push(line);
      line = "";
    }
    line = line === "" ? word : `${line} ${word}`;
  }
  if (line !== "") lines.push(line);
  return lines.map((text) => `${indent}${text}`).join("\n");
}

function renderTunables(): string {
  const shape = agentConfigSchema.shape;
  return Object.entries(TUNABLE_ENV)
    .map(
      ([env, field]) => `  ${env.padEnd(33)} ${field} (default ${shape[field].def.defaultValue ?? "none"})`,
    )
    .join("\n");
}

/** The full `--help` text: launch forms, flags, environment variables and exit codes. */
export const HELP_TEXT: string = `Usage:
  ${PROGRAM} [options] -url URL -secret SECRET -name NAME       (inbound-agent, remoting)
  ${PROGRAM} [options] -url URL [-tunnel HOST:PORT] SECRET NAME (amazon-ecs plugin)
  ${PROGRAM} [options]         (url, secret and name from the environment)
  ${PROGRAM} @FILE [options]   (arguments read from FILE, one per line)
  ${PROGRAM} COMMAND           (one argument not starting with - or @: run as a command)
  ${PROGRAM} --help | --version

Arguments win over the environment. An argument @FILE is replaced by the lines of FILE: each
non-empty line (trimmed, CR stripped) is one argument; lines read from a file are not expanded again, and
the value of an option is taken as is. A secret given as @PATH (-secret, the positional SECRET,
JENKINS_SECRET, SLAVE_NODE_SECRET) is read from PATH and trimmed, which keeps it out of ps.
Options taking a value accept both "-opt VALUE" and "-opt=VALUE"; "--" ends the options.

Options:
  -url URL, --url URL           controller URL (http, https, ws or wss); if repeated, the first wins
  -secret S, --secret S         the agent's secret, or @PATH to read it from a file
  -name N, --name N             the agent's name
  -workDir DIR, --work-dir DIR  root of the agent's files (each job gets a fresh workspace below it)
  --labels A,B                  labels, comma or whitespace separated (repeatable)
  --log-level LEVEL             debug, info, warn or error (default info)
  --mode MODE                   auto (default: ask the controller once), native (protocol v1) or
                                jenkins (run the controller's remoting agent.jar on java)
  -h, -help, --help             print this help and exit
  --version, -version           print the version and exit

Remoting options (Jenkins mode; no effect in native mode):
  -webSocket                    connect over WebSocket instead of the TCP agent port
  -tunnel HOST:PORT             reach the TCP agent port through HOST:PORT (not with -webSocket)
  -direct HOST:PORT, -instanceIdentity ID, -protocols P   connect to the agent port directly
  Passed on to remoting as given:
${wrapWords([...REMOTING_SWITCHES, ...REMOTING_WITH_VALUE.map((name) => `${name} VALUE`)])}
  Accepted without effect (the agent never reconnects in a loop; remoting is always headless):
${wrapWords([...IGNORED_SWITCHES, ...IGNORED_WITH_VALUE.map((name) => `${name} VALUE`)])}

Environment:
  JENKINS_URL                  controller URL
  JENKINS_SECRET               the agent's secret (or @PATH); never passed on to steps
  SLAVE_NODE_SECRET            the same, as set by the amazon-ecs plugin; never passed on to steps
  JENKINS_AGENT_NAME           the agent's name (alias JENKINS_NAME; SLAVE_NODE_NAME from amazon-ecs)
  JENKINS_AGENT_WORKDIR        root of the agent's files
  AGENT_LABELS                 labels, comma or whitespace separated
  AGENT_LOG_LEVEL              debug, info, warn or error (default info)
  AGENT_RUNTIME                lambda, ecs or local (default: ecs when ECS_CONTAINER_METADATA_URI_V4,
                               ECS_CONTAINER_METADATA_URI is set or AWS_EXECUTION_ENV starts with
                               AWS_ECS, else local)
  AGENT_SECRET                 never passed on to steps either
  AGENT_MAX_DURATION_MS        stop the job this long after the agent started, reporting it as
                               \`deadline\` (ECS/Fargate have no deadline of their own; default none;
                               at most 365 days)
  AGENT_MODE                   auto, native or jenkins (as --mode)
  HTTPS_PROXY, HTTP_PROXY      http(s):// proxy for https/wss and http/ws URLs (the controller, the
  ALL_PROXY, NO_PROXY          agent.jar download, the AWS SDK); ALL_PROXY for both; NO_PROXY:
                               hosts reached directly. Upper or lower case

Jenkins mode (as the jenkins/inbound-agent image reads them):
  JENKINS_WEB_SOCKET           true: connect over WebSocket
  JENKINS_TUNNEL               HOST:PORT of the TCP agent port
  JENKINS_DIRECT_CONNECTION, JENKINS_INSTANCE_IDENTITY, JENKINS_PROTOCOLS   direct connection
  JENKINS_JAVA_OPTS            JVM options (else JAVA_OPTS), after the agent's own
  REMOTING_OPTS                more remoting options (not -url, -secret, -name, -workDir,
                               -webSocket, -tunnel or the reconnect options: the agent sets those)
  JENKINS_JAVA_BIN, JAVA_HOME  the java to run (else java on PATH)
  JENKINS_AGENT_FILE           agent.jar baked into the image, used when the controller serves none
  AGENT_JAVA_CDS               on (default) or off: class-data sharing for agent.jar

Tunables (non-negative integers, milliseconds (at most one day) or bytes):
${renderTunables()}

Exit codes:
${renderExitCodes()}
`;

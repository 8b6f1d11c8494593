import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname, userInfo } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import ms from "ms";
import { parse as parseYaml } from "yaml";
import { clip } from "../agent-core/index.ts";
import { type Artifact, imageArtifact, readZipArtifact } from "./artifact.ts";
import { DeployError, DeployExit, type DeployExitCode, exitCodeOf } from "./errors.ts";
import { createLambdaClient } from "./lambda-api.ts";
import {
  type AliasStatus,
  aliasStatus,
  type DeployRequest,
  deployFunction,
  preflightDeploy,
  type RolloutContext,
  type RolloutResult,
  rollbackFunction,
  rolledBackFrom,
} from "./rollout.ts";
import type { SmokeRequest } from "./smoke-check.ts";

export const DEPLOY_HELP = `Usage: npm run rollout -- <command> [options]     (or: node dist/deploy.mjs <command> ...)

Safe rollout of the jnlp-agent-* Lambda functions: publish a version, smoke-check it, then point
the alias callers invoke (live) at it; put the alias back when anything fails.

Commands:
  deploy      Publish a version of each function (after \`osls deploy\`, or from --zip / --image-uri),
              smoke-check it (its handler's smoke mode, invoked synchronously with the version as
              qualifier), then move the alias to it, at once or in --steps.
  rollback    Move the alias back to the version the last deploy replaced (or --to VERSION).
  status      Show where each alias points and its deployment record.

Options (all commands):
  --function NAME        A function (repeatable). Default: every function in --config.
  --config FILE          serverless.yml to read function names and custom.rollout.alias from
                         (default ./serverless.yml).
  --alias NAME           The alias callers invoke (default: custom.rollout.alias, else live).
  --region REGION        Default: AWS_REGION / the profile's region.
  --by WHO               Who deploys, for the record (default $DEPLOY_BY, $GITHUB_ACTOR,
                         $GITLAB_USER_LOGIN, $BUILDKITE_BUILD_CREATOR, $BUILD_USER_ID, user@host).
  --max-attempts N       Attempts per AWS call; throttling and transient errors are retried
                         with backoff (default 8).
  --json                 Print the results as JSON on stdout (progress stays on stderr).
  --break-hold RUN_ID    (deploy, rollback) Take over the hold of a deploy that died (its process
                         was killed) before the hold expires. RUN_ID is the "run" the refusal
                         names; a hold by any other run is still refused.

deploy:
  --zip FILE             Upload this zip first (e.g. .serverless/jnlp-agent.zip from
                         \`npm run package:lambda\`); zip-packaged functions only.
  --image-uri URI        Deploy this image first; image-packaged functions only.
  --controller-url URL   Also check, from the new version, that this controller answers.
  --node-name NAME       With the controller check: an agent name whose secret is in
                         --node-secret-file or $DEPLOY_SMOKE_NODE_SECRET (never an argument).
  --node-secret-file F
  --steps P1,P2,...      Shift traffic in steps: P1% of invocations to the new version, a check
                         after --step-wait, then P2%, ..., then all (e.g. 10,50). Default: at once.
  --step-wait DURATION   Time at each step before its check (default 60s; 500ms, 2m...).
  --lease DURATION       How long a deploy holds the alias against others (default 30m); a
                         crashed deploy's hold expires after it.
  --poll DURATION        How often to poll a code update or a new version (default 2s).
  --max-wait DURATION    Longest wait for a code update or a new version (default 10m).
                         Every DURATION is at most 24h.

rollback:
  --to VERSION           The version to go back to (default: the record's previous version; after
                         a deploy that died, the version it began on, with its traffic split cleared).
  --check                Smoke-check that version first (with --controller-url ...).

Exit codes: 0 done; 1 a new version failed its check (the alias is on the previous version);
2 bad usage or artifact; 3 an AWS call failed; 4 another deploy holds the alias; 5 the alias
could not be put back (act now: status, rollback --to); 130/143 interrupted (alias put back);
70 internal error. A deploy stops at the first function that does not succeed.
`;

/** A parsed command line. */
export type RolloutCommand =
  | { command: "help" }
  | {
      command: "deploy" | "rollback" | "status";
      functions: string[];
      alias: string;
      region?: string;
      by: string;
      maxAttempts: number;
      json: boolean;
      artifact?: Artifact;
      smoke: SmokeRequest;
      steps: number[];
      stepWaitMs: number;
      leaseMs: number;
      pollMs: number;
      maxWaitMs: number;
      to?: string;
      check: boolean;
      breakHold?: string;
    };

/** What the CLI writes to and listens to; tests pass their own. */
export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Aborted on SIGINT/SIGTERM; its reason is the signal's name. */
  signal?: AbortSignal;
  cwd?: string;
}

const OPTIONS = {
  function: { type: "string", multiple: true },
  config: { type: "string" },
  alias: { type: "string" },
  region: { type: "string" },
  by: { type: "string" },
  "max-attempts": { type: "string" },
  json: { type: "boolean" },
  zip: { type: "string" },
  "image-uri": { type: "string" },
  "controller-url": { type: "string" },
  "node-name": { type: "string" },
  "node-secret-file": { type: "string" },
  steps: { type: "string" },
  "step-wait": { type: "string" },
  lease: { type: "string" },
  poll: { type: "string" },
  "max-wait": { type: "string" },
  to: { type: "string" },
  check: { type: "boolean" },
  "break-hold": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

const DEPLOY_ONLY = ["zip", "image-uri", "steps", "step-wait", "lease", "poll", "max-wait"];
const SMOKE_OPTIONS = ["controller-url", "node-name", "node-secret-file"];
const ROLLBACK_ONLY = ["to", "check"];
const ALIAS_NAME = /^(?!^[0-9]+$)[a-zA-Z0-9-_]{1,128}$/;
const FUNCTION_NAME = /^[a-zA-Z0-9-_]{1,64}$/;

/**
 * Parses and validates the command line (argv without node and the script) and reads what it
 * names (serverless.yml, the zip, the secret file). Throws DeployError DEPLOY_ERR_USAGE listing
 * every problem, or DEPLOY_ERR_ARTIFACT for an unusable zip or image URI.
 *
 * @example
 * const command = await parseRolloutArgs(["deploy", "--steps", "10,50"], process.env, process.cwd());
 */
export async function parseRolloutArgs(
  argv: string[],
  env: NodeJS.ProcessEnv,
  cwd: string,
): Promise<RolloutCommand> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    return { command: "help" };
  }
  if (command !== "deploy" && command !== "rollback" && command !== "status") {
    throw new DeployError(
      "DEPLOY_ERR_USAGE",
      `unknown command ${JSON.stringify(command)} (deploy, rollback, status)`,
    );
  }
  let values: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>["values"];
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: rest,
      options: OPTIONS,
      allowPositionals: true,
      strict: true,
    }));
  } catch (error) {
    throw new DeployError("DEPLOY_ERR_USAGE", (error as Error).message);
  }
  if (values.help) return { command: "help" };
  const problems: string[] = [];
  if (positionals.length > 0) problems.push(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const given = (name: string) => (values as Record<string, unknown>)[name] !== undefined;
  const notFor = (names: string[], commands: string[]) => {
    for (const name of names) {
      if (given(name) && !commands.includes(command))
        problems.push(`--${name} is not an option of ${command}`);
    }
  };
  notFor(DEPLOY_ONLY, ["deploy"]);
  notFor(SMOKE_OPTIONS, ["deploy", "rollback"]);
  notFor(ROLLBACK_ONLY, ["rollback"]);
  notFor(["break-hold"], ["deploy", "rollback"]);

  // Functions and alias: from the arguments, else from serverless.yml.
  const config = readServiceConfig(
    values.config ?? "serverless.yml",
    cwd,
    values.function === undefined,
    problems,
  );
  // A function named twice is deployed once.
  const functions = [...new Set(values.function ?? config.functions)];
  for (const name of functions) {
    if (!FUNCTION_NAME.test(name))
      problems.push(`--function ${JSON.stringify(name)}: not a Lambda function name`);
  }
  const alias = values.alias ?? config.alias ?? "live";
  if (!ALIAS_NAME.test(alias)) problems.push(`--alias ${JSON.stringify(alias)}: not a Lambda alias name`);

  const maxAttempts = integer(values["max-attempts"], "--max-attempts", 8, 1, 20, problems);
  const stepWaitMs = duration(values["step-wait"], "--step-wait", 60_000, problems);
  const leaseMs = duration(values.lease, "--lease", 30 * 60_000, problems);
  const pollMs = duration(values.poll, "--poll", 2_000, problems);
  const maxWaitMs = duration(values["max-wait"], "--max-wait", 10 * 60_000, problems);
  if (pollMs < 10) problems.push(`--poll must be at least 10ms, got ${values.poll}`);
  if (maxWaitMs <= pollMs) problems.push("--max-wait must be longer than --poll");
  const steps = parseSteps(values.steps, problems);
  if (values.zip !== undefined && values["image-uri"] !== undefined) {
    problems.push("give --zip or --image-uri, not both");
  }
  if (values.to !== undefined && !/^[1-9][0-9]*$/.test(values.to)) {
    problems.push(`--to must be a published version number (1, 2, ...), got ${JSON.stringify(values.to)}`);
  }
  const breakHold = values["break-hold"];
  if (breakHold !== undefined && !/^[A-Za-z0-9@._:/+$-]{1,64}$/.test(breakHold)) {
    problems.push(
      `--break-hold must be the run id a refusal names (e.g. 5f1c0e6a), got ${JSON.stringify(breakHold)}`,
    );
  }
  const smoke = smokeRequest(values, env, cwd, problems);
  if (problems.length > 0) {
    throw new DeployError(
      "DEPLOY_ERR_USAGE",
      `invalid arguments (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n${problems.map((p) => `  - ${p}`).join("\n")}`,
    );
  }
  let artifact: Artifact | undefined;
  if (values.zip !== undefined) artifact = await readZipArtifact(resolve(cwd, values.zip));
  if (values["image-uri"] !== undefined) artifact = imageArtifact(values["image-uri"]);
  return {
    command,
    functions,
    alias,
    ...(values.region !== undefined ? { region: values.region } : {}),
    by: values.by ?? defaultBy(env),
    maxAttempts,
    json: values.json ?? false,
    ...(artifact ? { artifact } : {}),
    smoke,
    steps,
    stepWaitMs,
    leaseMs,
    pollMs,
    maxWaitMs,
    ...(values.to !== undefined ? { to: values.to } : {}),
    check: values.check ?? false,
    ...(breakHold !== undefined ? { breakHold } : {}),
  };
}

/**
 * Runs the command line; resolves with the exit code (DeployExit). Progress goes to `io.stderr`;
 * the outcome to `io.stdout` (JSON with --json).
 */
export async function main(argv: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  let command: RolloutCommand;
  try {
    command = await parseRolloutArgs(argv, env, io.cwd ?? process.cwd());
  } catch (error) {
    if (!(error instanceof DeployError)) throw error;
    io.stderr(`rollout: ${error.code}: ${error.message}\n\nRun with --help for the options.\n`);
    if (argv.includes("--json")) io.stdout(`${jsonError(error)}\n`);
    return exitCodeOf(error.code);
  }
  if (command.command === "help") {
    io.stdout(DEPLOY_HELP);
    return argv.length === 0 ? DeployExit.usage : DeployExit.ok;
  }
  const client = createLambdaClient({
    ...(command.region !== undefined ? { region: command.region } : {}),
    maxAttempts: command.maxAttempts,
    // The smoke invocation runs up to the function's timeout (at most 900 s).
    requestTimeoutMs: 960_000,
  });
  const ctx: RolloutContext = {
    client,
    log: (text) => io.stderr(`${text}\n`),
    by: command.by,
    runId: randomBytes(4).toString("hex"),
    pollSeconds: command.pollMs / 1000,
    maxWaitSeconds: command.maxWaitMs / 1000,
    ...(io.signal ? { signal: io.signal } : {}),
  };
  const deployRequest = (functionName: string): DeployRequest => ({
    functionName,
    alias: command.alias,
    ...(command.artifact ? { artifact: command.artifact } : {}),
    smoke: command.smoke,
    steps: command.steps,
    stepWaitMs: command.stepWaitMs,
    leaseMs: command.leaseMs,
    ...(command.breakHold !== undefined ? { breakHold: command.breakHold } : {}),
  });
  try {
    if (command.command === "status") return await status(ctx, command, io);
    if (command.command === "deploy") {
      // Every function is checked before any changes: a bad input leaves all of them alone.
      for (const functionName of command.functions) {
        try {
          await preflightDeploy(ctx, deployRequest(functionName));
        } catch (error) {
          if (!(error instanceof DeployError)) throw error;
          io.stderr(`rollout: ${error.code}: ${error.message}; nothing was deployed\n`);
          if (command.json) io.stdout(`${jsonError(error)}\n`);
          return exitCodeOf(error.code);
        }
      }
    }
    const results: RolloutResult[] = [];
    for (const functionName of command.functions) {
      const result =
        command.command === "deploy"
          ? await deployFunction(ctx, deployRequest(functionName))
          : await rollbackFunction(ctx, {
              functionName,
              alias: command.alias,
              ...(command.to !== undefined ? { to: command.to } : {}),
              check: command.check,
              smoke: command.smoke,
              ...(command.breakHold !== undefined ? { breakHold: command.breakHold } : {}),
            });
      results.push(result);
      if (result.error) break;
    }
    const skipped = command.functions.slice(results.length);
    if (skipped.length > 0) io.stderr(`not attempted after that failure: ${skipped.join(", ")}\n`);
    if (command.json) io.stdout(`${JSON.stringify({ results, skipped }, null, 2)}\n`);
    else for (const result of results) io.stdout(`${resultLine(result)}\n`);
    const failed = results.find((r) => r.error !== null);
    if (!failed) return DeployExit.ok;
    if (failed.error!.code === "DEPLOY_ERR_INTERRUPTED") return interruptedCode(io.signal);
    return exitCodeOf(failed.error!.code);
  } finally {
    client.destroy();
  }
}

async function status(
  ctx: RolloutContext,
  command: Extract<RolloutCommand, { command: "status" | "deploy" | "rollback" }>,
  io: CliIo,
): Promise<DeployExitCode> {
  const statuses: AliasStatus[] = [];
  for (const functionName of command.functions) {
    try {
      statuses.push(await aliasStatus(ctx, functionName, command.alias));
    } catch (error) {
      if (!(error instanceof DeployError)) throw error;
      io.stderr(`rollout: ${error.code}: ${error.message}\n`);
      if (command.json) io.stdout(`${jsonError(error)}\n`);
      return exitCodeOf(error.code);
    }
  }
  if (command.json) io.stdout(`${JSON.stringify({ aliases: statuses }, null, 2)}\n`);
  else for (const s of statuses) io.stdout(`${s.summary}\n`);
  return DeployExit.ok;
}

/** An error as `--json` prints it: `{"error": {"code", "message"}}`. */
function jsonError(error: DeployError): string {
  return JSON.stringify({ error: { code: error.code, message: error.message } }, null, 2);
}

function resultLine(result: RolloutResult): string {
  const label = `${result.functionName}:${result.alias}`;
  switch (result.outcome) {
    case "promoted":
      return `${label}: promoted version ${result.version}${result.previous ? ` (was ${result.previous})` : ""}`;
    case "unchanged":
      return `${label}: unchanged, serves version ${result.live}`;
    case "rolled-back":
      return `${label}: rolled back to version ${result.live} (from ${rolledBackFrom(result.record, result.previous)})`;
    default:
      return `${label}: ${result.outcome} (${result.error?.code}): ${result.error?.message}${result.live ? `; serves version ${result.live}` : ""}`;
  }
}

function interruptedCode(signal: AbortSignal | undefined): number {
  return signal?.reason === "SIGTERM" ? 143 : 130;
}

/** The function names (literal `name:` or key) and custom.rollout.alias of a serverless.yml. */
function readServiceConfig(
  path: string,
  cwd: string,
  needed: boolean,
  problems: string[],
): { functions: string[]; alias?: string } {
  let text: string;
  try {
    text = readFileSync(resolve(cwd, path), "utf8");
  } catch (error) {
    if (needed) {
      problems.push(
        `--config ${path}: cannot read it (${(error as NodeJS.ErrnoException).code ?? String(error)}); give --function NAME`,
      );
    }
    return { functions: [] };
  }
  let doc: {
    functions?: Record<string, { name?: unknown } | null>;
    custom?: { rollout?: { alias?: unknown } };
  };
  try {
    // serverless.yml may hold CloudFormation short forms (!Ref): read them as plain values.
    doc = (parseYaml(text, { customTags: (tags) => tags, logLevel: "silent", uniqueKeys: false }) ??
      {}) as typeof doc;
  } catch (error) {
    problems.push(`--config ${path}: not YAML (${(error as Error).message.split("\n")[0]})`);
    return { functions: [] };
  }
  const aliasValue = doc.custom?.rollout?.alias;
  const alias = typeof aliasValue === "string" && !aliasValue.includes("${") ? aliasValue : undefined;
  const functions: string[] = [];
  for (const [key, definition] of Object.entries(doc.functions ?? {})) {
    const name = definition?.name;
    if (typeof name === "string" && !name.includes("${")) functions.push(name);
    else if (needed) {
      problems.push(
        `--config ${path}: function ${key} has no literal name (it depends on the stage): give --function`,
      );
    }
  }
  if (needed && functions.length === 0 && problems.length === 0) {
    problems.push(`--config ${path}: no functions: give --function`);
  }
  return { functions, ...(alias !== undefined ? { alias } : {}) };
}

function smokeRequest(
  values: { "controller-url"?: string; "node-name"?: string; "node-secret-file"?: string },
  env: NodeJS.ProcessEnv,
  cwd: string,
  problems: string[],
): SmokeRequest {
  const url = values["controller-url"];
  if (url !== undefined) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      // Reported below.
    }
    if (!parsed || !["http:", "https:", "ws:", "wss:"].includes(parsed.protocol)) {
      problems.push(`--controller-url must be an http(s):// or ws(s):// URL, got ${JSON.stringify(url)}`);
    }
  }
  let secret: string | undefined;
  const file = values["node-secret-file"];
  if (file !== undefined) {
    try {
      secret = readFileSync(resolve(cwd, file), "utf8").trim();
      if (secret === "") problems.push(`--node-secret-file ${file} is empty`);
    } catch (error) {
      problems.push(`--node-secret-file ${file}: cannot read it (${(error as NodeJS.ErrnoException).code})`);
    }
  } else if (env.DEPLOY_SMOKE_NODE_SECRET) {
    secret = env.DEPLOY_SMOKE_NODE_SECRET;
  }
  const name = values["node-name"];
  if (name !== undefined && secret === undefined) {
    problems.push("--node-name needs the agent's secret in --node-secret-file or $DEPLOY_SMOKE_NODE_SECRET");
  }
  if (file !== undefined && name === undefined) problems.push("--node-secret-file needs --node-name");
  if (name !== undefined && url === undefined) problems.push("--node-name needs --controller-url");
  return {
    ...(url !== undefined ? { controllerUrl: url } : {}),
    ...(name !== undefined && secret !== undefined ? { nodeName: name, nodeSecret: secret } : {}),
  };
}

function parseSteps(value: string | undefined, problems: string[]): number[] {
  if (value === undefined || value.trim() === "") return [];
  const steps = value.split(",").map((part) => Number(part.trim().replace(/%$/, "")));
  const ascending = steps.every((step, i) => i === 0 || step > steps[i - 1]!);
  if (!steps.every((step) => Number.isInteger(step) && step >= 1 && step <= 99) || !ascending) {
    problems.push(
      `--steps must be ascending whole percentages between 1 and 99 (e.g. 10,50), got ${JSON.stringify(value)}`,
    );
  }
  return steps;
}

/** Longest duration an option takes: one day, far below the 2^31 ms past which Node fires a timer at once. */
const MAX_DURATION_MS = 86_400_000;

function duration(value: string | undefined, option: string, fallback: number, problems: string[]): number {
  if (value === undefined) return fallback;
  const parsed = /^\d+$/.test(value) ? Number(value) : ms(value as ms.StringValue);
  if (typeof parsed !== "number" || !Number.isFinite(parsed) || parsed < 0) {
    problems.push(
      `${option} must be a duration (500ms, 30s, 5m, or milliseconds), got ${JSON.stringify(clip(value))}`,
    );
    return fallback;
  }
  if (parsed > MAX_DURATION_MS) {
    // `--step-wait 30d` would otherwise end each step's wait at once.
    problems.push(`${option} must be at most 24h, got ${JSON.stringify(clip(value))}`);
    return fallback;
  }
  return parsed;
}

function integer(
  value: string | undefined,
  option: string,
  fallback: number,
  min: number,
  max: number,
  problems: string[],
): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < min || parsed > max) {
    problems.push(`${option} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
    return fallback;
  }
  return parsed;
}

function defaultBy(env: NodeJS.ProcessEnv): string {
  const fromCi =
    env.DEPLOY_BY ??
    env.GITHUB_ACTOR ??
    env.GITLAB_USER_LOGIN ??
    env.BUILDKITE_BUILD_CREATOR ??
    env.BUILD_USER_ID;
  if (fromCi) return fromCi;
  let user = env.USER;
  if (!user) {
    try {
      user = userInfo().username;
    } catch {
      user = "unknown";
    }
  }
  return `${user}@${hostname()}`;
}

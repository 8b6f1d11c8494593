import { tmpdir } from "node:os";
import { isAbsolute, join, relative, resolve } from "node:path";
import * as z from "zod/mini";
import {
  AGENT_MODES,
  type AgentConfig,
  type AgentConfigInput,
  agentConfigSchema,
  type CloudWatchSettings,
  ConfigError,
  type ConfigProblem,
  clip,
  type LogLevel,
  MIN_SECRET_CHARS,
  readCloudWatchSettings,
  validateInput,
  zodProblems,
} from "../agent-core/start.ts";
import {
  type FunctionEnv,
  type FunctionSettings,
  readFunctionEnv,
  variableForField,
} from "./function-env.ts";
import { layoutOf, type WorkDirLayout } from "./work-dir.ts";

/**
 * The invocation payload, one schema for every form: exactly what the Jenkins "AWS Lambda Cloud"
 * plugin sends (`url`, `node_secret`, `node_name`), plus this project's optional extras, plus
 * `smoke` for the self-test. Any other field is a problem (listed by name, never by value).
 */
export const lambdaEventSchema = z.object({
  url: z.optional(z.string()),
  node_secret: z.optional(z.string()),
  node_name: z.optional(z.string()),
  /** Labels added to the function's own (AGENT_LABELS): an array, or comma/space separated. */
  labels: z.optional(
    z.union([z.array(z.string()), z.string()], {
      error: "must be a list of labels or a comma/space separated string",
    }),
  ),
  log_level: z.optional(z.enum(["debug", "info", "warn", "error"])),
  /** Root of the agent's files; must be below the function's /tmp. */
  work_dir: z.optional(z.string()),
  /** Run the self-test instead of an agent. */
  smoke: z.optional(z.boolean()),
  /** auto (default), native or jenkins; wins over the function's AGENT_MODE. */
  mode: z.optional(z.enum(AGENT_MODES)),
});
export type LambdaEvent = z.infer<typeof lambdaEventSchema>;

export const EVENT_FIELDS = Object.keys(lambdaEventSchema.shape);

/** What the handler knows besides the event: the invocation's remaining time and the function's environment. */
export interface LambdaLaunch {
  /** `context.getRemainingTimeInMillis()` at the start of the invocation. */
  remainingMs: number;
  env: FunctionEnv;
  /** Epoch ms of the start of the invocation (default: now). */
  now?: number;
}

interface Common {
  logLevel: LogLevel;
  settings: FunctionSettings;
  layout: WorkDirLayout;
  /** Epoch ms by which the agent (or the smoke test) must have stopped. */
  deadlineAt: number;
  /** Things worth a diagnostic (e.g. the event arrived as a JSON string). */
  notes: string[];
  /** The CloudWatch copy of the job log (on by default on Lambda; AGENT_CLOUDWATCH, AGENT_LOG_GROUP...). */
  cloudWatch: CloudWatchSettings;
}

/** Run an agent that takes one job. */
export interface AgentInvocation extends Common {
  kind: "agent";
  config: AgentConfig;
  /** Really on Lambda (`LAMBDA_TASK_ROOT` is set): /tmp belongs to this function alone. */
  onLambda: boolean;
}

/** Run the self-test; with `url`, also check the controller (with `name`/`secret`, authenticated). */
export interface SmokeInvocation extends Common {
  kind: "smoke";
  url?: string;
  name?: string;
  secret?: string;
  /** The environment steps would get (HOME and TMPDIR under the work dir, no credentials). */
  stepEnv: Record<string, string>;
}

export type Invocation = AgentInvocation | SmokeInvocation;

/** Below this much time between now and the deadline the agent cannot do anything useful. */
export const MIN_RUN_MS = 2_000;

/** Not `agent`: the container entrypoint's default, which a local agent may be using right now. */
const DEFAULT_WORK_DIR_NAME = "lambda-agent";
const SECRET_EVENT_FIELDS = new Set(["node_secret"]);
/** zod leaves the offending value out of its issues unless asked; problems show it (secrets masked). */
const REPORT_INPUT = { reportInput: true };
/** Agent config fields -> the event field (or variable) a user would recognise. */
const EVENT_NAME_OF: Record<string, string> = {
  url: "url",
  secret: "node_secret",
  name: "node_name",
  labels: "labels",
  workDir: "work_dir",
};

/**
 * Validates an invocation event and the function's environment, and decides what to run.
 * Throws {@link ConfigError} (code `AGENT_ERR_CONFIG`) listing every problem at once, each
 * naming the event field or environment variable; the secret never appears in it.
 *
 * @example
 * const invocation = fromLambdaEvent(event, { remainingMs: context.getRemainingTimeInMillis(), env: process.env });
 * if (invocation.kind === "agent") await runAgent(invocation.config, { logger });
 */
export function fromLambdaEvent(event: unknown, launch: LambdaLaunch): Invocation {
  const problems: ConfigProblem[] = [];
  const notes: string[] = [];
  const now = launch.now ?? Date.now();
  const data = decodeEvent(event, problems, notes);
  const settings = readFunctionEnv(launch.env, problems);
  const smoke = data?.smoke === true;

  const logLevel = data?.log_level ?? settings.logLevel;
  const workDir = resolveWorkDir(data?.work_dir, problems);
  const layout = layoutOf(workDir ?? join(tmpdir(), DEFAULT_WORK_DIR_NAME));
  const stepEnv = { ...settings.stepEnv, HOME: layout.home, TMPDIR: layout.tmp };

  const remainingMs = launch.remainingMs;
  const deadlineAt = now + remainingMs - settings.deadlineMarginMs;
  if (!Number.isFinite(remainingMs)) {
    problems.push({
      field: "context",
      message: `Expected getRemainingTimeInMillis() to return a number, got ${String(remainingMs)}`,
    });
  } else if (
    remainingMs - settings.deadlineMarginMs < MIN_RUN_MS &&
    !problems.some((p) => p.field === "AGENT_DEADLINE_MARGIN_MS")
  ) {
    problems.push({
      field: "AGENT_DEADLINE_MARGIN_MS",
      message: `Expected the invocation's remaining time (${remainingMs} ms) to exceed AGENT_DEADLINE_MARGIN_MS (${settings.deadlineMarginMs} ms) by at least ${MIN_RUN_MS} ms; raise the function's timeout or lower the margin`,
    });
  }

  const secret = data?.node_secret;
  const fail = (intro: string): never => {
    throw new ConfigError(redact(problems, secret), `AGENT_ERR_CONFIG: ${intro}`);
  };

  if (smoke) {
    const url = data?.url;
    const name = data?.node_name;
    if ((name === undefined) !== (secret === undefined)) {
      problems.push({
        field: name === undefined ? "node_name" : "node_secret",
        message:
          "missing; a smoke test authenticates with both node_name and node_secret, or with neither (then an anonymous probe checks the controller)",
      });
    }
    if (url !== undefined) checkField("url", url, problems);
    if (name !== undefined) checkField("name", name, problems);
    const cloudWatch = readCloudWatchSettings(launch.env, "lambda", name ?? "smoke-test", problems);
    if (problems.length > 0 || cloudWatch === undefined) return fail("the smoke test cannot run");
    return {
      kind: "smoke",
      cloudWatch,
      logLevel,
      settings,
      layout,
      deadlineAt,
      notes,
      stepEnv,
      ...(url !== undefined ? { url } : {}),
      ...(name !== undefined ? { name } : {}),
      ...(secret !== undefined ? { secret } : {}),
    };
  }

  if (data !== undefined) {
    const reported = new Set(problems.map((p) => p.field));
    for (const field of ["url", "node_secret", "node_name"] as const) {
      if (data[field] === undefined && !reported.has(field))
        problems.push({
          field,
          message: `missing; the payload is {"url", "node_secret", "node_name"} as the Jenkins plugin sends it (or {"smoke": true})`,
        });
    }
  }
  const eventLabels = typeof data?.labels === "string" ? data.labels.split(/[\s,]+/) : (data?.labels ?? []);
  const input: AgentConfigInput = {
    url: data?.url ?? "",
    secret: secret ?? "",
    name: data?.node_name ?? "",
    labels: [...new Set([...settings.labels, ...eventLabels.filter((label) => label !== "")])],
    workDir: layout.root,
    runtime: "lambda",
    deadlineAt: Math.max(1, Math.floor(deadlineAt)),
    baseEnv: stepEnv,
    mode: data?.mode ?? settings.mode ?? "auto",
    jenkins: settings.jenkins,
    ...settings.tunables,
  };
  const parsed = validateInput(agentConfigSchema, input, REPORT_INPUT);
  if (!parsed.success) {
    const reported = new Set(problems.map((p) => p.field.split(".")[0]));
    // An event that is not an object has been reported as a whole: its fields are not repeated.
    if (data === undefined) for (const field of Object.values(EVENT_NAME_OF)) reported.add(field);
    for (const problem of zodProblems(parsed.error)) {
      const [top = "", ...rest] = problem.field.split(".");
      const field = EVENT_NAME_OF[top] ?? variableForField(top) ?? top;
      // One problem per field: an empty name also breaks the name's pattern, which adds nothing.
      if (reported.has(field)) continue;
      reported.add(field);
      problems.push({ field: [field, ...rest].join("."), message: problem.message });
    }
  }
  const cloudWatch = readCloudWatchSettings(launch.env, "lambda", input.name || "agent", problems);
  if (problems.length > 0 || !parsed.success || cloudWatch === undefined) {
    return fail("the invocation cannot start an agent");
  }
  const onLambda = (launch.env.LAMBDA_TASK_ROOT ?? "") !== "";
  return {
    kind: "agent",
    config: parsed.data,
    logLevel,
    settings,
    layout,
    deadlineAt,
    notes,
    cloudWatch,
    onLambda,
  };
}

/**
 * The event as an object: a JSON string is parsed (clients that double-encode the payload),
 * anything else that is not an object is a problem. Values are never echoed at this level: the
 * whole event holds the secret.
 */
function decodeEvent(event: unknown, problems: ConfigProblem[], notes: string[]): LambdaEvent | undefined {
  let value = event;
  if (typeof event === "string") {
    try {
      value = JSON.parse(event);
      notes.push("the event arrived as a JSON string and was parsed");
    } catch (error) {
      const at = /position (\d+)/.exec((error as Error).message)?.[1];
      problems.push({
        field: "(event)",
        message: `Expected a JSON object, got a string of ${event.length} characters that is not JSON${at === undefined ? "" : ` (error at position ${at})`}. The Jenkins plugin does not JSON-escape values: a quote or backslash in the URL, node name or secret breaks its payload`,
      });
      return undefined;
    }
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    problems.push({
      field: "(event)",
      message: `Expected a JSON object such as {"url", "node_secret", "node_name"} or {"smoke": true}, got ${kindOf(value)}`,
    });
    return undefined;
  }
  for (const key of Object.keys(value)) {
    if (!EVENT_FIELDS.includes(key))
      problems.push({
        field: clip(key),
        message: `unknown field; the payload accepts ${EVENT_FIELDS.join(", ")}`,
      });
  }
  const parsed = validateInput(lambdaEventSchema, value, REPORT_INPUT);
  if (parsed.success) return parsed.data;
  problems.push(...zodProblems(parsed.error, SECRET_EVENT_FIELDS));
  // Keep the fields that are valid, so that the remaining checks still run and report.
  const partial: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(lambdaEventSchema.shape)) {
    const one = field.safeParse((value as Record<string, unknown>)[key]);
    if (one.success && one.data !== undefined) partial[key] = one.data;
  }
  return partial as LambdaEvent;
}

/** `work_dir` must be an absolute path strictly below the function's /tmp (the only writable place). */
function resolveWorkDir(given: string | undefined, problems: ConfigProblem[]): string | undefined {
  if (given === undefined) return undefined;
  const root = tmpdir();
  const path = resolve(given);
  const rel = relative(root, path);
  if (!isAbsolute(given) || rel === "" || rel.startsWith("..") || isAbsolute(rel)) {
    problems.push({
      field: "work_dir",
      message: `Expected an absolute path below ${root} (the function's writable storage), got ${JSON.stringify(clip(given))}`,
    });
    return undefined;
  }
  return path;
}

/** Checks one value against the agent config's own rule for that field. */
function checkField(field: "url" | "name", value: string, problems: ConfigProblem[]): void {
  const result = validateInput(agentConfigSchema.shape[field], value, REPORT_INPUT);
  if (result.success) return;
  for (const problem of zodProblems(result.error)) {
    problems.push({ field: EVENT_NAME_OF[field] ?? field, message: problem.message });
  }
}

/** Belt and braces: the secret's value never appears in a message, whatever field carried it. */
function redact(problems: ConfigProblem[], secret: string | undefined): ConfigProblem[] {
  if (secret === undefined || secret.length < MIN_SECRET_CHARS) return problems;
  return problems.map((p) => ({ field: p.field, message: p.message.split(secret).join("***") }));
}

function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return "an array";
  return `a ${typeof value}`;
}

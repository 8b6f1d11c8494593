import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import * as z from "zod/mini";
import {
  type ConfigProblem,
  idSchema,
  type Job,
  MAX_DURATION_MS,
  MAX_JOB_MASK_BYTES,
  MAX_JOB_MASK_VALUES,
  shellSchema,
  validateInput,
  zodProblems,
} from "../agent-core/index.ts";
import { ControllerApiError } from "./errors.ts";
import { cacheTrust, transferSubmissionFields } from "./transfer-spec.ts";

/** Most infrastructure retries a job may ask for. */
export const MAX_INFRASTRUCTURE_RETRIES = 10;
/** Deepest nesting of arrays and objects a submission may have (a real job needs 4). */
export const MAX_SUBMISSION_DEPTH = 32;

/** What a value that is neither form of a duration is told. */
export const DURATION_FORMS = "must be a whole number of milliseconds or look like 500ms, 30s, 5m or 1h";

/**
 * A job as submitted (HTTP API body, or a YAML/JSON job file). Durations are milliseconds or
 * strings such as "500ms", "30s", "5m", "1h".
 */
const durationSchema = z
  .pipe(
    z.union(
      [
        z.int().check(z.positive()),
        z.string().check(z.regex(/^\d+(\.\d+)?\s*(ms|s|m|h)$/, "must look like 500ms, 30s, 5m or 1h")),
      ],
      { error: DURATION_FORMS },
    ),
    // The bounds judge what parsed only: "banana" is told its format, not that it is under 1 ms.
    z.transform((value) => value),
  )
  .check(
    z.refine((value) => durationMs(value) >= 1, "must be at least 1 ms"),
    z.refine((value) => durationMs(value) <= MAX_DURATION_MS, "must be at most 365 days (8760h)"),
  );
/**
 * Text that ends up as a C string of a step's process (an argument, an environment value, a
 * path): a NUL byte would cut it, so no program could be started with it. Refused here, at
 * submission, rather than as a step that cannot start.
 */
const cString = z.string().check(z.refine((text) => !text.includes("\0"), "must not contain a NUL byte"));
const envSchema = z.record(
  z.string().check(z.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a valid variable name")),
  z.pipe(
    z.union([cString, z.number(), z.boolean()], { error: "must be a string, a number or a boolean" }),
    z.transform(String),
  ),
);

const stepSubmissionSchema = z
  .strictObject({
    id: z.optional(idSchema),
    name: z.optional(z.string().check(z.maxLength(200))),
    run: z.optional(cString.check(z.minLength(1))),
    argv: z.optional(z.array(cString).check(z.minLength(1))),
    shell: z.optional(
      shellSchema.check(
        z.refine(
          (shell) => typeof shell === "string" || shell.every((part) => !part.includes("\0")),
          "must not contain a NUL byte",
        ),
      ),
    ),
    env: z.optional(envSchema),
    workingDir: z.optional(cString),
    timeout: z.optional(durationSchema),
    continueOnError: z.optional(z.boolean()),
  })
  .check(
    z.refine((s) => (s.run === undefined) !== (s.argv === undefined), {
      message: "a step needs exactly one of `run` and `argv`",
    }),
  );

export const jobSubmissionSchema = z.strictObject({
  name: z.optional(z.string().check(z.minLength(1), z.maxLength(200))),
  labels: z._default(z.array(z.string().check(z.minLength(1), z.maxLength(100))).check(z.maxLength(100)), []),
  env: z.optional(envSchema),
  /** Exported to every step and masked in logs; never stored. As many as the agent can mask. */
  secrets: z.optional(
    envSchema.check(
      z.refine(
        (secrets) => Object.keys(secrets).length <= MAX_JOB_MASK_VALUES,
        // Worded when an issue occurs: a process's first toLocaleString loads ICU's number formats (about 12 ms).
        {
          error: () =>
            `must hold at most ${MAX_JOB_MASK_VALUES.toLocaleString("en-US")} secrets (the agent masks no more)`,
        },
      ),
      z.refine(
        (secrets) =>
          Object.values(secrets).reduce((sum, value) => sum + Buffer.byteLength(value, "utf8"), 0) <=
          MAX_JOB_MASK_BYTES,
        {
          error: () =>
            `must hold at most ${MAX_JOB_MASK_BYTES.toLocaleString("en-US")} bytes of values in all (the agent masks no more)`,
        },
      ),
    ),
  ),
  timeout: z.optional(durationSchema),
  ...transferSubmissionFields,
  /** Attempts retried when they end for a platform cause (never for a user failure). */
  retry: z.optional(
    z.strictObject({ infrastructure: z.int().check(z.gte(0), z.lte(MAX_INFRASTRUCTURE_RETRIES)) }),
  ),
  steps: z.array(stepSubmissionSchema).check(
    z.minLength(1),
    z.maxLength(1000),
    z.superRefine((steps, ctx) => {
      const seen = new Set<string>();
      steps.forEach((step, index) => {
        const id = step.id ?? String(index + 1);
        if (seen.has(id))
          ctx.addIssue({
            code: "custom",
            path: [index, "id"],
            message: `duplicate step id ${JSON.stringify(id)}`,
          });
        seen.add(id);
      });
    }),
  ),
});

export type JobSubmission = z.input<typeof jobSubmissionSchema>;
type ParsedSubmission = z.output<typeof jobSubmissionSchema>;

/** What the controller keeps of a submission: the job to send, its labels, and a copy safe to store. */
export interface PreparedJob {
  job: Job;
  labels: string[];
  /** The submission with secret values replaced by "***". */
  stored: ParsedSubmission;
  /** The uploaded archive that seeds the workspace (`job.workspace` is set once it is taken). */
  workspaceUpload?: string;
  /** The caches' trust value, when the job uses caches. */
  cacheTrust?: string;
  /** The job's own retry policy, when it sets one. */
  retry: { infrastructure: number } | undefined;
}

/** What preparing a job needs besides the submission. */
export interface PrepareContext {
  /** Branch patterns whose jobs' caches are `protected` (see `cacheTrust`). */
  protectedBranches: readonly string[];
}

/** Branches whose jobs' caches are `protected` unless the controller is told otherwise. */
export const DEFAULT_PROTECTED_BRANCHES: readonly string[] = ["main", "master"];

export function durationMs(value: number | string): number {
  if (typeof value === "number") return value;
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/.exec(value);
  if (match === null) return Number.NaN;
  const factor = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[match[2] as "ms" | "s" | "m" | "h"];
  return Math.round(Number(match[1]) * factor);
}

/** Validates a submission and builds the protocol `job` for it. Throws ControllerApiError (400) listing every problem. */
export function prepareJob(
  input: unknown,
  jobId: string,
  context: PrepareContext = { protectedBranches: DEFAULT_PROTECTED_BRANCHES },
): PreparedJob {
  const depth = nestingDepth(input, MAX_SUBMISSION_DEPTH);
  if (depth > MAX_SUBMISSION_DEPTH) {
    throw invalidJob([
      {
        field: "(submission)",
        message: `Expected arrays and objects nested at most ${MAX_SUBMISSION_DEPTH} levels deep, got more than ${MAX_SUBMISSION_DEPTH}`,
      },
    ]);
  }
  const parsed = validateInput(jobSubmissionSchema, input, { reportInput: true });
  if (!parsed.success) throw invalidJob(zodProblems(parsed.error, new Set(["secrets"])));
  const submission = parsed.data;
  const steps = submission.steps.map((step, index) => ({
    id: step.id ?? String(index + 1),
    ...(step.name !== undefined ? { name: step.name } : {}),
    ...(step.run !== undefined ? { run: step.run } : {}),
    ...(step.argv !== undefined ? { argv: step.argv } : {}),
    ...(step.shell !== undefined ? { shell: step.shell } : {}),
    env: step.env ?? {},
    ...(step.workingDir !== undefined ? { workingDir: step.workingDir } : {}),
    ...(step.timeout !== undefined ? { timeoutMs: durationMs(step.timeout) } : {}),
    continueOnError: step.continueOnError ?? false,
  }));
  const secrets = submission.secrets ?? {};
  const workspace = submission.workspace;
  if (workspace !== undefined && (typeof workspace === "string" || "path" in workspace)) {
    throw invalidJob([
      {
        field: "workspace",
        message:
          "a directory is packed and uploaded by the CLI (`submit`); the HTTP API takes `{ upload: <id> }` from POST /api/v1/workspaces",
      },
    ]);
  }
  const artifacts = submission.artifacts;
  const trust =
    submission.caches !== undefined
      ? cacheTrust(submission.repository, submission.branch, context.protectedBranches)
      : undefined;
  const job: Job = {
    id: jobId,
    ...(submission.name !== undefined ? { name: submission.name } : {}),
    env: { ...(submission.env ?? {}), ...secrets },
    mask: Object.values(secrets),
    steps,
    ...(submission.timeout !== undefined ? { timeoutMs: durationMs(submission.timeout) } : {}),
    ...(artifacts !== undefined
      ? {
          artifacts: Array.isArray(artifacts)
            ? { paths: artifacts, exclude: [], when: "on-success" as const }
            : artifacts,
        }
      : {}),
    ...(trust !== undefined && submission.caches !== undefined
      ? { caches: { trust, names: submission.caches } }
      : {}),
    ...(submission.diskNeed !== undefined ? { diskNeedBytes: submission.diskNeed } : {}),
  };
  const stored = {
    ...submission,
    ...(submission.secrets
      ? { secrets: Object.fromEntries(Object.keys(secrets).map((k) => [k, "***"])) }
      : {}),
  };
  return {
    job,
    labels: submission.labels,
    stored,
    retry: submission.retry,
    ...(workspace !== undefined && "upload" in workspace ? { workspaceUpload: workspace.upload } : {}),
    ...(trust !== undefined ? { cacheTrust: trust } : {}),
  };
}

/**
 * How deep arrays and objects nest in `value`, counted without recursion (so any depth is
 * measured safely); stops counting past `limit`.
 */
export function nestingDepth(value: unknown, limit: number): number {
  let deepest = 0;
  const pending: [unknown, number][] = [[value, 0]];
  while (pending.length > 0) {
    const [item, depth] = pending.pop()!;
    if (item === null || typeof item !== "object") continue;
    deepest = Math.max(deepest, depth + 1);
    if (deepest > limit) return deepest;
    for (const child of Object.values(item)) pending.push([child, depth + 1]);
  }
  return deepest;
}

/**
 * The submission that prepares `prepared`'s job again: the stored copy with the secrets' values
 * put back from the job sent to agents (they are kept in memory only, never stored).
 */
export function resubmission(prepared: PreparedJob): ParsedSubmission {
  const { stored, job } = prepared;
  if (stored.secrets === undefined) return stored;
  const secrets = Object.fromEntries(Object.keys(stored.secrets).map((key) => [key, job.env[key] ?? ""]));
  return { ...stored, secrets };
}

function invalidJob(problems: ConfigProblem[]): ControllerApiError {
  const lines = problems.map((p) => `  - ${p.field}: ${p.message}`).join("\n");
  return new ControllerApiError(
    400,
    "CONTROLLER_ERR_INVALID_JOB",
    `invalid job (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n${lines}`,
    problems,
  );
}

/** Reads a job file: YAML (.yml/.yaml) or JSON. Throws ControllerApiError when it cannot be read or parsed. */
export async function readJobFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new ControllerApiError(
      400,
      "CONTROLLER_ERR_JOB_FILE",
      `cannot read job file ${path}: ${(error as Error).message}`,
    );
  }
  try {
    return path.endsWith(".json") ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new ControllerApiError(
      400,
      "CONTROLLER_ERR_JOB_FILE",
      `job file ${path} is not valid ${path.endsWith(".json") ? "JSON" : "YAML"}: ${(error as Error).message}`,
    );
  }
}

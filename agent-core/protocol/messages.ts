import * as z from "zod/mini";
import { CACHE_NAME, cacheVariable } from "../workspace/cache-names.ts";
import { patternRefusal } from "../workspace/entry-rules.ts";

/**
 * Protocol v1 messages. Control messages travel as JSON text frames with the envelope
 * `{ "v": 1, "type": "...", ... }`; job output travels as binary frames (see frames.ts).
 * These schemas are the one definition both the agent and the controller use.
 */

export const STEP_REASONS = [
  "exit",
  "timeout",
  "cancelled",
  "deadline",
  "disk",
  "interrupted",
  "error",
] as const;
export const stepReasonSchema = z.enum(STEP_REASONS);
export type StepReason = z.infer<typeof stepReasonSchema>;

export const RUNTIME_KINDS = ["lambda", "ecs", "local"] as const;
export const runtimeKindSchema = z.enum(RUNTIME_KINDS);
export type RuntimeKind = z.infer<typeof runtimeKindSchema>;

/** Step and job ids: short, printable, safe in paths and headers. */
export const idSchema = z
  .string()
  .check(
    z.minLength(1),
    z.maxLength(64),
    z.regex(
      /^[A-Za-z0-9][A-Za-z0-9_.-]*$/,
      "must be letters, digits, '_', '.', '-' (starting with a letter or digit)",
    ),
  );

/**
 * Longest duration the protocol carries (job and step timeouts): 365 days. The agent schedules
 * any of them correctly (timers beyond Node's 2^31-1 ms run in hops).
 */
export const MAX_DURATION_MS = 365 * 24 * 3_600_000;

/** Most values in a job's `mask` list. */
export const MAX_JOB_MASK_VALUES = 1_000;
/** Most UTF-8 bytes of all values in a job's `mask` list (64 KiB). */
export const MAX_JOB_MASK_BYTES = 65_536;

const durationMsSchema = z.int().check(z.positive(), z.lte(MAX_DURATION_MS));

/**
 * The rule on a list of values to mask: count and total UTF-8 bytes. Its messages are worded
 * when an issue occurs: a process's first `toLocaleString` loads ICU's number formats (about
 * 12 ms), which the agent's start does not need.
 */
export const maskListSchema = z.array(z.string()).check(
  z.maxLength(MAX_JOB_MASK_VALUES, {
    error: () => `must hold at most ${MAX_JOB_MASK_VALUES.toLocaleString("en-US")} values`,
  }),
  z.refine(
    (values) => values.reduce((sum, v) => sum + Buffer.byteLength(v, "utf8"), 0) <= MAX_JOB_MASK_BYTES,
    {
      error: () => `must hold at most ${MAX_JOB_MASK_BYTES.toLocaleString("en-US")} bytes in all`,
    },
  ),
);

const envSchema = z.record(
  z.string().check(z.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a valid variable name")),
  z.string(),
);
const seqSchema = z.int().check(z.gte(1));
const nonNegativeInt = z.int().check(z.gte(0));

export const shellSchema = z.union(
  [z.enum(["bash", "sh"]), z.array(z.string().check(z.minLength(1))).check(z.minLength(1))],
  { error: 'must be "bash", "sh" or a program and its arguments' },
);
export type Shell = z.infer<typeof shellSchema>;

export const stepSchema = z
  .object({
    id: idSchema,
    name: z.optional(z.string().check(z.maxLength(200))),
    /** A script run by `shell`. Exactly one of `run` and `argv`. */
    run: z.optional(z.string().check(z.minLength(1))),
    /** A program and its arguments, run without a shell. */
    argv: z.optional(z.array(z.string()).check(z.minLength(1))),
    shell: z.optional(shellSchema),
    env: z._default(envSchema, {}),
    /** Relative to the job's workspace; may not leave it. */
    workingDir: z.optional(z.string()),
    timeoutMs: z.optional(durationMsSchema),
    continueOnError: z._default(z.boolean(), false),
  })
  .check(
    z.refine((s) => (s.run === undefined) !== (s.argv === undefined), {
      message: "a step needs exactly one of `run` and `argv`",
    }),
  );
export type Step = z.infer<typeof stepSchema>;

const sha256Schema = z
  .string()
  .check(z.regex(/^[0-9a-f]{64}$/, "must be 64 lower-case hex digits (SHA-256)"));

/** An artifact glob: relative to the workspace, no `..`. */
export const patternSchema = z.string().check(
  z.maxLength(1024),
  z.superRefine((pattern, ctx) => {
    const why = patternRefusal(pattern);
    if (why !== null) ctx.addIssue({ code: "custom", message: why });
  }),
);

export const ARTIFACT_WHEN = ["on-success", "on-failure", "always"] as const;

/** What the agent packs after the steps and streams back (`artifact` frames, then `artifacts-end`). */
export const artifactsSpecSchema = z.object({
  /** Globs (picomatch) of what to keep; a matched directory brings its whole tree. */
  paths: z.array(patternSchema).check(z.minLength(1), z.maxLength(100)),
  /** Globs of what to leave out. */
  exclude: z._default(z.array(patternSchema).check(z.maxLength(100)), []),
  /** After which outcome: the job succeeded, failed (not cancelled), or either. */
  when: z._default(z.enum(ARTIFACT_WHEN), "on-success"),
});
export type ArtifactsSpec = z.infer<typeof artifactsSpecSchema>;

export const cacheNameSchema = z
  .string()
  .check(
    z.regex(CACHE_NAME, "must be 1-64 letters, digits, '_', '.', '-' (starting with a letter or digit)"),
  );

/** The warm caches a job uses, and the trust value the controller vouches for (caches are shared only within one value). */
export const cachesSpecSchema = z.object({
  trust: z.string().check(z.minLength(1), z.maxLength(500)),
  names: z.array(cacheNameSchema).check(
    z.minLength(1),
    z.maxLength(32),
    z.refine((names) => new Set(names.map(cacheVariable)).size === names.length, {
      message: "cache names must be unique and map to distinct AGENT_CACHE_* variables",
    }),
  ),
});
export type CachesSpec = z.infer<typeof cachesSpecSchema>;

export const jobSchema = z
  .object({
    id: idSchema,
    name: z.optional(z.string().check(z.maxLength(200))),
    env: z._default(envSchema, {}),
    /** Values to mask in every log sink. */
    mask: z._default(maskListSchema, []),
    steps: z.array(stepSchema).check(z.minLength(1), z.maxLength(1000)),
    timeoutMs: z.optional(durationMsSchema),
    /** A tar stream the agent pulls (`workspace-pull`) and extracts into the workspace before the first step. */
    workspace: z.optional(z.object({ bytes: z.int().check(z.gte(1)), sha256: sha256Schema })),
    artifacts: z.optional(artifactsSpecSchema),
    caches: z.optional(cachesSpecSchema),
    /** Free bytes the job needs on the work dir's filesystem: warm caches are evicted to make room. */
    diskNeedBytes: z.optional(nonNegativeInt),
  })
  .check(
    z.refine((j) => new Set(j.steps.map((s) => s.id)).size === j.steps.length, {
      message: "step ids must be unique",
    }),
  );
export type Job = z.infer<typeof jobSchema>;

const envelope = { v: z.literal(1) };

// Agent -> controller
export const helloSchema = z.object({
  ...envelope,
  type: z.literal("hello"),
  agent: z.object({
    name: z.string().check(z.minLength(1), z.maxLength(200)),
    labels: z.array(z.string().check(z.minLength(1), z.maxLength(100))).check(z.maxLength(100)),
    runtime: runtimeKindSchema,
    version: z.string().check(z.minLength(1), z.maxLength(50)),
    platform: z.optional(z.string().check(z.maxLength(50))),
    arch: z.optional(z.string().check(z.maxLength(50))),
    node: z.optional(z.string().check(z.maxLength(50))),
  }),
  limits: z.object({
    /** Epoch milliseconds by which the agent will have stopped, or null when unbounded. */
    deadlineAt: z.nullable(z.int().check(z.positive())),
    /** Bytes the job may use under the work dir, or null when unknown. */
    diskBudgetBytes: z.nullable(nonNegativeInt),
  }),
  capabilities: z.array(z.string().check(z.maxLength(50))).check(z.maxLength(50)),
  /** Where the agent also writes the job's log (CloudWatch Logs), when it does. */
  logs: z.optional(
    z.object({
      region: z.string().check(z.maxLength(50)),
      group: z.string().check(z.maxLength(512)),
      stream: z.string().check(z.maxLength(512)),
      url: z.nullable(z.string().check(z.maxLength(2048))),
    }),
  ),
  /** Set when reconnecting mid-job: the job whose session the agent resumes. */
  resume: z.optional(z.object({ jobId: idSchema })),
});
export type Hello = z.infer<typeof helloSchema>;

export const stepStartSchema = z.object({
  ...envelope,
  type: z.literal("step-start"),
  seq: seqSchema,
  jobId: idSchema,
  stepId: idSchema,
  startedAt: z.int().check(z.positive()),
});
export type StepStart = z.infer<typeof stepStartSchema>;

export const stepEndSchema = z.object({
  ...envelope,
  type: z.literal("step-end"),
  seq: seqSchema,
  jobId: idSchema,
  stepId: idSchema,
  exitCode: z.nullable(z.int()),
  signal: z.nullable(z.string().check(z.maxLength(20))),
  durationMs: nonNegativeInt,
  reason: stepReasonSchema,
  message: z.optional(z.string().check(z.maxLength(4000))),
  stdoutBytes: nonNegativeInt,
  stderrBytes: nonNegativeInt,
  /** Peak resident memory of the step's process group, sampled (null where it cannot be measured). */
  peakRssBytes: z.optional(z.nullable(nonNegativeInt)),
});
export type StepEnd = z.infer<typeof stepEndSchema>;

/** Why a transfer went wrong: an AGENT_ERR_ARCHIVE_* code, the words, and the entry to blame. */
const transferFailureSchema = z.object({
  code: z.string().check(z.minLength(1), z.maxLength(64)),
  message: z.string().check(z.maxLength(4000)),
  entry: z.nullable(z.string().check(z.maxLength(4096))),
});

/** How one direction of a job's transfers went. */
export const transferResultSchema = z.discriminatedUnion("status", [
  /** Transferred and checked: the stream's length and SHA-256, and its entries. */
  z.object({
    status: z.literal("done"),
    bytes: nonNegativeInt,
    sha256: sha256Schema,
    entries: nonNegativeInt,
  }),
  /** Refused (an unsafe entry, a limit) or failed (a damaged stream, a file that cannot be read). */
  z.object({ status: z.literal("failed"), ...transferFailureSchema.shape }),
  /** Not attempted (artifacts `when` did not match the outcome, or the job stopped before it). */
  z.object({ status: z.literal("skipped"), message: z.string().check(z.maxLength(4000)) }),
]);
export type TransferResult = z.infer<typeof transferResultSchema>;

export const EVICTION_REASONS = ["space", "trust", "unknown-origin"] as const;

/** What the warm caches did for the job. */
export const cacheReportSchema = z.object({
  scope: z.string().check(z.maxLength(64)),
  hits: z.array(cacheNameSchema).check(z.maxLength(32)),
  misses: z.array(cacheNameSchema).check(z.maxLength(32)),
  evictions: z
    .array(
      z.object({
        name: z.string().check(z.maxLength(255)),
        reason: z.enum(EVICTION_REASONS),
        freedBytes: nonNegativeInt,
      }),
    )
    .check(z.maxLength(1000)),
  /** Every eviction, also those past the listed ones (agents before it listed them all). */
  evictionCount: z.optional(nonNegativeInt),
  freeBytesBefore: nonNegativeInt,
  freeBytesAfter: nonNegativeInt,
});

export const JOB_STATUSES = ["succeeded", "failed"] as const;
export const jobEndSchema = z.object({
  ...envelope,
  type: z.literal("job-end"),
  seq: seqSchema,
  jobId: idSchema,
  status: z.enum(JOB_STATUSES),
  /** Why the job ended: `exit` when it ran to its end, otherwise the reason of the step that stopped it. */
  reason: stepReasonSchema,
  failedStepId: z.optional(idSchema),
  durationMs: nonNegativeInt,
  message: z.optional(z.string().check(z.maxLength(4000))),
  /** Peak resident memory of the agent process during the job. */
  agentPeakRssBytes: z.optional(nonNegativeInt),
  /** Peak bytes the job used on the work dir's filesystem. */
  diskUsedBytes: z.optional(nonNegativeInt),
  /** How the workspace seed and the artifacts went, for a job that has them. */
  transfers: z.optional(
    z.object({ workspace: z.optional(transferResultSchema), artifacts: z.optional(transferResultSchema) }),
  ),
  caches: z.optional(cacheReportSchema),
});
export type JobEnd = z.infer<typeof jobEndSchema>;

/**
 * Asks the controller for bytes `[offset, offset + length)` of the job's workspace archive
 * (`job.workspace`). Not sequenced: the answer is `workspace` binary frames, and a request is
 * simply asked again after a resume. The agent keeps at most two requests outstanding.
 */
export const workspacePullSchema = z.object({
  ...envelope,
  type: z.literal("workspace-pull"),
  jobId: idSchema,
  offset: nonNegativeInt,
  length: z.int().check(z.gte(1), z.lte(16 * 1_048_576)),
});
export type WorkspacePull = z.infer<typeof workspacePullSchema>;

export const SKIPPED_LISTED = 100;

/**
 * Ends the job's artifact stream (the `artifact` binary frames before it, offsets from 0). With
 * `bytes` and `sha256` the controller checks what it received and keeps it; with `error` the
 * packing failed and the controller drops what it received.
 */
export const artifactsEndSchema = z.object({
  ...envelope,
  type: z.literal("artifacts-end"),
  seq: seqSchema,
  jobId: idSchema,
  bytes: z.optional(nonNegativeInt),
  sha256: z.optional(sha256Schema),
  entries: nonNegativeInt,
  /** Matched paths left out (links out of the workspace, special files): the first 100. */
  skipped: z
    .array(
      z.object({
        path: z.string().check(z.maxLength(4096)),
        reason: z.enum(["link-outside-workspace", "special-file"]),
      }),
    )
    .check(z.maxLength(SKIPPED_LISTED)),
  skippedCount: nonNegativeInt,
  /** `paths` patterns that matched nothing. */
  unmatched: z.array(z.string().check(z.maxLength(1024))).check(z.maxLength(100)),
  error: z.optional(transferFailureSchema),
});
export type ArtifactsEnd = z.infer<typeof artifactsEndSchema>;

// Controller -> agent
export const jobMessageSchema = z.object({ ...envelope, type: z.literal("job"), job: jobSchema });
export type JobMessage = z.infer<typeof jobMessageSchema>;

export const cancelSchema = z.object({
  ...envelope,
  type: z.literal("cancel"),
  jobId: idSchema,
  reason: z.optional(z.string().check(z.maxLength(500))),
});
export type Cancel = z.infer<typeof cancelSchema>;

export const ackSchema = z.object({ ...envelope, type: z.literal("ack"), seq: nonNegativeInt });
export type Ack = z.infer<typeof ackSchema>;

/**
 * Answer to a resuming hello: the controller has every message up to `seq`; the agent sends the
 * rest. `ended: true` says the job already ended on the controller with this agent's `job-end`
 * (which `seq` covers): its result is stored, nothing more is accepted, the agent closes.
 */
export const resumeSchema = z.object({
  ...envelope,
  type: z.literal("resume"),
  jobId: idSchema,
  seq: nonNegativeInt,
  ended: z.optional(z.boolean()),
});
export type Resume = z.infer<typeof resumeSchema>;

/** JSON messages the agent sends. */
export const agentMessageSchemas = {
  hello: helloSchema,
  "step-start": stepStartSchema,
  "step-end": stepEndSchema,
  "job-end": jobEndSchema,
  "workspace-pull": workspacePullSchema,
  "artifacts-end": artifactsEndSchema,
} as const;
export type AgentMessage = Hello | StepStart | StepEnd | JobEnd | WorkspacePull | ArtifactsEnd;

/** JSON messages the controller sends. */
export const controllerMessageSchemas = {
  job: jobMessageSchema,
  cancel: cancelSchema,
  ack: ackSchema,
  resume: resumeSchema,
} as const;
export type ControllerMessage = JobMessage | Cancel | Ack | Resume;

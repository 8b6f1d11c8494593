import * as z from "zod";

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
  .min(1)
  .max(64)
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_.-]*$/,
    "must be letters, digits, '_', '.', '-' (starting with a letter or digit)",
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

const durationMsSchema = z.number().int().positive().max(MAX_DURATION_MS);

/** The rule on a list of values to mask: count and total UTF-8 bytes. */
export const maskListSchema = z
  .array(z.string())
  .max(MAX_JOB_MASK_VALUES, `must hold at most ${MAX_JOB_MASK_VALUES.toLocaleString("en-US")} values`)
  .refine(
    (values) => values.reduce((sum, v) => sum + Buffer.byteLength(v, "utf8"), 0) <= MAX_JOB_MASK_BYTES,
    `must hold at most ${MAX_JOB_MASK_BYTES.toLocaleString("en-US")} bytes in all`,
  );

const envSchema = z.record(
  z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a valid variable name"),
  z.string(),
);
const seqSchema = z.number().int().min(1);
const nonNegativeInt = z.number().int().min(0);

export const shellSchema = z.union([z.enum(["bash", "sh"]), z.array(z.string().min(1)).min(1)]);
export type Shell = z.infer<typeof shellSchema>;

export const stepSchema = z
  .object({
    id: idSchema,
    name: z.string().max(200).optional(),
    /** A script run by `shell`. Exactly one of `run` and `argv`. */
    run: z.string().min(1).optional(),
    /** A program and its arguments, run without a shell. */
    argv: z.array(z.string()).min(1).optional(),
    shell: shellSchema.optional(),
    env: envSchema.default({}),
    /** Relative to the job's workspace; may not leave it. */
    workingDir: z.string().optional(),
    timeoutMs: durationMsSchema.optional(),
    continueOnError: z.boolean().default(false),
  })
  .refine((s) => (s.run === undefined) !== (s.argv === undefined), {
    message: "a step needs exactly one of `run` and `argv`",
  });
export type Step = z.infer<typeof stepSchema>;

export const jobSchema = z
  .object({
    id: idSchema,
    name: z.string().max(200).optional(),
    env: envSchema.default({}),
    /** Values to mask in every log sink. */
    mask: maskListSchema.default([]),
    steps: z.array(stepSchema).min(1).max(1000),
    timeoutMs: durationMsSchema.optional(),
  })
  .refine((j) => new Set(j.steps.map((s) => s.id)).size === j.steps.length, {
    message: "step ids must be unique",
  });
export type Job = z.infer<typeof jobSchema>;

const envelope = { v: z.literal(1) };

// Agent -> controller
export const helloSchema = z.object({
  ...envelope,
  type: z.literal("hello"),
  agent: z.object({
    name: z.string().min(1).max(200),
    labels: z.array(z.string().min(1).max(100)).max(100),
    runtime: runtimeKindSchema,
    version: z.string().min(1).max(50),
    platform: z.string().max(50).optional(),
    arch: z.string().max(50).optional(),
    node: z.string().max(50).optional(),
  }),
  limits: z.object({
    /** Epoch milliseconds by which the agent will have stopped, or null when unbounded. */
    deadlineAt: z.number().int().positive().nullable(),
    /** Bytes the job may use under the work dir, or null when unknown. */
    diskBudgetBytes: nonNegativeInt.nullable(),
  }),
  capabilities: z.array(z.string().max(50)).max(50),
  /** Where the agent also writes the job's log (CloudWatch Logs), when it does. */
  logs: z
    .object({
      region: z.string().max(50),
      group: z.string().max(512),
      stream: z.string().max(512),
      url: z.string().max(2048).nullable(),
    })
    .optional(),
  /** Set when reconnecting mid-job: the job whose session the agent resumes. */
  resume: z.object({ jobId: idSchema }).optional(),
});
export type Hello = z.infer<typeof helloSchema>;

export const stepStartSchema = z.object({
  ...envelope,
  type: z.literal("step-start"),
  seq: seqSchema,
  jobId: idSchema,
  stepId: idSchema,
  startedAt: z.number().int().positive(),
});
export type StepStart = z.infer<typeof stepStartSchema>;

export const stepEndSchema = z.object({
  ...envelope,
  type: z.literal("step-end"),
  seq: seqSchema,
  jobId: idSchema,
  stepId: idSchema,
  exitCode: z.number().int().nullable(),
  signal: z.string().max(20).nullable(),
  durationMs: nonNegativeInt,
  reason: stepReasonSchema,
  message: z.string().max(4000).optional(),
  stdoutBytes: nonNegativeInt,
  stderrBytes: nonNegativeInt,
  /** Peak resident memory of the step's process group, sampled (null where it cannot be measured). */
  peakRssBytes: nonNegativeInt.nullable().optional(),
});
export type StepEnd = z.infer<typeof stepEndSchema>;

export const JOB_STATUSES = ["succeeded", "failed"] as const;
export const jobEndSchema = z.object({
  ...envelope,
  type: z.literal("job-end"),
  seq: seqSchema,
  jobId: idSchema,
  status: z.enum(JOB_STATUSES),
  /** Why the job ended: `exit` when it ran to its end, otherwise the reason of the step that stopped it. */
  reason: stepReasonSchema,
  failedStepId: idSchema.optional(),
  durationMs: nonNegativeInt,
  message: z.string().max(4000).optional(),
  /** Peak resident memory of the agent process during the job. */
  agentPeakRssBytes: nonNegativeInt.optional(),
  /** Peak bytes the job used on the work dir's filesystem. */
  diskUsedBytes: nonNegativeInt.optional(),
});
export type JobEnd = z.infer<typeof jobEndSchema>;

// Controller -> agent
export const jobMessageSchema = z.object({ ...envelope, type: z.literal("job"), job: jobSchema });
export type JobMessage = z.infer<typeof jobMessageSchema>;

export const cancelSchema = z.object({
  ...envelope,
  type: z.literal("cancel"),
  jobId: idSchema,
  reason: z.string().max(500).optional(),
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
  ended: z.boolean().optional(),
});
export type Resume = z.infer<typeof resumeSchema>;

/** JSON messages the agent sends. */
export const agentMessageSchemas = {
  hello: helloSchema,
  "step-start": stepStartSchema,
  "step-end": stepEndSchema,
  "job-end": jobEndSchema,
} as const;
export type AgentMessage = Hello | StepStart | StepEnd | JobEnd;

/** JSON messages the controller sends. */
export const controllerMessageSchemas = {
  job: jobMessageSchema,
  cancel: cancelSchema,
  ack: ackSchema,
  resume: resumeSchema,
} as const;
export type ControllerMessage = JobMessage | Cancel | Ack | Resume;

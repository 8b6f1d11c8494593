import type { JobEnd, OutputStream, StepReason } from "../agent-core/index.ts";
import type { ArtifactsRecord } from "./artifact-receiver.ts";

export type JobStatus = "queued" | "assigned" | "running" | "succeeded" | "failed" | "cancelled" | "error";
export type StepStatus = "pending" | "running" | "succeeded" | "failed" | "skipped";
/** Who a failure is attributed to: the user's commands, or the platform (deadline, interruption, lost agent). */
export type FailureCause = "user" | "platform";
/**
 * Why a job ended: a step reason, or a controller-side one: `agent-lost` (the agent's session
 * ended and it did not resume), `provision-failed` (no agent could be started), `log-limit` (the
 * job's log reached the store's cap), `artifact-limit` (the job's artifacts were over the store's cap).
 */
export type JobReason = StepReason | "agent-lost" | "provision-failed" | "log-limit" | "artifact-limit";

/**
 * Why one attempt of a job ended. Platform causes (`launch-failed`, `stopped-before-connecting`,
 * `never-connected`, `agent-lost`, `interrupted`, `deadline`) are retried by the job's
 * infrastructure retry policy; the others end the job.
 */
export type AttemptCause =
  | "succeeded"
  | "user"
  | "cancelled"
  | "disk"
  | "log-limit"
  | "artifact-limit"
  | "launch-failed"
  | "stopped-before-connecting"
  | "never-connected"
  | "agent-lost"
  | "interrupted"
  | "deadline"
  | "released";

export const RETRYABLE_CAUSES: ReadonlySet<AttemptCause> = new Set([
  "launch-failed",
  "stopped-before-connecting",
  "never-connected",
  "agent-lost",
  "interrupted",
  "deadline",
]);

/** Where the agent copies the job's log (CloudWatch Logs), as it said in `hello`. */
export interface AgentLogs {
  region: string;
  group: string;
  stream: string;
  url: string | null;
}

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set([
  "succeeded",
  "failed",
  "cancelled",
  "error",
]);

export interface StepRecord {
  id: string;
  name?: string;
  status: StepStatus;
  /** When the controller received the step's start (controller clock). */
  startedAt?: string;
  /** When the agent says the step started (the agent's clock; may be skewed). */
  agentStartedAt?: string;
  /** When the controller received the step's end (controller clock). */
  endedAt?: string;
  /** The step's duration as the agent measured it (a duration: no clock skew). */
  durationMs?: number;
  exitCode?: number | null;
  signal?: string | null;
  reason?: StepReason;
  message?: string;
  stdoutBytes?: number;
  stderrBytes?: number;
  /** Peak resident memory of the step's processes, sampled by the agent. */
  peakRssBytes?: number | null;
}

/**
 * One try at running the job: one agent, from its launch (or its taking the job, for an agent the
 * controller did not launch) to its end. Times are the controller's clock.
 */
export interface AttemptRecord {
  /** 1 for the first attempt. */
  n: number;
  /** The agent's name: for a launched agent, its single-use lease on this job. */
  agent: string;
  /** `lambda`, `ecs`, `local`, or `connected` for an agent the controller did not launch. */
  platform: string;
  /** The launch template, for a launched agent. */
  template?: string;
  /** The labels the attempt was matched with (an overflow attempt has the overflow label). */
  labels: string[];
  /** The platform's id of the launch: a task ARN, a Lambda request id, a process id. */
  platformRef?: string;
  launchedAt?: string;
  connectedAt?: string;
  assignedAt?: string;
  endedAt?: string;
  /** Set once the attempt ended. */
  cause?: AttemptCause;
  message?: string;
  /** Where this attempt's output begins in the job's log (bytes). */
  logOffset: number;
  /** The seq of the agent's `job-end`, once stored: a resume after a lost ack is told the end is stored. */
  jobEndSeq?: number;
}

export interface JobRecord {
  id: string;
  name?: string;
  labels: string[];
  status: JobStatus;
  reason?: JobReason;
  cause?: FailureCause;
  message?: string;
  agent?: { name: string; runtime: string; version: string; labels: string[]; logs?: AgentLogs };
  /** Infrastructure retries allowed (the job's `retry.infrastructure`, or the controller's default). */
  retry: { infrastructure: number };
  /** Set when an attempt outlived its platform's deadline and the job moved to the template's overflow label. */
  overflow?: { from: string; label: string };
  /** Every try at the job, the current one last. */
  attempts: AttemptRecord[];
  submittedAt: string;
  /** When the controller first asked a provisioner for an agent for this job. */
  launchedAt?: string;
  /** When an agent launched for this job first said hello. */
  connectedAt?: string;
  assignedAt?: string;
  startedAt?: string;
  /** When the controller received the job's first output byte. */
  firstOutputAt?: string;
  endedAt?: string;
  /** Milliseconds from submission to the first step starting (controller clock). */
  queuedMs?: number;
  durationMs?: number;
  logBytes: number;
  /** Times the agent resumed the job's session after its connection dropped. */
  reconnects?: number;
  /** Peak resident memory of the agent process during the job. */
  agentPeakRssBytes?: number;
  /** Peak bytes the job used on the agent's work dir filesystem. */
  diskUsedBytes?: number;
  /** The archive that seeds the workspace: its length, digest and entries. */
  workspace?: { bytes: number; sha256: string; entries: number };
  /** How the seed and the artifacts went on the agent (its `job-end.transfers`), for the last attempt that reported. */
  transfers?: JobEnd["transfers"];
  /** The artifacts as the controller stored them (or why it did not), with the attempt that sent them. */
  artifacts?: ArtifactsRecord & { attempt: number };
  /** The trust value the job's warm caches are keyed by (`<repository>@protected|unprotected`). */
  cacheTrust?: string;
  /** What the warm caches did: hits, misses, evictions (the agent's report). */
  caches?: JobEnd["caches"];
  steps: StepRecord[];
  /** The job this one runs again (`POST /api/v1/jobs/:id/retry`). */
  retryOf?: string;
}

/** One line of a job's event log, as served by `GET /api/v1/jobs/:id/events`. */
export type JobEvent =
  | { type: "status"; status: JobStatus; at: string; agent?: string; logs?: AgentLogs }
  | {
      type: "attempt";
      attempt: number;
      at: string;
      agent: string;
      platform: string;
      template?: string;
      labels: string[];
      /** Where the attempt's output begins in the log (bytes). */
      logOffset: number;
      /** Why the previous attempt ended, when this one is a retry. */
      retryOf?: { cause: AttemptCause; message?: string };
    }
  | { type: "step-start"; stepId: string; name?: string; index: number; total: number; at: string }
  | {
      type: "output";
      stepId: string;
      stream: OutputStream;
      text: string;
      /** When the controller received these bytes (its own clock); absent in logs stored before it was recorded. */
      at?: string;
    }
  | {
      type: "step-end";
      stepId: string;
      index: number;
      total: number;
      status: StepStatus;
      exitCode: number | null;
      signal: string | null;
      reason: StepReason;
      durationMs: number;
      message?: string;
      peakRssBytes?: number | null;
    }
  | ({
      type: "artifacts";
      /** The attempt that sent them. */
      attempt: number;
      /** When the controller received their end (its clock). */
      at: string;
    } & ArtifactsRecord)
  | {
      type: "job-end";
      status: JobStatus;
      reason?: JobReason;
      cause?: FailureCause;
      message?: string;
      durationMs?: number;
    };

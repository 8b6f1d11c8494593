import type { JobEnd, OutputFrame, StepEnd, StepReason, StepStart } from "../agent-core/index.ts";
import type { ArtifactsRecord } from "./artifact-receiver.ts";
import {
  type AgentLogs,
  type FailureCause,
  type JobFiles,
  type JobReason,
  type JobRecord,
  type JobStatus,
  TERMINAL_STATUSES,
} from "./job-store.ts";

/** Why and how a job ended, as the recorder writes it into the record and the `job-end` event. */
export interface JobEnding {
  reason: JobReason;
  cause: FailureCause;
  message?: string;
  durationMs?: number;
}

const PLATFORM_REASONS: ReadonlySet<JobReason> = new Set([
  "deadline",
  "disk",
  "interrupted",
  "agent-lost",
  "provision-failed",
]);

/** Who a step reason is attributed to. */
export function causeOf(reason: StepReason): FailureCause {
  return PLATFORM_REASONS.has(reason) ? "platform" : "user";
}

/**
 * Writes one job's history: the record (`job.json`), its events and its output (`JobFiles`).
 * It takes what the agent reported, already checked by `AgentConnection`, and what the
 * controller decided (statuses, the end); it knows nothing of queues, agents or provisioners.
 */
export class JobRecorder {
  readonly record: JobRecord;
  readonly files: JobFiles;
  readonly #waiters: ((record: JobRecord) => void)[] = [];

  constructor(record: JobRecord, files: JobFiles) {
    this.record = record;
    this.files = files;
  }

  get ended(): boolean {
    return TERMINAL_STATUSES.has(this.record.status);
  }

  /** Resolves with the record once the job reaches a terminal status. */
  waitForEnd(): Promise<JobRecord> {
    if (this.ended) return Promise.resolve(this.record);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  setStatus(status: JobStatus, agent?: string, logs?: AgentLogs): void {
    this.record.status = status;
    this.files.appendEvent({
      type: "status",
      status,
      at: new Date().toISOString(),
      ...(agent ? { agent } : {}),
      ...(agent && logs ? { logs } : {}),
    });
    this.files.saveRecord(this.record);
  }

  stepStart(message: StepStart): void {
    const { index, step } = this.#step(message.stepId);
    step.status = "running";
    step.startedAt = new Date(message.startedAt).toISOString();
    if (this.record.startedAt === undefined) {
      this.record.startedAt = step.startedAt;
      this.record.queuedMs = message.startedAt - Date.parse(this.record.submittedAt);
      this.setStatus("running");
    }
    this.files.appendEvent({
      type: "step-start",
      stepId: step.id,
      ...(step.name !== undefined ? { name: step.name } : {}),
      index: index + 1,
      total: this.record.steps.length,
      at: step.startedAt,
    });
  }

  /** Stores output bytes with the controller's receipt time. */
  output(frame: OutputFrame): void {
    const at = new Date().toISOString();
    if (this.record.firstOutputAt === undefined && frame.data.length > 0) this.record.firstOutputAt = at;
    this.files.appendOutput(frame.stepId, frame.stream, frame.data, at);
    this.record.logBytes = this.files.outputBytes;
  }

  stepEnd(message: StepEnd): void {
    const { index, step } = this.#step(message.stepId);
    Object.assign(step, {
      status: message.reason === "exit" && message.exitCode === 0 ? "succeeded" : "failed",
      endedAt: new Date().toISOString(),
      durationMs: message.durationMs,
      exitCode: message.exitCode,
      signal: message.signal,
      reason: message.reason,
      stdoutBytes: message.stdoutBytes,
      stderrBytes: message.stderrBytes,
      ...(message.peakRssBytes !== undefined ? { peakRssBytes: message.peakRssBytes } : {}),
      ...(message.message !== undefined ? { message: message.message } : {}),
    });
    this.files.appendEvent({
      type: "step-end",
      stepId: step.id,
      index: index + 1,
      total: this.record.steps.length,
      status: step.status,
      exitCode: message.exitCode,
      signal: message.signal,
      reason: message.reason,
      durationMs: message.durationMs,
      ...(message.peakRssBytes !== undefined ? { peakRssBytes: message.peakRssBytes } : {}),
      ...(message.message !== undefined ? { message: message.message } : {}),
    });
    this.files.saveRecordSoon(this.record);
  }

  /** Records the agent's `job-end` measurements; returns the status and ending it reports. */
  jobEnd(message: JobEnd, cancelRequested: boolean): { status: JobStatus; ending: JobEnding } {
    if (message.agentPeakRssBytes !== undefined) this.record.agentPeakRssBytes = message.agentPeakRssBytes;
    if (message.diskUsedBytes !== undefined) this.record.diskUsedBytes = message.diskUsedBytes;
    if (message.transfers !== undefined) this.record.transfers = message.transfers;
    if (message.caches !== undefined)
      this.record.caches = { ...message.caches, ...(this.record.caches ?? {}) };
    const status: JobStatus =
      message.status === "succeeded"
        ? "succeeded"
        : message.reason === "cancelled" && cancelRequested
          ? "cancelled"
          : "failed";
    return {
      status,
      ending: {
        reason: message.reason,
        cause: causeOf(message.reason),
        durationMs: message.durationMs,
        ...(message.message !== undefined ? { message: message.message } : {}),
      },
    };
  }

  /** Records what became of the job's artifacts on the controller. */
  artifacts(record: ArtifactsRecord): void {
    this.record.artifacts = record;
    this.files.saveRecord(this.record);
  }

  /** Ends the job (once: later calls are ignored); returns whether this call ended it. */
  finish(status: JobStatus, ending: JobEnding): boolean {
    if (this.ended) return false;
    const record = this.record;
    record.status = status;
    record.endedAt = new Date().toISOString();
    if (status !== "succeeded") {
      record.reason = ending.reason;
      record.cause = ending.cause;
    }
    if (ending.message !== undefined) record.message = ending.message;
    record.durationMs =
      ending.durationMs ?? (record.startedAt ? Date.parse(record.endedAt) - Date.parse(record.startedAt) : 0);
    for (const step of record.steps) {
      if (step.status === "pending") step.status = "skipped";
      else if (step.status === "running") step.status = "failed";
    }
    this.files.appendEvent({
      type: "job-end",
      status,
      ...(status !== "succeeded" ? { reason: ending.reason, cause: ending.cause } : {}),
      ...(ending.message !== undefined ? { message: ending.message } : {}),
      durationMs: record.durationMs,
    });
    this.files.saveRecord(record);
    this.files.close();
    for (const waiter of this.#waiters.splice(0)) waiter(record);
    return true;
  }

  #step(stepId: string) {
    const index = this.record.steps.findIndex((s) => s.id === stepId);
    return { index, step: this.record.steps[index]! };
  }
}

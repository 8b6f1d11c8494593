import { rmSync } from "node:fs";
import { join } from "node:path";
import type {
  ArtifactsEnd,
  Job,
  JobEnd,
  OutputFrame,
  StepEnd,
  StepReason,
  StepStart,
  TransferFrame,
} from "../agent-core/index.ts";
import { type JobStream, newJobStream } from "./agent-connection.ts";
import { ARTIFACTS_TOO_LARGE, ArtifactReceiver, type ArtifactsRecord } from "./artifact-receiver.ts";
import type { JobFiles, StoredEvent } from "./job-files.ts";
import {
  type AgentLogs,
  type AttemptCause,
  type AttemptRecord,
  type FailureCause,
  type JobReason,
  type JobRecord,
  type JobStatus,
  TERMINAL_STATUSES,
} from "./job-record.ts";
import { ARTIFACTS_FILE } from "./store.ts";

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

/** The attempt cause of an agent's `job-end`. */
export function attemptCauseOf(message: JobEnd, cancelRequested: boolean): AttemptCause {
  if (message.status === "succeeded") return "succeeded";
  switch (message.reason) {
    case "interrupted":
    case "deadline":
    case "disk":
      return message.reason;
    case "cancelled":
      return cancelRequested ? "cancelled" : "user";
    default:
      return "user";
  }
}

/** The controller's clock, as ISO text. Every time the recorder writes comes from here. */
export type Clock = () => Date;

/** What a recorder needs besides the record and the files. */
export interface RecorderOptions {
  clock: Clock;
  maxLogBytes: number;
  /** Largest artifact set stored for the job; past it the artifacts are refused. */
  maxArtifactBytes: number;
}

/**
 * Writes one job's history: the record (`job.json`), its journal and its output (`JobFiles`),
 * and the current attempt's artifacts (`artifacts.tar`, `.part` while they arrive).
 * It takes what the agent reported, already checked by `AgentConnection`, and what the
 * controller decided (attempts, statuses, the end); it knows nothing of queues, agents or
 * provisioners. Every time it records is the controller's (`clock`); what the agent says about
 * time is kept apart (`agentStartedAt`).
 */
export class JobRecorder {
  readonly record: JobRecord;
  readonly files: JobFiles;
  readonly #clock: Clock;
  readonly #maxLogBytes: number;
  readonly #maxArtifactBytes: number;
  readonly #waiters: ((record: JobRecord) => void)[] = [];
  /** The current attempt's artifact stream, from its first frame to `artifacts-end`. */
  #artifacts: ArtifactReceiver | undefined;

  constructor(record: JobRecord, files: JobFiles, options: RecorderOptions) {
    this.record = record;
    this.files = files;
    this.#clock = options.clock;
    this.#maxLogBytes = options.maxLogBytes;
    this.#maxArtifactBytes = options.maxArtifactBytes;
  }

  get ended(): boolean {
    return TERMINAL_STATUSES.has(this.record.status);
  }

  /** The attempt under way (launched or running, not ended), if any. */
  get currentAttempt(): AttemptRecord | undefined {
    const last = this.record.attempts.at(-1);
    return last?.cause === undefined ? last : undefined;
  }

  /** Whether the log reached `maxLogBytes`: the rest of the output is dropped. */
  get logCapped(): boolean {
    return this.files.outputBytes >= this.#maxLogBytes;
  }

  get maxLogBytes(): number {
    return this.#maxLogBytes;
  }

  get maxArtifactBytes(): number {
    return this.#maxArtifactBytes;
  }

  /** Whether the current attempt's artifacts went past `maxArtifactBytes` (so they are refused). */
  get artifactsOverCap(): boolean {
    const attempt = this.record.attempts.at(-1)?.n;
    return (
      this.#artifacts?.overLimit === true ||
      (this.record.artifacts?.attempt === attempt &&
        this.record.artifacts?.status === "failed" &&
        this.record.artifacts.code === ARTIFACTS_TOO_LARGE)
    );
  }

  /** Path of the stored artifacts. */
  get artifactsPath(): string {
    return join(this.files.dir, ARTIFACTS_FILE);
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
      at: this.#now(),
      ...(agent ? { agent } : {}),
      ...(agent && logs ? { logs } : {}),
    });
    this.files.saveRecordSoon(this.record);
  }

  /**
   * Writes the record now. The journal holds every message already; the record is written
   * lazily (`saveRecordSoon`) except where a restart depends on it: a launch (its agent name and
   * platform id) and an assignment (the agent that has the job), which callers save at once.
   */
  save(): void {
    this.files.saveRecord(this.record);
  }

  /**
   * Starts a new attempt (a launch, or an agent that was already connected taking the job). Its
   * journal line makes it durable (a restart rebuilds attempts from the journal); the record
   * follows lazily.
   */
  beginAttempt(attempt: Omit<AttemptRecord, "n" | "logOffset">): AttemptRecord {
    const previous = this.record.attempts.at(-1);
    const record: AttemptRecord = {
      n: this.record.attempts.length + 1,
      ...attempt,
      logOffset: this.files.outputBytes,
    };
    this.record.attempts.push(record);
    // A new attempt seeds its workspace and sends its artifacts afresh: nothing of an earlier
    // attempt's transfers stays (before the journal line: a restart sees no mix either).
    this.dropArtifacts();
    delete this.record.transfers;
    delete this.record.caches;
    // A new attempt runs the job from its first step.
    for (const step of this.record.steps) {
      for (const key of Object.keys(step)) if (key !== "id" && key !== "name") delete step[key as "message"];
      step.status = "pending";
    }
    this.files.appendEvent({
      type: "attempt",
      attempt: record.n,
      at: this.#now(),
      agent: record.agent,
      platform: record.platform,
      ...(record.template !== undefined ? { template: record.template } : {}),
      labels: record.labels,
      logOffset: record.logOffset,
      ...(previous?.cause !== undefined
        ? {
            retryOf: {
              cause: previous.cause,
              ...(previous.message !== undefined ? { message: previous.message } : {}),
            },
          }
        : {}),
    });
    this.files.saveRecordSoon(this.record);
    return record;
  }

  /** Notes a moment of the current attempt (`connectedAt`, `assignedAt`) or its platform id. */
  noteAttempt(
    fields: Partial<Pick<AttemptRecord, "connectedAt" | "assignedAt" | "platformRef" | "jobEndSeq">>,
  ): void {
    const attempt = this.currentAttempt;
    if (attempt === undefined) return;
    Object.assign(attempt, fields);
    this.files.saveRecordSoon(this.record);
  }

  /** Ends the current attempt with its cause; returns it. */
  endAttempt(cause: AttemptCause, message?: string): AttemptRecord | undefined {
    const attempt = this.currentAttempt;
    if (attempt === undefined) return undefined;
    attempt.endedAt = this.#now();
    attempt.cause = cause;
    if (message !== undefined) attempt.message = message;
    this.files.saveRecordSoon(this.record);
    return attempt;
  }

  now(): string {
    return this.#now();
  }

  stepStart(message: StepStart): void {
    const { index, step } = this.#step(message.stepId);
    const at = this.#now();
    step.status = "running";
    step.startedAt = at;
    step.agentStartedAt = new Date(message.startedAt).toISOString();
    if (this.record.startedAt === undefined) {
      this.record.startedAt = at;
      this.record.queuedMs = Date.parse(at) - Date.parse(this.record.submittedAt);
      this.setStatus("running");
    } else if (this.record.status !== "running") this.setStatus("running");
    this.files.appendEvent({
      type: "step-start",
      stepId: step.id,
      ...(step.name !== undefined ? { name: step.name } : {}),
      index: index + 1,
      total: this.record.steps.length,
      at,
      agentAt: step.agentStartedAt,
      seq: message.seq,
      attempt: this.#attemptNumber(),
    });
  }

  /**
   * Stores an output frame, or the part of it under the log cap. Returns true when this frame
   * reached the cap (the caller stops the job).
   */
  output(frame: OutputFrame): boolean {
    const room = Math.max(0, this.#maxLogBytes - this.files.outputBytes);
    const wasCapped = room === 0;
    const data = frame.data.length <= room ? frame.data : frame.data.subarray(0, room);
    const at = this.#now();
    if (this.record.firstOutputAt === undefined && data.length > 0) this.record.firstOutputAt = at;
    this.files.appendOutput({
      stepId: frame.stepId,
      stream: frame.stream,
      data,
      at,
      dropped: frame.data.length - data.length,
      seq: frame.seq,
      attempt: this.#attemptNumber(),
    });
    this.record.logBytes = this.files.outputBytes;
    return !wasCapped && data.length < frame.data.length;
  }

  /**
   * Stores an artifact frame (its offset already checked against the stream) in the attempt's
   * partial archive, then its journal line. Past `maxArtifactBytes` the bytes are dropped (the
   * line says so). Returns true when this frame went past the cap.
   */
  artifact(frame: TransferFrame): boolean {
    const wasOver = this.#artifacts?.overLimit === true;
    this.#artifacts ??= ArtifactReceiver.create(this.artifactsPath, this.#maxArtifactBytes);
    const receiver = this.#artifacts;
    const receivedBefore = receiver.receivedBytes;
    const kept = receiver.write(frame.offset, frame.data);
    try {
      this.files.appendEvent({
        type: "artifact",
        offset: frame.offset,
        length: frame.data.length,
        ...(kept ? {} : { dropped: true as const }),
        seq: frame.seq,
        attempt: this.#attemptNumber(),
      });
    } catch (error) {
      // Not journaled: not kept either (the agent sends the frame again).
      receiver.unwrite(receivedBefore, wasOver);
      throw error;
    }
    return !wasOver && receiver.overLimit;
  }

  /**
   * The end of the attempt's artifacts: checks what arrived against the agent's length and digest,
   * keeps them (`artifacts.tar`) or records why not, in the record and the journal.
   */
  artifactsEnd(message: ArtifactsEnd): ArtifactsRecord {
    this.#artifacts ??= ArtifactReceiver.create(this.artifactsPath, this.#maxArtifactBytes);
    const receiver = this.#artifacts;
    const result = receiver.end(message);
    const attempt = this.#attemptNumber();
    try {
      this.files.appendEvent({ type: "artifacts", ...result, attempt, at: this.#now(), seq: message.seq });
    } catch (error) {
      // Not journaled: the stream stays as it was, for the agent's resend of this end.
      if (result.status === "stored") receiver.unend();
      throw error;
    }
    this.#artifacts = undefined;
    if (result.status === "failed") receiver.discard();
    this.record.artifacts = { ...result, attempt };
    this.files.saveRecord(this.record);
    return result;
  }

  /** Drops the artifacts: a partial stream, the stored archive and what the record says of them. */
  dropArtifacts(): void {
    this.#artifacts?.discard();
    this.#artifacts = undefined;
    rmSync(this.artifactsPath, { force: true });
    rmSync(`${this.artifactsPath}.part`, { force: true });
    delete this.record.artifacts;
  }

  stepEnd(message: StepEnd): void {
    const { index, step } = this.#step(message.stepId);
    const at = this.#now();
    Object.assign(step, {
      status: message.reason === "exit" && message.exitCode === 0 ? "succeeded" : "failed",
      endedAt: at,
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
      at,
      stdoutBytes: message.stdoutBytes,
      stderrBytes: message.stderrBytes,
      seq: message.seq,
      attempt: this.#attemptNumber(),
    });
    this.files.saveRecordSoon(this.record);
  }

  /** Records the agent's `job-end` measurements; returns the status and ending it reports. */
  jobEnd(message: JobEnd, cancelRequested: boolean): { status: JobStatus; ending: JobEnding } {
    if (message.agentPeakRssBytes !== undefined) this.record.agentPeakRssBytes = message.agentPeakRssBytes;
    if (message.diskUsedBytes !== undefined) this.record.diskUsedBytes = message.diskUsedBytes;
    if (message.transfers !== undefined) this.record.transfers = message.transfers;
    if (message.caches !== undefined) this.record.caches = message.caches;
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

  /** Ends the job (once: later calls are ignored); returns whether this call ended it. */
  finish(status: JobStatus, ending: JobEnding): boolean {
    if (this.ended) return false;
    // A partial artifact stream (no artifacts-end came) is dropped.
    this.#artifacts?.discard();
    this.#artifacts = undefined;
    const record = this.record;
    record.status = status;
    record.endedAt = this.#now();
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

  /**
   * After a restart: brings the record up to the journal (the record is saved lazily, the journal
   * at every message) and rebuilds the current attempt's message stream for a resuming agent.
   * Returns the stream, or undefined when the current attempt had not been given the job.
   */
  recover(events: readonly StoredEvent[], job: Job): JobStream | undefined {
    this.#reconcileAttempts(events);
    const attempt = this.currentAttempt;
    this.record.logBytes = this.files.outputBytes;
    const lastStatus = events.findLast((event) => event.type === "status");
    if (lastStatus?.type === "status") this.record.status = lastStatus.status;
    if (attempt?.assignedAt === undefined) return undefined;
    const stream = newJobStream(job);
    for (const step of this.record.steps) {
      for (const key of Object.keys(step)) if (key !== "id" && key !== "name") delete step[key as "message"];
      step.status = "pending";
    }
    const artifacts = { receivedBytes: 0, storedBytes: 0, frames: 0 };
    let artifactsEnd: Extract<StoredEvent, { type: "artifacts" }> | undefined;
    for (const event of events) {
      if (!("seq" in event) || event.attempt !== attempt.n) continue;
      stream.lastSeq = Math.max(stream.lastSeq, event.seq);
      if (event.type === "artifact") {
        artifacts.frames++;
        artifacts.receivedBytes += event.length;
        if (!event.dropped) artifacts.storedBytes += event.length;
        continue;
      }
      if (event.type === "artifacts") {
        artifactsEnd = event;
        continue;
      }
      if (event.type === "step-start") {
        stream.runningStep = event.stepId;
        stream.nextStep = event.index;
        stream.offsets = { stdout: 0, stderr: 0 };
        const step = this.record.steps[event.index - 1]!;
        Object.assign(step, {
          status: "running",
          startedAt: event.at,
          ...(event.agentAt !== undefined ? { agentStartedAt: event.agentAt } : {}),
        });
      } else if (event.type === "output") {
        stream.offsets[event.stream] += event.length + (event.dropped ?? 0);
      } else if (event.type === "step-end") {
        stream.runningStep = undefined;
        const { type: _t, stepId: _s, index, total: _n, seq: _q, attempt: _a, at, ...fields } = event;
        Object.assign(this.record.steps[index - 1]!, { ...fields, endedAt: at });
      }
    }
    this.#recoverArtifacts(stream, artifacts, artifactsEnd);
    this.files.saveRecord(this.record);
    return stream;
  }

  /**
   * The current attempt's artifacts as the journal has them: ended (the record says how), or a
   * stream under way, reopened at the end of its last committed frame so the resuming agent's
   * resend continues it. Nothing of an earlier attempt stays.
   */
  #recoverArtifacts(
    stream: JobStream,
    committed: { receivedBytes: number; storedBytes: number; frames: number },
    end: Extract<StoredEvent, { type: "artifacts" }> | undefined,
  ): void {
    stream.artifactBytes = committed.receivedBytes;
    stream.artifactsEnded = end !== undefined;
    if (end !== undefined) {
      const { type: _t, seq: _s, at: _a, ...result } = end;
      this.record.artifacts = result;
      rmSync(`${this.artifactsPath}.part`, { force: true });
      return;
    }
    delete this.record.artifacts;
    if (committed.frames === 0) {
      rmSync(this.artifactsPath, { force: true });
      rmSync(`${this.artifactsPath}.part`, { force: true });
      return;
    }
    this.#artifacts = ArtifactReceiver.reopen(this.artifactsPath, this.#maxArtifactBytes, committed);
  }

  /**
   * The record's attempts brought up to the journal: an attempt begun, or given the job
   * (`assigned`), after the record was last written. An attempt followed by a later one whose end
   * the record missed is ended `agent-lost`.
   */
  #reconcileAttempts(events: readonly StoredEvent[]): void {
    const attempts = this.record.attempts;
    let current: AttemptRecord | undefined;
    for (const event of events) {
      if (event.type === "attempt") {
        current = attempts[event.attempt - 1];
        if (current === undefined) {
          const previous = attempts.at(-1);
          if (previous !== undefined && previous.cause === undefined) {
            previous.cause = "agent-lost";
            previous.message = "ended before a controller restart; its end was not recorded";
          }
          current = {
            n: event.attempt,
            agent: event.agent,
            platform: event.platform,
            ...(event.template !== undefined
              ? { template: event.template, launchedAt: event.at }
              : { connectedAt: event.at }),
            labels: event.labels,
            logOffset: event.logOffset,
          };
          attempts.push(current);
        }
      } else if (
        event.type === "status" &&
        event.status === "assigned" &&
        current !== undefined &&
        current.agent === event.agent
      ) {
        current.assignedAt ??= event.at;
      }
    }
  }

  #attemptNumber(): number {
    return this.record.attempts.at(-1)?.n ?? 0;
  }

  #now(): string {
    return this.#clock().toISOString();
  }

  #step(stepId: string) {
    const index = this.record.steps.findIndex((s) => s.id === stepId);
    return { index, step: this.record.steps[index]! };
  }
}

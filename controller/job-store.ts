import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import type { JobEnd, OutputStream, StepReason } from "../agent-core/index.ts";
import type { ArtifactsRecord } from "./artifact-receiver.ts";

export type JobStatus = "queued" | "assigned" | "running" | "succeeded" | "failed" | "cancelled" | "error";
export type StepStatus = "pending" | "running" | "succeeded" | "failed" | "skipped";
/** Who a failure is attributed to: the user's commands, or the platform (deadline, interruption, lost agent). */
export type FailureCause = "user" | "platform";
/** Why a job ended: a step reason, or a controller-side one. */
export type JobReason = StepReason | "agent-lost" | "provision-failed";

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
  startedAt?: string;
  endedAt?: string;
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

export interface JobRecord {
  id: string;
  name?: string;
  labels: string[];
  status: JobStatus;
  reason?: JobReason;
  cause?: FailureCause;
  message?: string;
  agent?: { name: string; runtime: string; version: string; labels: string[]; logs?: AgentLogs };
  submittedAt: string;
  /** When the controller first asked a provisioner for an agent for this job. */
  launchedAt?: string;
  /** When the agent launched for this job said hello. */
  connectedAt?: string;
  assignedAt?: string;
  startedAt?: string;
  /** When the controller received the job's first output byte. */
  firstOutputAt?: string;
  endedAt?: string;
  /** Milliseconds from submission to the agent's first step starting. */
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
  /** How the seed and the artifacts went on the agent (its `job-end.transfers`). */
  transfers?: JobEnd["transfers"];
  /** The artifacts as the controller stored them (or why it did not). */
  artifacts?: ArtifactsRecord;
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
  | {
      type: "job-end";
      status: JobStatus;
      reason?: JobReason;
      cause?: FailureCause;
      message?: string;
      durationMs?: number;
    };

/** What is stored for an output event: where its bytes are in output.log. */
type StoredEvent =
  | Exclude<JobEvent, { type: "output" }>
  | { type: "output"; stepId: string; stream: OutputStream; offset: number; length: number; at?: string };

/** A reader of a job's events; `end` is called once when the job's log is complete. */
const SAVE_DELAY_MS = 200;

export interface LogListener {
  event(event: JobEvent, data?: Buffer): void;
  end(): void;
}

/**
 * A job's files under `<dataDir>/jobs/<id>/`: `job.json` (the record), `output.log` (every
 * output byte in arrival order, unchanged) and `events.jsonl` (steps, statuses, and where each
 * output frame sits in output.log). Writes are synchronous, so a reader that replays the files
 * and then subscribes, in one tick, sees every event exactly once.
 */
export class JobFiles {
  readonly dir: string;
  readonly #outputFd: number;
  readonly #eventsFd: number;
  #outputBytes = 0;
  #closed = false;
  readonly #listeners = new Set<LogListener>();

  constructor(dataDir: string, jobId: string) {
    this.dir = join(dataDir, "jobs", jobId);
    mkdirSync(this.dir, { recursive: true });
    this.#outputFd = openSync(join(this.dir, "output.log"), "a");
    this.#eventsFd = openSync(join(this.dir, "events.jsonl"), "a");
  }

  get outputBytes(): number {
    return this.#outputBytes;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Writes the record now (atomically: a temp file, then a rename). */
  saveRecord(record: JobRecord): void {
    clearTimeout(this.#saveTimer);
    this.#saveTimer = undefined;
    const path = join(this.dir, "job.json");
    writeFileSync(`${path}.tmp`, `${JSON.stringify(record, null, 2)}\n`);
    renameSync(`${path}.tmp`, path);
  }

  /**
   * Writes the record within `SAVE_DELAY_MS`, once for any number of calls: a job of many short
   * steps does not rewrite its record at every step. Status changes and the end use `saveRecord`.
   */
  saveRecordSoon(record: JobRecord): void {
    if (this.#saveTimer !== undefined || this.#closed) return;
    this.#saveTimer = setTimeout(() => this.saveRecord(record), SAVE_DELAY_MS);
    this.#saveTimer.unref();
  }

  #saveTimer: NodeJS.Timeout | undefined;

  /**
   * Appends output bytes, unchanged, to output.log, and an event saying where they are and when
   * they arrived (`at`, ISO time).
   */
  appendOutput(stepId: string, stream: OutputStream, data: Buffer, at: string): void {
    if (this.#closed) return;
    const offset = this.#outputBytes;
    writeAll(this.#outputFd, data);
    this.#outputBytes += data.length;
    this.#writeEvent({ type: "output", stepId, stream, offset, length: data.length, at });
    // Decoding costs on every frame: only when someone follows the job live.
    if (this.#listeners.size > 0)
      this.#emit({ type: "output", stepId, stream, text: data.toString("utf8"), at }, data);
  }

  appendEvent(event: Exclude<JobEvent, { type: "output" }>): void {
    if (this.#closed) return;
    this.#writeEvent(event);
    this.#emit(event);
  }

  /** Replays what is stored, then (unless the job is over) delivers live events until `close`. */
  follow(listener: LogListener, live: boolean): () => void {
    for (const { event, data } of this.replay()) listener.event(event, data);
    if (!live || this.#closed) {
      listener.end();
      return () => {};
    }
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Every stored event with its output bytes. */
  *replay(): Generator<{ event: JobEvent; data?: Buffer }> {
    const lines = readFileSync(join(this.dir, "events.jsonl"), "utf8").split("\n");
    const fd = openSync(join(this.dir, "output.log"), "r");
    try {
      for (const line of lines) {
        if (line === "") continue;
        const stored = JSON.parse(line) as StoredEvent;
        if (stored.type !== "output") {
          yield { event: stored };
          continue;
        }
        const data = Buffer.alloc(stored.length);
        readSync(fd, data, 0, stored.length, stored.offset);
        yield {
          event: {
            type: "output",
            stepId: stored.stepId,
            stream: stored.stream,
            text: data.toString("utf8"),
            ...(stored.at !== undefined ? { at: stored.at } : {}),
          },
          data,
        };
      }
    } finally {
      closeSync(fd);
    }
  }

  /** Ends the log: listeners get a final call with no event and are dropped. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.#outputFd);
    closeSync(this.#eventsFd);
    const listeners = [...this.#listeners];
    this.#listeners.clear();
    for (const listener of listeners) listener.end();
  }

  #writeEvent(event: StoredEvent): void {
    writeAll(this.#eventsFd, Buffer.from(`${JSON.stringify(event)}\n`));
  }

  #emit(event: JobEvent, data?: Buffer): void {
    for (const listener of this.#listeners) listener.event(event, data);
  }
}

function writeAll(fd: number, data: Buffer): void {
  let written = 0;
  while (written < data.length) written += writeSync(fd, data, written, data.length - written);
}

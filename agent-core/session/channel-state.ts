import { ProtocolError } from "../errors.ts";
import { CloseCode } from "../protocol/close-codes.ts";
import type { ControllerMessage, Job } from "../protocol/messages.ts";

/**
 * Where the agent's conversation with its controller stands, whatever connection is current:
 *
 * - `awaiting-job`: connected, no job yet. A `job` is taken whenever it arrives (also while the
 *   agent still measures its disk for `hello`).
 * - `running`: the job runs; output and step messages flow; `cancel` stops the job.
 * - `resuming`: the connection dropped mid-job; the agent reconnects and waits for `resume`.
 * - `awaiting-ack`: `job-end` is sent; the agent waits for the ack that covers it.
 * - `closed`: over (job acknowledged, released, given up, or closed by the agent).
 */
export type ChannelState = "awaiting-job" | "running" | "resuming" | "awaiting-ack" | "closed";

/** A decoded `workspace` binary frame: bytes of the job's seed, from `offset`. */
export interface WorkspaceData {
  type: "workspace-data";
  offset: number;
  data: Buffer;
}

/** What the controller sends: its JSON messages and its binary frames. */
export type ControllerInput = ControllerMessage | WorkspaceData;

/** What the channel must do about one event; the state has already moved. */
export type ChannelEffect =
  /** Take this job (the state is now `running`). */
  | { type: "take-job"; job: Job }
  /** Stop the running job: the controller cancelled it. */
  | { type: "cancel-job"; reason: string | undefined }
  /** Acknowledgements freed part of the outbox: wake a paused producer. */
  | { type: "flow" }
  /** The controller has everything up to `seq`: drop it from the outbox and send the rest. */
  | { type: "resume-from"; seq: number; ended: boolean }
  /** Seed bytes for the job's workspace download. */
  | { type: "workspace-data"; offset: number; data: Buffer }
  /** `job-end` is acknowledged (the state is now `closed`): close the session with 1000. */
  | { type: "job-end-acked" }
  /** The controller broke the protocol: close with `error.closeCode`. */
  | { type: "refuse"; error: ProtocolError }
  /** Nothing to do (said why, for the diagnostics). */
  | { type: "none"; why: string };

/** What a lost connection leads to. */
export type LossAction = "resume" | "give-up" | "nothing";

/**
 * The job channel's state machine, with no I/O: each controller message and each connection
 * event moves the state and says what to do ({@link ChannelEffect}). Messages that arrive
 * together (in one read) are fed one after another, so each meets the state the previous one
 * left. What each message does in each state (anything not listed closes with 4003):
 *
 * | message  | awaiting-job  | running          | resuming | awaiting-ack                  | closed  |
 * | -------- | ------------- | ---------------- | -------- | ----------------------------- | ------- |
 * | `job`    | takes it      | 4003             | 4003     | 4003                          | ignored |
 * | `cancel` | 4003          | stops the job    | 4003     | no effect                     | ignored |
 * | `ack`    | (seq 0 only)  | frees the outbox | 4003     | done once it covers `job-end` | ignored |
 * | `resume` | 4003          | 4003             | resumes  | 4003                          | ignored |
 * | `workspace` frame | 4003 | seed bytes (4003 for a job without a seed) | 4003 | 4003 | ignored |
 *
 * A `cancel` naming another job is 4003 in every state but `closed`. (An `ack` beyond what was
 * sent is refused by the session before it gets here.) A new message type gets one more row.
 */
export class ChannelStateMachine {
  #state: ChannelState = "awaiting-job";
  #job: Job | undefined;
  #jobEndSeq: number | undefined;

  get state(): ChannelState {
    return this.#state;
  }

  get job(): Job | undefined {
    return this.#job;
  }

  /** The seq of `job-end`, once it was queued. */
  get jobEndSeq(): number | undefined {
    return this.#jobEndSeq;
  }

  /** What a message from the controller does now. */
  receive(message: ControllerInput): ChannelEffect[] {
    switch (this.#state) {
      case "awaiting-job":
        return this.#awaitingJob(message);
      case "running":
        return this.#running(message);
      case "resuming":
        return this.#resuming(message);
      case "awaiting-ack":
        return this.#awaitingAck(message);
      case "closed":
        return [{ type: "none", why: `"${message.type}" after the channel closed` }];
    }
  }

  /** `job-end` was queued with `seq`, the controller having acknowledged up to `ackedSeq`. */
  jobEndQueued(seq: number, ackedSeq: number): ChannelEffect[] {
    this.#jobEndSeq = seq;
    if (this.#state === "running") this.#state = "awaiting-ack";
    return this.#ackedUpTo(ackedSeq);
  }

  /** The current connection closed; `resumable` per `isResumableClose` and no protocol error. */
  connectionLost(resumable: boolean): LossAction {
    switch (this.#state) {
      case "awaiting-job":
        this.#state = "closed";
        return "nothing";
      case "running":
      case "awaiting-ack":
        if (resumable) {
          this.#state = "resuming";
          return "resume";
        }
        this.#state = "closed";
        return "give-up";
      case "resuming":
      case "closed":
        return "nothing";
    }
  }

  /** The agent closes the conversation (idle, deadline, interrupted, given up). */
  close(): void {
    this.#state = "closed";
  }

  #awaitingJob(message: ControllerInput): ChannelEffect[] {
    switch (message.type) {
      case "job":
        this.#job = message.job;
        this.#state = "running";
        return [{ type: "take-job", job: message.job }];
      case "ack":
        return [{ type: "none", why: "an ack before any job (nothing was sent)" }];
      case "cancel":
        return refuse(`"cancel" for job ${message.jobId} before any job`);
      case "resume":
        return refuse(`"resume" for job ${message.jobId}, but the agent did not ask to resume`);
      case "workspace-data":
        return refuse("a workspace frame before any job");
    }
  }

  #running(message: ControllerInput): ChannelEffect[] {
    const job = this.#job!;
    switch (message.type) {
      case "ack":
        return [{ type: "flow" }];
      case "cancel":
        if (message.jobId !== job.id) {
          return refuse(`"cancel" for job ${message.jobId} while job ${job.id} runs`);
        }
        return [{ type: "cancel-job", reason: message.reason }];
      case "job":
        return refuse(`a second "job" (${message.job.id}) while job ${job.id} runs`);
      case "resume":
        return refuse(`"resume" for job ${message.jobId}, but the agent did not ask to resume`);
      case "workspace-data":
        if (job.workspace === undefined)
          return refuse(`a workspace frame, but job ${job.id} has no workspace to seed`);
        return [{ type: "workspace-data", offset: message.offset, data: message.data }];
    }
  }

  #resuming(message: ControllerInput): ChannelEffect[] {
    const job = this.#job!;
    if (message.type !== "resume" || message.jobId !== job.id) {
      const what = message.type === "resume" ? `"resume" for job ${message.jobId}` : `"${message.type}"`;
      return refuse(`${what}, but the agent waits for "resume" for job ${job.id}`);
    }
    const ended = message.ended === true;
    if (ended && (this.#jobEndSeq === undefined || message.seq < this.#jobEndSeq)) {
      return refuse(`"resume" saying job ${job.id} ended, but it lacks the agent's job-end`);
    }
    this.#state = this.#jobEndSeq === undefined ? "running" : "awaiting-ack";
    return [{ type: "resume-from", seq: message.seq, ended }, ...this.#ackedUpTo(message.seq)];
  }

  #awaitingAck(message: ControllerInput): ChannelEffect[] {
    const job = this.#job!;
    switch (message.type) {
      case "ack":
        return [{ type: "flow" }, ...this.#ackedUpTo(message.seq)];
      case "cancel":
        if (message.jobId !== job.id) {
          return refuse(`"cancel" for job ${message.jobId} after job ${job.id} ended`);
        }
        return [{ type: "none", why: "a cancel after job-end has no effect" }];
      case "job":
        return refuse(`a second "job" (${message.job.id}) while the end of job ${job.id} waits for its ack`);
      case "resume":
        return refuse(`"resume" for job ${message.jobId}, but the agent did not ask to resume`);
      case "workspace-data":
        return refuse(`a workspace frame after job ${job.id} ended`);
    }
  }

  #ackedUpTo(seq: number): ChannelEffect[] {
    if (this.#state !== "awaiting-ack" || this.#jobEndSeq === undefined || seq < this.#jobEndSeq) return [];
    this.#state = "closed";
    return [{ type: "job-end-acked" }];
  }
}

function refuse(what: string): ChannelEffect[] {
  return [{ type: "refuse", error: new ProtocolError(CloseCode.outOfOrder, `the controller sent ${what}`) }];
}

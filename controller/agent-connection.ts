import type WebSocket from "ws";
import {
  type AgentMessage,
  type ArtifactsEnd,
  CloseCode,
  closeReason,
  decodeAgentFrame,
  decodeAgentMessage,
  encodeMessage,
  encodeTransferFrame,
  type Hello,
  type Job,
  type JobEnd,
  type Logger,
  type OutputFrame,
  ProtocolError,
  type StepEnd,
  type StepStart,
  type TransferFrame,
  type WorkspacePull,
} from "../agent-core/index.ts";
import { isStoreWriteError } from "./errors.ts";

export interface AgentConnectionHandlers {
  hello(connection: AgentConnection, hello: Hello): void;
  stepStart(connection: AgentConnection, message: StepStart): void;
  output(connection: AgentConnection, frame: OutputFrame): void;
  stepEnd(connection: AgentConnection, message: StepEnd): void;
  jobEnd(connection: AgentConnection, message: JobEnd): void;
  /** An `artifact` frame, in order (offset checked); throw a ProtocolError to refuse it. */
  artifact(connection: AgentConnection, frame: TransferFrame): void;
  artifactsEnd(connection: AgentConnection, message: ArtifactsEnd): void;
  /** The agent asks for bytes of its job's seed: answer with `sendWorkspace`. */
  workspacePull(connection: AgentConnection, message: WorkspacePull): void;
  closed(connection: AgentConnection, code: number, reason: string): void;
}

export interface AgentConnectionOptions {
  heartbeatIntervalMs: number;
  helloTimeoutMs: number;
  /** Acks are coalesced: one at most this long after the first unacknowledged message. */
  ackDelayMs: number;
}

type State = "awaiting-hello" | "idle" | "busy" | "done" | "closed";

/**
 * Where a job's message stream stands: what the controller has received and checked. It belongs
 * to the job, not to a connection: a resumed session adopts it and continues after `lastSeq`.
 */
export interface JobStream {
  job: Job;
  lastSeq: number;
  nextStep: number;
  runningStep: string | undefined;
  offsets: { stdout: number; stderr: number };
  /** Messages that arrived again after a resume (seq already stored) and were dropped. */
  duplicates: number;
  /** Artifact bytes received (the next frame's offset), and whether `artifacts-end` came. */
  artifactBytes: number;
  artifactsEnded: boolean;
}

/** The stream of a job that no message has arrived for yet. */
export function newJobStream(job: Job): JobStream {
  return {
    job,
    lastSeq: 0,
    nextStep: 0,
    runningStep: undefined,
    offsets: { stdout: 0, stderr: 0 },
    duplicates: 0,
    artifactBytes: 0,
    artifactsEnded: false,
  };
}

const LINGER_AFTER_JOB_MS = 30_000;
/** How often a message held by a full store is tried again. */
const HELD_RETRY_MS = 1_000;
/** Largest `workspace` frame sent: with its header it fits the agent's smallest `maxPayload`. */
const WORKSPACE_FRAME_BYTES = 262_144;

/**
 * The controller's side of one agent connection. Checks every message against protocol v1 and
 * the job's stream (hello first; steps in the job's order; `seq` contiguous, messages already
 * stored before a resume dropped; output offsets contiguous and matching the byte counts in
 * `step-end`), acknowledges what it stored, and closes with a protocol close code on anything
 * else. Agent input never throws out of here.
 *
 * A message the store cannot write (a full disk: the handler throws `storeWriteError`) leaves the
 * stream as it was and is held, unacknowledged: it is tried again every second, and what the
 * agent sends meanwhile is dropped. Once it is stored, the session is closed with 1013 (try
 * again later) when anything was dropped, so the agent resumes and sends the rest again from
 * the last seq stored. An agent that gives up waiting closes the session itself (4006) and
 * resumes the same way: nothing it sent is lost either way.
 */
export class AgentConnection {
  readonly name: string;
  hello: Hello | undefined;
  stream: JobStream | undefined;
  /** Set when a newer connection of the same agent took over (a resume): its close is not a loss. */
  superseded = false;
  /**
   * Set when the agent's name is spent (its job ended) and the connection was let in only to
   * resume that job: a hello without that resume is refused.
   */
  resumeOnly: string | undefined;
  #state: State = "awaiting-hello";
  readonly #socket: WebSocket;
  readonly #handlers: AgentConnectionHandlers;
  readonly #logger: Logger;
  readonly #options: AgentConnectionOptions;
  #ackTimer: NodeJS.Timeout | undefined;
  /** The message the store could not write, tried again every `HELD_RETRY_MS`. */
  #held: { data: Buffer; isBinary: boolean; dropped: number; timer: NodeJS.Timeout } | undefined;
  #alive = true;
  readonly #heartbeat: NodeJS.Timeout;
  readonly #helloTimer: NodeJS.Timeout;

  constructor(
    socket: WebSocket,
    name: string,
    handlers: AgentConnectionHandlers,
    logger: Logger,
    options: AgentConnectionOptions,
  ) {
    this.name = name;
    this.#socket = socket;
    this.#handlers = handlers;
    this.#logger = logger;
    this.#options = options;
    socket.on("message", (data, isBinary) => this.#receive(data as Buffer, isBinary));
    socket.on("pong", () => {
      this.#alive = true;
    });
    socket.on("error", (error) => this.#logger.warn("agent connection error", { error }));
    socket.once("close", (code, reason) => this.#onClose(code, reason.toString("utf8")));
    this.#heartbeat = setInterval(() => {
      if (!this.#alive) {
        this.#logger.warn("agent missed a heartbeat; dropping it");
        socket.terminate();
        return;
      }
      this.#alive = false;
      socket.ping();
    }, options.heartbeatIntervalMs);
    this.#heartbeat.unref();
    this.#helloTimer = setTimeout(() => {
      this.#fail(new ProtocolError(CloseCode.outOfOrder, `no hello within ${options.helloTimeoutMs} ms`));
    }, options.helloTimeoutMs);
    this.#helloTimer.unref();
  }

  get state(): State {
    return this.#state;
  }

  get labels(): string[] {
    return this.hello?.agent.labels ?? [];
  }

  get job(): Job | undefined {
    return this.stream?.job;
  }

  /** Sends a job to an idle agent. */
  assign(job: Job): void {
    if (this.#state !== "idle")
      throw new Error(`cannot assign a job to agent ${this.name} in state ${this.#state}`);
    this.stream = newJobStream(job);
    this.#state = "busy";
    this.#socket.send(encodeMessage({ v: 1, type: "job", job }));
  }

  /** Continues a job's stream on this (resumed) connection, telling the agent the last seq stored. */
  adopt(stream: JobStream): void {
    if (this.#state !== "idle")
      throw new Error(`cannot resume on agent ${this.name} in state ${this.#state}`);
    this.stream = stream;
    this.#state = "busy";
    this.#socket.send(encodeMessage({ v: 1, type: "resume", jobId: stream.job.id, seq: stream.lastSeq }));
  }

  /**
   * Answers a resuming hello for a job that already ended with this agent's `job-end` (its ack
   * was lost): `resume` with the last seq stored and `ended: true`. Nothing more is accepted.
   */
  confirmEnded(jobId: string, jobEndSeq: number): void {
    if (this.#state !== "idle")
      throw new Error(`cannot confirm the end of a job on agent ${this.name} in state ${this.#state}`);
    this.#state = "done";
    this.#socket.send(encodeMessage({ v: 1, type: "resume", jobId, seq: jobEndSeq, ended: true }));
    setTimeout(() => this.close(CloseCode.normal, "job done"), LINGER_AFTER_JOB_MS).unref();
  }

  /** Sends seed bytes (`workspace` frames of at most 256 KiB), an answer to `workspace-pull`. */
  sendWorkspace(offset: number, data: Buffer): void {
    if (this.#state !== "busy") return;
    for (let at = 0; at < data.length; at += WORKSPACE_FRAME_BYTES) {
      const chunk = data.subarray(at, at + WORKSPACE_FRAME_BYTES);
      this.#socket.send(
        encodeTransferFrame({ kind: "workspace", seq: 0, offset: offset + at, data: chunk }),
        { binary: true },
      );
    }
  }

  cancel(reason: string): void {
    if (this.#state === "busy" && this.job) {
      this.#socket.send(encodeMessage({ v: 1, type: "cancel", jobId: this.job.id, reason }));
    }
  }

  close(code: number, reason: string): void {
    if (this.#state === "closed") return;
    this.#socket.close(code, closeReason(reason));
    setTimeout(() => this.#socket.terminate(), 2_000).unref();
  }

  /** Drops the connection at once (a newer connection of this agent took over). */
  terminate(): void {
    this.#socket.terminate();
  }

  #receive(data: Buffer, isBinary: boolean): void {
    if (this.#held !== undefined) {
      // Sent again after a resume, from the last seq stored.
      this.#held.dropped++;
      return;
    }
    const error = this.#handle(data, isBinary);
    if (error === undefined) return;
    this.#logger.warn("the controller cannot store the agent's message; holding it until there is room", {
      error: error.message,
      lastSeq: this.stream?.lastSeq,
    });
    const timer = setInterval(() => this.#retryHeld(), HELD_RETRY_MS);
    timer.unref();
    this.#held = { data, isBinary, dropped: 0, timer };
  }

  /** Handles one frame; returns the store error that kept it from being stored (the stream put back). */
  #handle(data: Buffer, isBinary: boolean): Error | undefined {
    const restore = this.#checkpoint();
    try {
      if (isBinary) {
        const frame = decodeAgentFrame(data);
        if ("stepId" in frame) this.#onOutput(frame);
        else this.#onArtifact(frame);
      } else this.#onMessage(decodeAgentMessage(data.toString("utf8")));
    } catch (error) {
      if (error instanceof ProtocolError) this.#fail(error);
      else if (isStoreWriteError(error)) {
        restore();
        return error;
      } else {
        this.#logger.error("internal error while handling an agent message", { error });
        this.close(CloseCode.internalError, "controller internal error");
      }
    }
    return undefined;
  }

  /** Returns what puts the session and its stream back as they are now (a message not stored). */
  #checkpoint(): () => void {
    const state = this.#state;
    const stream = this.stream;
    const fields = stream === undefined ? undefined : { ...stream, offsets: { ...stream.offsets } };
    return () => {
      this.#state = state;
      if (stream !== undefined && fields !== undefined) Object.assign(stream, fields);
    };
  }

  #retryHeld(): void {
    const held = this.#held;
    if (held === undefined || this.#handle(held.data, held.isBinary) !== undefined) return;
    clearInterval(held.timer);
    this.#held = undefined;
    this.#logger.info("the controller stored the held message", {
      lastSeq: this.stream?.lastSeq,
      dropped: held.dropped,
    });
    if (held.dropped > 0 && this.#state === "busy") {
      this.#sendAck();
      this.close(CloseCode.tryAgainLater, "the controller's store has room again: resume to send the rest");
    }
  }

  #onMessage(message: AgentMessage): void {
    if (message.type === "hello") {
      if (this.#state !== "awaiting-hello") throw outOfOrder("a second hello");
      if (message.agent.name !== this.name) {
        throw new ProtocolError(
          CloseCode.invalidMessage,
          `hello names agent ${JSON.stringify(message.agent.name)}, but the connection was opened as ${JSON.stringify(this.name)}`,
        );
      }
      clearTimeout(this.#helloTimer);
      this.hello = message;
      this.#state = "idle";
      this.#handlers.hello(this, message);
      return;
    }
    const stream = this.#requireStream(message.type);
    // The job first: a seq already used does not make a message about another job a duplicate.
    if (message.jobId !== stream.job.id) {
      throw new ProtocolError(
        CloseCode.invalidMessage,
        `${message.type} names job ${message.jobId}, but the agent runs ${stream.job.id}`,
      );
    }
    if (message.type === "workspace-pull") {
      this.#onWorkspacePull(stream, message);
      return;
    }
    if (this.#isDuplicate(stream, message.seq)) return;
    switch (message.type) {
      case "artifacts-end": {
        this.#checkArtifacts(stream, "artifacts-end");
        if (message.bytes !== undefined && message.bytes !== stream.artifactBytes) {
          throw new ProtocolError(
            CloseCode.invalidMessage,
            `artifacts-end says ${message.bytes} bytes, but ${stream.artifactBytes} arrived`,
          );
        }
        stream.artifactsEnded = true;
        this.#handlers.artifactsEnd(this, message);
        break;
      }
      case "step-start": {
        const expected = stream.job.steps[stream.nextStep];
        if (stream.runningStep !== undefined) {
          throw outOfOrder(`step-start of ${message.stepId} while step ${stream.runningStep} runs`);
        }
        if (expected === undefined || expected.id !== message.stepId) {
          throw outOfOrder(`step-start of ${message.stepId}; the next step is ${expected?.id ?? "(none)"}`);
        }
        stream.runningStep = message.stepId;
        stream.offsets = { stdout: 0, stderr: 0 };
        stream.nextStep++;
        this.#handlers.stepStart(this, message);
        break;
      }
      case "step-end": {
        if (stream.runningStep !== message.stepId) {
          throw outOfOrder(`step-end of ${message.stepId}; running: ${stream.runningStep ?? "none"}`);
        }
        if (message.stdoutBytes !== stream.offsets.stdout || message.stderrBytes !== stream.offsets.stderr) {
          throw new ProtocolError(
            CloseCode.invalidMessage,
            `step-end of ${message.stepId} counts ${message.stdoutBytes}/${message.stderrBytes} stdout/stderr bytes, but ${stream.offsets.stdout}/${stream.offsets.stderr} arrived`,
          );
        }
        stream.runningStep = undefined;
        this.#handlers.stepEnd(this, message);
        break;
      }
      case "job-end": {
        if (stream.runningStep !== undefined)
          throw outOfOrder(`job-end while step ${stream.runningStep} runs`);
        if (message.status === "succeeded" && stream.nextStep !== stream.job.steps.length) {
          throw new ProtocolError(
            CloseCode.invalidMessage,
            `job-end says succeeded, but only ${stream.nextStep} of ${stream.job.steps.length} steps ran`,
          );
        }
        this.#state = "done";
        this.#sendAck();
        this.#handlers.jobEnd(this, message);
        // The agent closes after the ack; a session that lingers is closed for it.
        setTimeout(() => this.close(CloseCode.normal, "job done"), LINGER_AFTER_JOB_MS).unref();
        return;
      }
    }
    this.#scheduleAck();
  }

  /** Not sequenced: a request for seed bytes, answered at once (the next pull acknowledges them). */
  #onWorkspacePull(stream: JobStream, message: WorkspacePull): void {
    const seed = stream.job.workspace;
    if (seed === undefined)
      throw outOfOrder(`workspace-pull for job ${stream.job.id}, which has no workspace to seed`);
    if (message.offset >= seed.bytes) {
      throw new ProtocolError(
        CloseCode.invalidMessage,
        `workspace-pull from offset ${message.offset}, but the seed has ${seed.bytes} bytes`,
      );
    }
    this.#handlers.workspacePull(this, message);
  }

  #onArtifact(frame: TransferFrame): void {
    const stream = this.#requireStream("artifact");
    if (this.#isDuplicate(stream, frame.seq)) return;
    this.#checkArtifacts(stream, "an artifact frame");
    if (frame.offset !== stream.artifactBytes) {
      throw new ProtocolError(
        CloseCode.outOfOrder,
        `artifact bytes from offset ${frame.offset}, but ${stream.artifactBytes} arrived`,
      );
    }
    stream.artifactBytes += frame.data.length;
    this.#handlers.artifact(this, frame);
    this.#scheduleAck();
  }

  /** Artifacts come after the steps, once, for a job that asked for them. */
  #checkArtifacts(stream: JobStream, what: string): void {
    if (stream.job.artifacts === undefined)
      throw outOfOrder(`${what} for job ${stream.job.id}, which keeps no artifacts`);
    if (stream.runningStep !== undefined) throw outOfOrder(`${what} while step ${stream.runningStep} runs`);
    if (stream.artifactsEnded) throw outOfOrder(`${what} after artifacts-end`);
  }

  #onOutput(frame: OutputFrame): void {
    const stream = this.#requireStream("output");
    if (this.#isDuplicate(stream, frame.seq)) return;
    if (frame.stepId !== stream.runningStep) {
      throw outOfOrder(`output for step ${frame.stepId}; running: ${stream.runningStep ?? "none"}`);
    }
    const expected = stream.offsets[frame.stream];
    if (frame.offset !== expected) {
      throw new ProtocolError(
        CloseCode.outOfOrder,
        `${frame.stream} of step ${frame.stepId} resumes at offset ${frame.offset}, expected ${expected}`,
      );
    }
    stream.offsets[frame.stream] += frame.data.length;
    this.#handlers.output(this, frame);
    this.#scheduleAck();
  }

  #requireStream(type: string): JobStream {
    if (this.#state !== "busy" || this.stream === undefined)
      throw outOfOrder(`${type} while the session is ${this.#state}`);
    return this.stream;
  }

  /** True for a message already stored (resent after a resume); throws on a gap. */
  #isDuplicate(stream: JobStream, seq: number): boolean {
    if (seq <= stream.lastSeq) {
      stream.duplicates++;
      this.#scheduleAck();
      return true;
    }
    if (seq !== stream.lastSeq + 1) throw outOfOrder(`seq ${seq} after ${stream.lastSeq}`);
    stream.lastSeq = seq;
    return false;
  }

  #scheduleAck(): void {
    if (this.#ackTimer !== undefined) return;
    this.#ackTimer = setTimeout(() => this.#sendAck(), this.#options.ackDelayMs);
  }

  #sendAck(): void {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    if (this.#state !== "closed" && this.stream) {
      this.#socket.send(encodeMessage({ v: 1, type: "ack", seq: this.stream.lastSeq }));
    }
  }

  #fail(error: ProtocolError): void {
    this.#logger.error("agent broke the protocol; closing its session", {
      closeCode: error.closeCode,
      error: error.message,
    });
    this.close(error.closeCode, error.message);
  }

  #onClose(code: number, reason: string): void {
    this.#state = "closed";
    clearInterval(this.#heartbeat);
    clearTimeout(this.#helloTimer);
    clearTimeout(this.#ackTimer);
    clearInterval(this.#held?.timer);
    this.#held = undefined;
    this.#handlers.closed(this, code, reason);
  }
}

function outOfOrder(what: string): ProtocolError {
  return new ProtocolError(CloseCode.outOfOrder, `message out of order: ${what}`);
}

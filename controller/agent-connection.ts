import type WebSocket from "ws";
import {
  type AgentMessage,
  CloseCode,
  closeReason,
  decodeAgentMessage,
  decodeOutputFrame,
  encodeMessage,
  type Hello,
  type Job,
  type JobEnd,
  type Logger,
  type OutputFrame,
  ProtocolError,
  type StepEnd,
  type StepStart,
} from "../agent-core/index.ts";

export interface AgentConnectionHandlers {
  hello(connection: AgentConnection, hello: Hello): void;
  stepStart(connection: AgentConnection, message: StepStart): void;
  output(connection: AgentConnection, frame: OutputFrame): void;
  stepEnd(connection: AgentConnection, message: StepEnd): void;
  jobEnd(connection: AgentConnection, message: JobEnd): void;
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
 * The controller's side of one agent session. Checks every message against protocol v1 and the
 * session's state (hello first; steps in the job's order; `seq` contiguous; output offsets
 * contiguous and matching the byte counts in `step-end`), acknowledges what it received, and
 * closes with a protocol close code on anything else. Agent input never throws out of here.
 */
export class AgentConnection {
  readonly name: string;
  hello: Hello | undefined;
  job: Job | undefined;
  #state: State = "awaiting-hello";
  readonly #socket: WebSocket;
  readonly #handlers: AgentConnectionHandlers;
  readonly #logger: Logger;
  readonly #options: AgentConnectionOptions;
  #lastSeq = 0;
  #ackTimer: NodeJS.Timeout | undefined;
  #nextStep = 0;
  #runningStep: string | undefined;
  #offsets = { stdout: 0, stderr: 0 };
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

  /** Sends a job to an idle agent. */
  assign(job: Job): void {
    if (this.#state !== "idle")
      throw new Error(`cannot assign a job to agent ${this.name} in state ${this.#state}`);
    this.job = job;
    this.#state = "busy";
    this.#socket.send(encodeMessage({ v: 1, type: "job", job }));
  }

  cancel(reason: string): void {
    if (this.#state === "busy" && this.job)
      this.#socket.send(encodeMessage({ v: 1, type: "cancel", jobId: this.job.id, reason }));
  }

  close(code: number, reason: string): void {
    if (this.#state === "closed") return;
    this.#socket.close(code, closeReason(reason));
    setTimeout(() => this.#socket.terminate(), 2_000).unref();
  }

  #receive(data: Buffer, isBinary: boolean): void {
    try {
      if (isBinary) this.#onOutput(decodeOutputFrame(data));
      else this.#onMessage(decodeAgentMessage(data.toString("utf8")));
    } catch (error) {
      if (error instanceof ProtocolError) this.#fail(error);
      else {
        this.#logger.error("internal error while handling an agent message", { error });
        this.close(CloseCode.internalError, "controller internal error");
      }
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
    const job = this.#requireJob(message.type);
    this.#checkSeq(message.seq);
    if (message.jobId !== job.id) {
      throw new ProtocolError(
        CloseCode.invalidMessage,
        `${message.type} names job ${message.jobId}, but the agent runs ${job.id}`,
      );
    }
    switch (message.type) {
      case "step-start": {
        const expected = job.steps[this.#nextStep];
        if (this.#runningStep !== undefined)
          throw outOfOrder(`step-start of ${message.stepId} while step ${this.#runningStep} runs`);
        if (expected === undefined || expected.id !== message.stepId) {
          throw outOfOrder(`step-start of ${message.stepId}; the next step is ${expected?.id ?? "(none)"}`);
        }
        this.#runningStep = message.stepId;
        this.#offsets = { stdout: 0, stderr: 0 };
        this.#nextStep++;
        this.#handlers.stepStart(this, message);
        break;
      }
      case "step-end": {
        if (this.#runningStep !== message.stepId)
          throw outOfOrder(`step-end of ${message.stepId}; running: ${this.#runningStep ?? "none"}`);
        if (message.stdoutBytes !== this.#offsets.stdout || message.stderrBytes !== this.#offsets.stderr) {
          throw new ProtocolError(
            CloseCode.invalidMessage,
            `step-end of ${message.stepId} counts ${message.stdoutBytes}/${message.stderrBytes} stdout/stderr bytes, but ${this.#offsets.stdout}/${this.#offsets.stderr} arrived`,
          );
        }
        this.#runningStep = undefined;
        this.#handlers.stepEnd(this, message);
        break;
      }
      case "job-end": {
        if (this.#runningStep !== undefined) throw outOfOrder(`job-end while step ${this.#runningStep} runs`);
        if (message.status === "succeeded" && this.#nextStep !== job.steps.length) {
          throw new ProtocolError(
            CloseCode.invalidMessage,
            `job-end says succeeded, but only ${this.#nextStep} of ${job.steps.length} steps ran`,
          );
        }
        this.#state = "done";
        this.#sendAck();
        // The agent closes after the ack; a session that lingers is closed for it.
        setTimeout(() => this.close(CloseCode.normal, "job done"), LINGER_AFTER_JOB_MS).unref();
        this.#handlers.jobEnd(this, message);
        return;
      }
    }
    this.#scheduleAck();
  }

  #onOutput(frame: OutputFrame): void {
    this.#requireJob("output");
    this.#checkSeq(frame.seq);
    if (frame.stepId !== this.#runningStep)
      throw outOfOrder(`output for step ${frame.stepId}; running: ${this.#runningStep ?? "none"}`);
    const expected = this.#offsets[frame.stream];
    if (frame.offset !== expected) {
      throw new ProtocolError(
        CloseCode.outOfOrder,
        `${frame.stream} of step ${frame.stepId} resumes at offset ${frame.offset}, expected ${expected}`,
      );
    }
    this.#offsets[frame.stream] += frame.data.length;
    this.#handlers.output(this, frame);
    this.#scheduleAck();
  }

  #requireJob(type: string): Job {
    if (this.#state !== "busy" || this.job === undefined)
      throw outOfOrder(`${type} while the session is ${this.#state}`);
    return this.job;
  }

  #checkSeq(seq: number): void {
    if (seq !== this.#lastSeq + 1) throw outOfOrder(`seq ${seq} after ${this.#lastSeq}`);
    this.#lastSeq = seq;
  }

  #scheduleAck(): void {
    if (this.#ackTimer !== undefined) return;
    this.#ackTimer = setTimeout(() => this.#sendAck(), this.#options.ackDelayMs);
  }

  #sendAck(): void {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    if (this.#state !== "closed") this.#socket.send(encodeMessage({ v: 1, type: "ack", seq: this.#lastSeq }));
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
    this.#handlers.closed(this, code, reason);
  }
}

const LINGER_AFTER_JOB_MS = 30_000;

function outOfOrder(what: string): ProtocolError {
  return new ProtocolError(CloseCode.outOfOrder, `message out of order: ${what}`);
}

import WebSocket from "ws";
import { type AgentError, ProtocolError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { CloseCode } from "../protocol/close-codes.ts";
import { closeReason, decodeControllerMessage, encodeMessage } from "../protocol/codec.ts";
import {
  decodeControllerFrame,
  encodeOutputFrame,
  encodeTransferFrame,
  type OutputStream,
} from "../protocol/frames.ts";
import type { ArtifactsEnd, Hello, JobEnd, StepEnd, StepStart, WorkspacePull } from "../protocol/messages.ts";
import type { ControllerInput } from "./channel-state.ts";
import type { Outbox } from "./outbox.ts";

export interface SessionOptions {
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  /** Sent messages unacknowledged this long, with no ack progress at all, end the session (a stuck controller). */
  ackTimeoutMs: number;
  /** A resuming connection: job messages wait until `resumeFrom` says where the controller stands. */
  held?: boolean;
}

export interface SessionClose {
  code: number;
  reason: string;
  /** Set when this side closed because the peer broke the protocol, or the agent could not go on. */
  error?: AgentError;
}

/** Receives every message the controller sends on one session, in order, and nothing else does. */
export type MessageHandler = (message: ControllerInput, session: AgentSession) => void;

export type Sequenced =
  | Omit<StepStart, "seq">
  | Omit<StepEnd, "seq">
  | Omit<JobEnd, "seq">
  | Omit<ArtifactsEnd, "seq">;

/** Bytes handed to the socket but not yet written out, above which the session stops feeding it. */
const SOCKET_HIGH_WATER_BYTES = 1_048_576;
/** How long a close handshake may take before the TCP connection is dropped. */
const CLOSE_TIMEOUT_MS = 2_000;

/**
 * Close codes of the frame errors `ws` raises while reading (it closes with them itself, and
 * then stops reading, so the peer's answer never arrives and the close event says 1006).
 */
const WS_ERROR_CLOSE_CODES: Readonly<Record<string, number>> = {
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: CloseCode.messageTooBig,
  WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH: CloseCode.messageTooBig,
  WS_ERR_INVALID_UTF8: CloseCode.invalidPayload,
};

/**
 * The agent's side of one WebSocket connection. Job messages go into the job's {@link Outbox}
 * (numbered, kept until acknowledged) and are fed to the socket only while its buffer is low,
 * so a slow or stalled controller costs bounded memory. Watches the heartbeat and the flow of
 * acks, and turns anything malformed from the controller into a protocol close. Every decoded
 * message goes to the one handler given at construction (the job channel). After a reconnect,
 * a new session over the same outbox resends what the controller lacks.
 */
export class AgentSession {
  readonly #socket: WebSocket;
  readonly #outbox: Outbox;
  readonly #logger: Logger;
  readonly #options: SessionOptions;
  readonly #handler: MessageHandler;
  /** The last seq handed to this socket. */
  #cursor: number;
  #heartbeat: NodeJS.Timeout | undefined;
  #awaitingPongSince: number | undefined;
  /** Since when sent messages have waited without any ack progress. */
  #ackClockSince = Date.now();
  #closeInfo: SessionClose | undefined;
  #held: boolean;
  readonly closed: Promise<SessionClose>;

  /**
   * Takes over an open socket. Construct it in the socket's `open` event (see
   * `connectToController`'s `adopt`), so that no frame can arrive before the handler is set.
   */
  constructor(
    socket: WebSocket,
    outbox: Outbox,
    logger: Logger,
    options: SessionOptions,
    handler: MessageHandler,
  ) {
    this.#socket = socket;
    this.#outbox = outbox;
    this.#cursor = outbox.acked;
    this.#logger = logger;
    this.#options = options;
    this.#handler = handler;
    this.#held = options.held === true;
    this.closed = new Promise((resolve) => {
      socket.once("close", (code, reason) => {
        clearInterval(this.#heartbeat);
        const info = this.#closeInfo ?? { code, reason: reason.toString("utf8") };
        this.#closeInfo = info;
        resolve(info);
      });
    });
    socket.on("error", (error) => this.#onSocketError(error));
    socket.on("message", (data, isBinary) => this.#receive(data as Buffer, isBinary));
    socket.on("pong", () => {
      this.#awaitingPongSince = undefined;
    });
    this.#startHeartbeat();
  }

  get isOpen(): boolean {
    return this.#socket.readyState === WebSocket.OPEN;
  }

  /** Why this side is closing, once it decided to (before the close event). */
  get closing(): SessionClose | undefined {
    return this.#closeInfo;
  }

  sendHello(hello: Hello): void {
    if (this.isOpen) this.#socket.send(encodeMessage(hello));
  }

  /** Queues a job message with the next seq and sends it when the socket has room; returns the seq. */
  send(message: Sequenced): number {
    const seq = this.#outbox.nextSeq();
    this.#outbox.push(
      seq,
      Buffer.from(encodeMessage({ ...message, seq } as StepStart | StepEnd | JobEnd | ArtifactsEnd)),
      false,
    );
    this.#pump();
    return seq;
  }

  sendOutput(stepId: string, stream: OutputStream, offset: number, data: Buffer): number {
    const seq = this.#outbox.nextSeq();
    this.#outbox.push(seq, encodeOutputFrame({ seq, stepId, stream, offset, data }), true);
    this.#pump();
    return seq;
  }

  /** Queues one `artifact` frame (sequenced like output: acknowledged, sent again after a resume). */
  sendArtifact(offset: number, data: Buffer): number {
    const seq = this.#outbox.nextSeq();
    this.#outbox.push(seq, encodeTransferFrame({ kind: "artifact", seq, offset, data }), true);
    this.#pump();
    return seq;
  }

  /**
   * Sends a `workspace-pull` now, or drops it when the connection is not open or still waits for
   * `resume` (not sequenced: the download asks again after the resume).
   */
  sendPull(pull: WorkspacePull): void {
    if (this.isOpen && !this.#held) this.#socket.send(encodeMessage(pull));
  }

  /** After a reconnect: the controller has everything up to `seq`; send the rest. False on a protocol error. */
  resumeFrom(seq: number): boolean {
    if (!this.#outbox.ack(seq)) {
      this.protocolError(
        new ProtocolError(
          CloseCode.outOfOrder,
          `the controller resumed at seq ${seq}, but only ${this.#outbox.seq} were sent`,
        ),
      );
      return false;
    }
    this.#cursor = seq;
    this.#held = false;
    this.#ackClockSince = Date.now();
    this.#pump();
    return true;
  }

  /** Closes the connection; resolves when closed (drops the TCP connection if the close handshake stalls). */
  async close(code: number, reason: string, timeoutMs = CLOSE_TIMEOUT_MS): Promise<SessionClose> {
    if (this.#closeInfo === undefined) this.#closeWith({ code, reason }, timeoutMs);
    return this.closed;
  }

  /** Drops the connection at once (no close handshake). */
  terminate(): void {
    this.#socket.terminate();
  }

  /** Closes the session because the controller broke the protocol; logs the diagnostic. */
  protocolError(error: ProtocolError): void {
    if (this.#closeInfo !== undefined) return;
    this.#logger.error("protocol error; closing the session", { error, closeCode: error.closeCode });
    this.#closeWith({ code: error.closeCode, reason: error.message, error });
  }

  /** Closes the session because the agent cannot go on with it (its own failure, not the peer's). */
  fail(code: number, error: AgentError): void {
    if (this.#closeInfo !== undefined) return;
    this.#logger.error("closing the session", { error, closeCode: code });
    this.#closeWith({ code, reason: error.message, error });
  }

  /** Records why this side closes, closes, and drops the TCP connection if the handshake stalls. */
  #closeWith(info: SessionClose, timeoutMs = CLOSE_TIMEOUT_MS): void {
    this.#closeInfo = info;
    const state = this.#socket.readyState;
    if (state === WebSocket.OPEN || state === WebSocket.CONNECTING) {
      this.#socket.close(info.code, closeReason(info.reason));
    }
    const timer = setTimeout(() => this.#socket.terminate(), timeoutMs);
    timer.unref();
    void this.closed.then(() => clearTimeout(timer));
  }

  #onSocketError(error: Error): void {
    const code = (error as NodeJS.ErrnoException).code;
    if (code?.startsWith("WS_ERR_") && this.#closeInfo === undefined) {
      // A frame ws refused (too big, invalid UTF-8, bad framing): ws closes with its code itself.
      const closeCode = WS_ERROR_CLOSE_CODES[code] ?? CloseCode.protocolError;
      const protocolError = new ProtocolError(
        closeCode,
        `the controller sent a frame this agent refuses: ${error.message}`,
        { cause: error },
      );
      this.#logger.error("protocol error; closing the session", { error: protocolError, closeCode });
      this.#closeInfo = { code: closeCode, reason: error.message, error: protocolError };
      return;
    }
    this.#logger.warn("connection error", { error });
  }

  /** Feeds queued messages to the socket while its buffer is below the high-water mark. */
  #pump(): void {
    if (!this.isOpen || this.#closeInfo !== undefined || this.#held) return;
    if (this.#cursor <= this.#outbox.acked) this.#ackClockSince = Date.now();
    while (this.#socket.bufferedAmount < SOCKET_HIGH_WATER_BYTES) {
      let next: ReturnType<Outbox["after"]>;
      try {
        next = this.#outbox.after(this.#cursor);
      } catch (error) {
        // A spilled message cannot be read back: the stream cannot go on without a gap.
        this.fail(CloseCode.internalError, error as AgentError);
        return;
      }
      if (next === undefined) return;
      this.#cursor = next.seq;
      this.#socket.send(next.payload, { binary: next.binary }, (error) => {
        if (error === undefined || error === null) this.#pump();
      });
    }
  }

  #receive(data: Buffer, isBinary: boolean): void {
    if (this.#closeInfo !== undefined) return; // closing: what the peer still sends is not acted on
    let message: ControllerInput;
    try {
      if (isBinary) {
        // The controller's only binary frames are `workspace` frames, answers to `workspace-pull`.
        const frame = decodeControllerFrame(data);
        message = { type: "workspace-data", offset: frame.offset, data: frame.data };
      } else message = decodeControllerMessage(data.toString("utf8"));
      if (message.type === "ack") this.#onAck(message.seq);
    } catch (error) {
      this.protocolError(error as ProtocolError);
      return;
    }
    this.#handler(message, this);
  }

  #onAck(seq: number): void {
    const before = this.#outbox.acked;
    if (seq > this.#cursor || !this.#outbox.ack(seq)) {
      throw new ProtocolError(
        CloseCode.outOfOrder,
        `the controller acknowledged seq ${seq}, but only ${this.#cursor} were sent`,
      );
    }
    if (seq > before) this.#ackClockSince = Date.now();
  }

  #startHeartbeat(): void {
    const { heartbeatIntervalMs, heartbeatTimeoutMs } = this.#options;
    this.#heartbeat = setInterval(
      () => {
        if (this.#closeInfo !== undefined) return; // already closing, for a reason recorded first
        const now = Date.now();
        if (this.#acksStalled(now)) return;
        if (this.#awaitingPongSince !== undefined) {
          if (now - this.#awaitingPongSince >= heartbeatTimeoutMs) {
            this.#logger.error("no pong from the controller; dropping the connection", {
              timeoutMs: heartbeatTimeoutMs,
            });
            this.#closeInfo = {
              code: CloseCode.heartbeatTimeout,
              reason: `no pong within ${heartbeatTimeoutMs} ms`,
            };
            this.#socket.terminate();
          }
          return;
        }
        this.#awaitingPongSince = now;
        this.#socket.ping();
      },
      Math.min(heartbeatIntervalMs, heartbeatTimeoutMs),
    );
    this.#heartbeat.unref();
  }

  /** Closes the session when sent messages have waited `ackTimeoutMs` without any ack progress. */
  #acksStalled(now: number): boolean {
    const waiting = this.#cursor > this.#outbox.acked;
    if (!waiting || now - this.#ackClockSince < this.#options.ackTimeoutMs) return false;
    const reason = `no acknowledgement for ${this.#options.ackTimeoutMs} ms with ${this.#cursor - this.#outbox.acked} messages outstanding`;
    this.#logger.error("the controller stopped acknowledging; closing the session", {
      outstanding: this.#cursor - this.#outbox.acked,
    });
    this.#closeWith({ code: CloseCode.ackTimeout, reason });
    return true;
  }
}

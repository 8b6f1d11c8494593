import WebSocket from "ws";
import { ProtocolError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { CloseCode } from "../protocol/close-codes.ts";
import { closeReason, decodeControllerMessage, encodeMessage } from "../protocol/codec.ts";
import { encodeOutputFrame, type OutputStream } from "../protocol/frames.ts";
import type { ControllerMessage, Hello, JobEnd, StepEnd, StepStart } from "../protocol/messages.ts";
import type { Outbox } from "./outbox.ts";

export interface SessionOptions {
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  /** Sent messages unacknowledged this long, with no ack progress at all, end the session (a stuck controller). */
  ackTimeoutMs: number;
}

export interface SessionClose {
  code: number;
  reason: string;
  /** Set when this side closed because the peer broke the protocol. */
  error?: ProtocolError;
}

type Sequenced = Omit<StepStart, "seq"> | Omit<StepEnd, "seq"> | Omit<JobEnd, "seq">;

/** Bytes handed to the socket but not yet written out, above which the session stops feeding it. */
const SOCKET_HIGH_WATER_BYTES = 1_048_576;

/**
 * The agent's side of one WebSocket connection. Job messages go into the job's {@link Outbox}
 * (numbered, kept until acknowledged) and are fed to the socket only while its buffer is low,
 * so a slow or stalled controller costs bounded memory. Watches the heartbeat and the flow of
 * acks, and turns anything malformed from the controller into a protocol close. After a
 * reconnect, a new session over the same outbox resends what the controller lacks.
 */
export class AgentSession {
  readonly #socket: WebSocket;
  readonly #outbox: Outbox;
  readonly #logger: Logger;
  readonly #options: SessionOptions;
  /** The last seq handed to this socket. */
  #cursor: number;
  #heartbeat: NodeJS.Timeout | undefined;
  #awaitingPongSince: number | undefined;
  /** Since when sent messages have waited without any ack progress. */
  #ackClockSince = Date.now();
  #closeInfo: SessionClose | undefined;
  readonly closed: Promise<SessionClose>;
  onMessage: (message: ControllerMessage) => void = () => {};

  constructor(socket: WebSocket, outbox: Outbox, logger: Logger, options: SessionOptions) {
    this.#socket = socket;
    this.#outbox = outbox;
    this.#cursor = outbox.acked;
    this.#logger = logger;
    this.#options = options;
    this.closed = new Promise((resolve) => {
      socket.once("close", (code, reason) => {
        clearInterval(this.#heartbeat);
        const info = this.#closeInfo ?? { code, reason: reason.toString("utf8") };
        this.#closeInfo = info;
        resolve(info);
      });
    });
    socket.on("error", (error) => this.#logger.warn("connection error", { error }));
    socket.on("message", (data, isBinary) => this.#receive(data as Buffer, isBinary));
    socket.on("pong", () => {
      this.#awaitingPongSince = undefined;
    });
    this.#startHeartbeat();
  }

  get isOpen(): boolean {
    return this.#socket.readyState === WebSocket.OPEN;
  }

  sendHello(hello: Hello): void {
    this.#socket.send(encodeMessage(hello));
  }

  /** Queues a job message with the next seq and sends it when the socket has room; returns the seq. */
  send(message: Sequenced): number {
    const seq = this.#outbox.nextSeq();
    this.#outbox.push(
      seq,
      Buffer.from(encodeMessage({ ...message, seq } as StepStart | StepEnd | JobEnd)),
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

  /** After a reconnect: the controller has everything up to `seq`; send the rest. */
  resumeFrom(seq: number): void {
    if (!this.#outbox.ack(seq)) {
      this.protocolError(
        new ProtocolError(
          CloseCode.outOfOrder,
          `the controller resumed at seq ${seq}, but only ${this.#outbox.seq} were sent`,
        ),
      );
      return;
    }
    this.#cursor = seq;
    this.#ackClockSince = Date.now();
    this.#pump();
  }

  /** Closes the connection; resolves when closed (terminates the socket if the close handshake stalls). */
  async close(code: number, reason: string, timeoutMs = 2_000): Promise<SessionClose> {
    if (this.#socket.readyState === WebSocket.OPEN || this.#socket.readyState === WebSocket.CONNECTING) {
      this.#socket.close(code, closeReason(reason));
    }
    const timer = setTimeout(() => this.#socket.terminate(), timeoutMs);
    timer.unref();
    const info = await this.closed;
    clearTimeout(timer);
    return info;
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

  /** Records why this side closes, closes, and drops the TCP connection if the handshake stalls. */
  #closeWith(info: SessionClose): void {
    this.#closeInfo = info;
    this.#socket.close(info.code, closeReason(info.reason));
    setTimeout(() => this.#socket.terminate(), 2_000).unref();
  }

  /** Feeds queued messages to the socket while its buffer is below the high-water mark. */
  #pump(): void {
    if (!this.isOpen) return;
    if (this.#cursor <= this.#outbox.acked) this.#ackClockSince = Date.now();
    while (this.#socket.bufferedAmount < SOCKET_HIGH_WATER_BYTES) {
      const next = this.#outbox.after(this.#cursor);
      if (next === undefined) return;
      this.#cursor = next.seq;
      this.#socket.send(next.payload, { binary: next.binary }, (error) => {
        if (error === undefined || error === null) this.#pump();
      });
    }
  }

  #receive(data: Buffer, isBinary: boolean): void {
    let message: ControllerMessage;
    try {
      if (isBinary)
        throw new ProtocolError(
          CloseCode.malformed,
          "the controller sent a binary frame; it only sends text",
        );
      message = decodeControllerMessage(data.toString("utf8"));
      if (message.type === "ack") this.#onAck(message.seq);
    } catch (error) {
      this.protocolError(error as ProtocolError);
      return;
    }
    this.onMessage(message);
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

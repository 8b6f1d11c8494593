import WebSocket from "ws";
import { ProtocolError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { CloseCode } from "../protocol/close-codes.ts";
import { closeReason, decodeControllerMessage, encodeMessage } from "../protocol/codec.ts";
import { encodeOutputFrame, type OutputStream } from "../protocol/frames.ts";
import type { ControllerMessage, Hello, JobEnd, StepEnd, StepStart } from "../protocol/messages.ts";

export interface SessionOptions {
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  /** Unacknowledged bytes above which `hasRoom` turns false. */
  maxUnackedBytes: number;
  /** Output unacknowledged this long, with no ack progress at all, ends the session (a stuck controller). */
  ackTimeoutMs: number;
}

export interface SessionClose {
  code: number;
  reason: string;
  /** Set when this side closed because the peer broke the protocol. */
  error?: ProtocolError;
}

type Sequenced = Omit<StepStart, "seq"> | Omit<StepEnd, "seq"> | Omit<JobEnd, "seq">;

/**
 * The agent's side of one WebSocket session: numbers every job message (`seq`), keeps what is
 * not yet acknowledged, watches the heartbeat, and turns anything malformed from the controller
 * into a protocol close. It knows nothing about processes.
 */
export class AgentSession {
  readonly #socket: WebSocket;
  readonly #logger: Logger;
  readonly #options: SessionOptions;
  #seq = 0;
  #acked = 0;
  /** Sent but not acknowledged: seq and size, oldest first. */
  readonly #unacked: { seq: number; bytes: number }[] = [];
  #unackedBytes = 0;
  readonly #ackWaiters: { seq: number; resolve: (ok: boolean) => void }[] = [];
  readonly #drainWaiters: (() => void)[] = [];
  #heartbeat: NodeJS.Timeout | undefined;
  /** When the oldest unacknowledged message was sent, or the last ack progress came (whichever is later). */
  #ackClockSince = Date.now();
  #awaitingPongSince: number | undefined;
  #closeInfo: SessionClose | undefined;
  readonly closed: Promise<SessionClose>;
  onMessage: (message: ControllerMessage) => void = () => {};

  constructor(socket: WebSocket, logger: Logger, options: SessionOptions) {
    this.#socket = socket;
    this.#logger = logger;
    this.#options = options;
    this.closed = new Promise((resolve) => {
      socket.once("close", (code, reason) => {
        this.#stopHeartbeat();
        const info = this.#closeInfo ?? { code, reason: reason.toString("utf8") };
        this.#closeInfo = info;
        for (const waiter of this.#ackWaiters.splice(0)) waiter.resolve(false);
        for (const waiter of this.#drainWaiters.splice(0)) waiter();
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

  /** Highest seq the controller has acknowledged. */
  get acked(): number {
    return this.#acked;
  }

  get unackedBytes(): number {
    return this.#unackedBytes;
  }

  /** False when the unacknowledged window is full: the producer should pause until {@link waitForRoom}. */
  get hasRoom(): boolean {
    return this.#unackedBytes < this.#options.maxUnackedBytes;
  }

  /** Resolves when the window has drained to half, or the session closed. */
  waitForRoom(): Promise<void> {
    if (this.#unackedBytes <= this.#options.maxUnackedBytes / 2 || !this.isOpen) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  sendHello(hello: Hello): void {
    this.#socket.send(encodeMessage(hello));
  }

  /** Sends a job message with the next seq; returns that seq. */
  send(message: Sequenced): number {
    const seq = ++this.#seq;
    const text = encodeMessage({ ...message, seq } as StepStart | StepEnd | JobEnd);
    this.#track(seq, Buffer.byteLength(text));
    this.#socket.send(text);
    return seq;
  }

  sendOutput(stepId: string, stream: OutputStream, offset: number, data: Buffer): number {
    const seq = ++this.#seq;
    const frame = encodeOutputFrame({ seq, stepId, stream, offset, data });
    this.#track(seq, frame.length);
    this.#socket.send(frame);
    return seq;
  }

  /** Resolves true once `seq` is acknowledged, false on timeout or close. */
  waitForAck(seq: number, timeoutMs: number): Promise<boolean> {
    if (this.#acked >= seq) return Promise.resolve(true);
    if (!this.isOpen) return Promise.resolve(false);
    return new Promise((resolve) => {
      const waiter = {
        seq,
        resolve: (ok: boolean) => {
          clearTimeout(timer);
          resolve(ok);
        },
      };
      const timer = setTimeout(() => {
        this.#ackWaiters.splice(this.#ackWaiters.indexOf(waiter), 1);
        resolve(false);
      }, timeoutMs);
      timer.unref();
      this.#ackWaiters.push(waiter);
    });
  }

  /** Closes the session; resolves when closed (terminates the socket if the close handshake stalls). */
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

  #track(seq: number, bytes: number): void {
    if (this.#unacked.length === 0) this.#ackClockSince = Date.now();
    this.#unacked.push({ seq, bytes });
    this.#unackedBytes += bytes;
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

  /** Closes the session because the controller broke the protocol; logs the diagnostic. */
  protocolError(error: ProtocolError): void {
    if (this.#closeInfo !== undefined) return;
    this.#logger.error("protocol error; closing the session", { error, closeCode: error.closeCode });
    this.#closeInfo = { code: error.closeCode, reason: error.message, error };
    this.#socket.close(error.closeCode, closeReason(error.message));
    setTimeout(() => this.#socket.terminate(), 2_000).unref();
  }

  #onAck(seq: number): void {
    if (seq > this.#seq) {
      throw new ProtocolError(
        CloseCode.outOfOrder,
        `the controller acknowledged seq ${seq}, but only ${this.#seq} were sent`,
      );
    }
    if (seq <= this.#acked) return;
    this.#acked = seq;
    this.#ackClockSince = Date.now();
    while (this.#unacked.length > 0 && this.#unacked[0]!.seq <= seq) {
      this.#unackedBytes -= this.#unacked.shift()!.bytes;
    }
    for (let i = this.#ackWaiters.length - 1; i >= 0; i--) {
      const waiter = this.#ackWaiters[i]!;
      if (waiter.seq <= seq) {
        this.#ackWaiters.splice(i, 1);
        waiter.resolve(true);
      }
    }
    if (this.#unackedBytes <= this.#options.maxUnackedBytes / 2) {
      for (const waiter of this.#drainWaiters.splice(0)) waiter();
    }
  }

  #startHeartbeat(): void {
    const { heartbeatIntervalMs, heartbeatTimeoutMs } = this.#options;
    this.#heartbeat = setInterval(
      () => {
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
    if (this.#unacked.length === 0 || now - this.#ackClockSince < this.#options.ackTimeoutMs) return false;
    const reason = `no acknowledgement for ${this.#options.ackTimeoutMs} ms with ${this.#unackedBytes} bytes outstanding`;
    this.#logger.error("the controller stopped acknowledging; closing the session", {
      unackedBytes: this.#unackedBytes,
    });
    this.#closeInfo = { code: CloseCode.ackTimeout, reason };
    this.#socket.close(CloseCode.ackTimeout, closeReason(reason));
    setTimeout(() => this.#socket.terminate(), 2_000).unref();
    return true;
  }

  #stopHeartbeat(): void {
    clearInterval(this.#heartbeat);
  }
}

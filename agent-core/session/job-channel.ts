import { randomBytes } from "node:crypto";
import type WebSocket from "ws";
import { clip } from "../clip.ts";
import type { AgentConfig } from "../config/config.ts";
import { AgentError, type AgentIoError, ControllerRefusedError, type ProtocolError } from "../errors.ts";
import type { ArtifactChannel } from "../job/transfers.ts";
import type { Logger } from "../logger.ts";
import { CloseCode, isResumableClose } from "../protocol/close-codes.ts";
import type { OutputStream } from "../protocol/frames.ts";
import type { ArtifactsEnd, Hello, Job, JobEnd, StepEnd, StepReason } from "../protocol/messages.ts";
import { WorkspaceDownload } from "../workspace/download.ts";
import {
  type ChannelEffect,
  type ChannelState,
  ChannelStateMachine,
  type ControllerInput,
} from "./channel-state.ts";
import { connectToController } from "./connect.ts";
import { FlowControl } from "./flow-control.ts";
import { Outbox } from "./outbox.ts";
import { INTERRUPT_REPORT_MS, signalExitMs } from "./report-window.ts";
import { AgentSession, type SessionClose } from "./session.ts";

/** What the wait for the first job came to. */
export type FirstJob =
  | { kind: "job"; job: Job }
  | { kind: "closed"; info: SessionClose }
  | { kind: "idle" }
  | { kind: "aborted" };

/** How reporting the job's end went: acknowledged, or not (with why). */
export type JobReport = { acked: true; reconnects: number } | { acked: false; error: AgentError };

/** A step's end as reported (the channel adds the envelope, `seq`, `jobId` and `stepId`). */
export type StepEndFields = Omit<StepEnd, "v" | "type" | "seq" | "jobId" | "stepId" | "signal"> & {
  signal: string | null;
};

/** The job's end as reported (the channel adds the envelope, `seq` and `jobId`). */
export type JobEndFields = Omit<JobEnd, "v" | "type" | "seq" | "jobId">;

export { INTERRUPT_REPORT_MS, signalExitMs };

export interface JobChannelOptions {
  /** Aborting while connecting ends the connect phase at once (SIGTERM before a job). */
  signal?: AbortSignal | undefined;
  /** Epoch ms by which every wait of the channel is over (connecting, resuming, the job-end ack); null: none. */
  returnBy?: number | null;
}

/**
 * The agent's conversation with its controller for one job. It owns the current connection, the
 * job's {@link Outbox} and its {@link FlowControl}, and one message handler: every frame of every
 * connection goes to the {@link ChannelStateMachine}, whose state alone decides what it does, so
 * frames that arrive together (in one read) each meet the state the previous one left. The
 * channel carries out what the machine says: takes the job, stops it on `cancel`, resumes the
 * session after a drop (reconnect, resuming hello, `resume`), and reports the job's end.
 *
 * @example
 * const channel = await JobChannel.open(config, logger, { signal });
 * channel.sendHello(hello);
 * const first = await channel.waitForJob(config.idleTimeoutMs, signal);
 * // run the job with channel.jobSignal, channel.flow and channel as the event target, then:
 * const report = await channel.endJob({ status: "succeeded", reason: "exit", durationMs });
 * channel.dispose();
 */
export class JobChannel {
  readonly #config: AgentConfig;
  readonly #logger: Logger;
  readonly #options: JobChannelOptions;
  readonly #outbox: Outbox;
  readonly flow: FlowControl;
  readonly #machine = new ChannelStateMachine();
  readonly #jobAbort = new AbortController();
  /** Aborted when the channel gives up: ends a reconnect in flight and the pause between two. */
  readonly #stopResuming = new AbortController();
  /** Aborted when an interrupted agent's time to report is over (INTERRUPT_REPORT_MS after grace and drain). */
  readonly #reportWindow = new AbortController();
  #reportTimer: NodeJS.Timeout | undefined;
  /** The latest connection (possibly closed, or a reconnect not resumed yet). */
  #session!: AgentSession;
  /** The job's seed, while it is pulled (kept to the job's end: late duplicate frames are dropped by it). */
  #download: WorkspaceDownload | undefined;
  /** The first hello, said again (with `resume`) on every reconnect. */
  #hello: Hello | undefined;
  #reconnects = 0;
  #ioError: AgentIoError | undefined;
  /** Set when the job's session is gone for good: why. */
  #lost: AgentError | undefined;
  /** Woken on every state change. */
  readonly #listeners = new Set<() => void>();

  private constructor(config: AgentConfig, logger: Logger, options: JobChannelOptions) {
    this.#config = config;
    this.#logger = logger;
    this.#options = options;
    this.#outbox = new Outbox({
      maxMemoryBytes: config.maxUnackedBytes,
      maxSpoolBytes: config.maxSpoolBytes,
      spoolDir: config.workDir,
      spoolName: `spool-${config.name.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64)}-${randomBytes(4).toString("hex")}`,
      onSpoolError: (error) => this.#onSpoolError(error),
    });
    this.flow = new FlowControl(this.#outbox);
    const signal = options.signal;
    if (signal !== undefined) {
      const onInterrupt = () => {
        // Not unref'd: the process stays up until the window ends the waits it bounds.
        this.#reportTimer = setTimeout(() => {
          this.#reportWindow.abort();
          this.#changed();
        }, signalExitMs(config) - 1_000);
      };
      if (signal.aborted) onInterrupt();
      else signal.addEventListener("abort", onInterrupt, { once: true });
    }
  }

  /**
   * Connects to the controller and returns the channel in `awaiting-job`.
   *
   * @throws what `connectToController` throws (refused, unreachable, interrupted).
   */
  static async open(
    config: AgentConfig,
    logger: Logger,
    options: JobChannelOptions = {},
  ): Promise<JobChannel> {
    const channel = new JobChannel(config, logger, options);
    await connectToController(config, logger, {
      signal: options.signal,
      timeoutMs: channel.#boundedBy(config.connectTimeoutMs),
      notAfter: options.returnBy ?? null,
      adopt: (socket) => channel.#adopt(socket),
    });
    return channel;
  }

  get state(): ChannelState {
    return this.#machine.state;
  }

  /** Aborted (with a StepReason) when the job must stop: `cancelled`, `error` (controller lost), `disk`... */
  get jobSignal(): AbortSignal {
    return this.#jobAbort.signal;
  }

  /** Set when the agent's own files failed (the spool): the job was stopped for it. */
  get ioError(): AgentIoError | undefined {
    return this.#ioError;
  }

  /** Bytes the output spool takes on the work dir's filesystem (the agent's, not the job's). */
  get spoolDiskBytes(): number {
    return this.#outbox.spoolDiskBytes;
  }

  /** Sends `hello` (kept, to be said again with `resume` after a drop). */
  sendHello(hello: Hello): void {
    this.#hello = hello;
    this.#session.sendHello(hello);
  }

  /**
   * Resolves with the job (at once when it already arrived), the close of the session, `idle`
   * after `timeoutMs`, or `aborted` when `signal` is.
   */
  async waitForJob(timeoutMs: number, signal?: AbortSignal): Promise<FirstJob> {
    const settled = () => this.#machine.job !== undefined || this.state === "closed";
    const why = await this.#until(settled, timeoutMs, signal);
    const job = this.#machine.job;
    if (job !== undefined) return { kind: "job", job };
    if (this.state === "closed") return { kind: "closed", info: await this.#session.closed };
    return why === "aborted" ? { kind: "aborted" } : { kind: "idle" };
  }

  /** Stops the job (SIGTERM: `interrupted`); the first reason wins. */
  stopJob(reason: StepReason): void {
    if (!this.#jobAbort.signal.aborted) this.#jobAbort.abort(reason);
  }

  // The job's events (the controller's side of the output tee). Nothing is queued once the
  // session is lost for good: it could never be delivered.

  stepStart(stepId: string, startedAt: number): void {
    if (this.#lost === undefined)
      this.#session.send({ v: 1, type: "step-start", jobId: this.#jobId(), stepId, startedAt });
  }

  output(stepId: string, stream: OutputStream, offset: number, data: Buffer): void {
    if (this.#lost === undefined) this.#session.sendOutput(stepId, stream, offset, data);
  }

  stepEnd(stepId: string, end: StepEndFields): void {
    if (this.#lost !== undefined) return;
    this.#session.send({
      v: 1,
      type: "step-end",
      jobId: this.#jobId(),
      stepId,
      exitCode: end.exitCode,
      signal: end.signal,
      durationMs: end.durationMs,
      reason: end.reason,
      stdoutBytes: end.stdoutBytes,
      stderrBytes: end.stderrBytes,
      peakRssBytes: end.peakRssBytes,
      ...(end.message !== undefined ? { message: end.message.slice(0, 4000) } : {}),
    });
  }

  /**
   * Starts pulling the job's seed (`job.workspace`) window by window: the download yields its
   * bytes in order, asks again after a resume, and is fed the controller's `workspace` frames.
   */
  downloadWorkspace(spec: NonNullable<Job["workspace"]>, windowBytes: number): WorkspaceDownload {
    const jobId = this.#jobId();
    const download = new WorkspaceDownload({
      bytes: spec.bytes,
      windowBytes,
      pull: (offset, length) => {
        if (this.#lost === undefined)
          this.#session.sendPull({ v: 1, type: "workspace-pull", jobId, offset, length });
      },
    });
    this.#download = download;
    download.start();
    return download;
  }

  /** Where the job's artifacts go: sequenced `artifact` frames and `artifacts-end`, under the job's flow control. */
  get artifacts(): ArtifactChannel {
    return {
      data: (offset, data) => {
        if (this.#lost === undefined) this.#session.sendArtifact(offset, data);
      },
      hasRoom: () => this.flow.hasRoom(),
      waitForRoom: () => this.flow.waitForRoom(),
      end: (fields: Omit<ArtifactsEnd, "v" | "type" | "seq" | "jobId">) => {
        if (this.#lost === undefined) {
          this.#session.send({ v: 1, type: "artifacts-end", jobId: this.#jobId(), ...fields });
        }
      },
    };
  }

  /**
   * Sends `job-end` and waits for the ack that covers it: through a resume if the connection
   * drops meanwhile, for `ackTimeoutMs` while it waits on a live connection, and never past
   * `returnBy`. Closes the session (1000 `job done` when acknowledged, 4006 otherwise).
   */
  async endJob(end: JobEndFields): Promise<JobReport> {
    if (this.#lost !== undefined) return { acked: false, error: this.#lost };
    const seq = this.#session.send({
      v: 1,
      type: "job-end",
      jobId: this.#jobId(),
      ...end,
      ...(end.message !== undefined ? { message: end.message.slice(0, 4000) } : {}),
    });
    this.#apply(this.#machine.jobEndQueued(seq, this.#outbox.acked), this.#session);
    const { ackTimeoutMs, reconnectTimeoutMs } = this.#config;
    // The ack clock runs while job-end waits on a live connection; a resume restarts it. The
    // whole wait, resumes included, is bounded too.
    const hardStopAt = Date.now() + this.#boundedBy(ackTimeoutMs + reconnectTimeoutMs);
    while (this.state === "awaiting-ack" || this.state === "resuming") {
      const waitMs = this.state === "awaiting-ack" ? ackTimeoutMs : reconnectTimeoutMs;
      const left = Math.min(this.#boundedBy(waitMs), hardStopAt - Date.now());
      const from = this.state;
      const why = await this.#until(() => this.state !== from, Math.max(0, left), this.#reportWindow.signal);
      if (why === "timeout" || why === "aborted") break;
    }
    if (this.state === "closed" && this.#lost === undefined) {
      await this.#session.close(CloseCode.normal, "job done");
      return { acked: true, reconnects: this.#reconnects };
    }
    if (this.#lost !== undefined) return { acked: false, error: this.#lost };
    const error = this.#reportWindow.signal.aborted
      ? new AgentError(
          "AGENT_ERR_CONNECTION_LOST",
          `interrupted, and the end of job ${this.#jobId()} could not be reported within ${INTERRUPT_REPORT_MS} ms (${this.state === "resuming" ? "the session was not resumed" : "no acknowledgement"})`,
        )
      : this.state === "awaiting-ack"
        ? new AgentError(
            "AGENT_ERR_ACK_TIMEOUT",
            `the controller did not acknowledge the end of job ${this.#jobId()} within ${ackTimeoutMs} ms`,
          )
        : new AgentError(
            "AGENT_ERR_CONNECTION_LOST",
            `the session of job ${this.#jobId()} could not be resumed in time to report its end`,
          );
    this.#giveUp(error);
    await this.#session.close(CloseCode.ackTimeout, error.message);
    return { acked: false, error };
  }

  /** Closes the conversation (before a job: idle, deadline, interrupted). */
  async close(code: number, reason: string): Promise<SessionClose> {
    this.#machine.close();
    this.#changed();
    return this.#session.close(code, reason);
  }

  /** Releases what the channel holds (spool files, waiters, the connection). Call once the run is over. */
  dispose(): void {
    clearTimeout(this.#reportTimer);
    this.#stopResuming.abort();
    this.flow.release();
    this.#outbox.close();
    if (this.state !== "closed") {
      this.#machine.close();
      this.#changed();
      this.#session.terminate();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Connections

  /** Takes over a newly opened socket (synchronously, in its `open` event) as the current session. */
  #adopt(socket: WebSocket): AgentSession {
    // A resuming connection sends nothing of the job until the controller said where to resume.
    const session = new AgentSession(
      socket,
      this.#outbox,
      this.#logger,
      { ...this.#config, held: this.state === "resuming" },
      (message, from) => this.#onMessage(message, from),
    );
    this.#session = session;
    void session.closed.then((info) => this.#onSessionClosed(session, info));
    return session;
  }

  /** The one message handler, for every connection: the state machine decides, the channel acts. */
  #onMessage(message: ControllerInput, session: AgentSession): void {
    if (session !== this.#session) return; // a connection already replaced
    this.#apply(this.#machine.receive(message), session);
  }

  #apply(effects: ChannelEffect[], session: AgentSession): void {
    for (const effect of effects) {
      switch (effect.type) {
        case "take-job":
          this.#logger.info("job received", { job: effect.job.id, steps: effect.job.steps.length });
          break;
        case "cancel-job":
          this.#logger.info("job cancelled by the controller", { reason: effect.reason });
          this.stopJob("cancelled");
          break;
        case "flow":
          this.flow.update();
          break;
        case "resume-from":
          if (!session.resumeFrom(effect.seq)) return; // a seq beyond what was sent: closed with 4003
          this.#reconnects++;
          this.#logger.info("session resumed", {
            resumedAtSeq: effect.seq,
            resending: this.#outbox.seq - effect.seq,
            ...(effect.ended ? { jobEnded: true } : {}),
          });
          this.flow.update();
          // The seed's bytes lost with the old connection are asked for again.
          this.#download?.resumed();
          break;
        case "workspace-data":
          try {
            this.#download?.receive(effect.offset, effect.data);
          } catch (error) {
            session.protocolError(error as ProtocolError);
            return;
          }
          break;
        case "job-end-acked":
          break;
        case "refuse":
          session.protocolError(effect.error);
          break;
        case "none":
          this.#logger.debug("message without effect", { why: effect.why });
          break;
      }
    }
    this.#changed();
  }

  #onSessionClosed(session: AgentSession, info: SessionClose): void {
    if (session !== this.#session) return;
    const resumable = info.error === undefined && isResumableClose(info.code);
    const action = this.#machine.connectionLost(resumable);
    this.#changed();
    if (action === "resume") {
      this.#logger.warn("connection to the controller lost during the job; resuming", {
        code: info.code,
        reason: info.reason,
      });
      void this.#resume();
    } else if (action === "give-up") {
      this.#giveUp(
        info.error ??
          new AgentError(
            "AGENT_ERR_CONNECTION_LOST",
            `connection to the controller lost during job ${this.#jobId()} (code ${info.code}${info.reason ? `: ${info.reason}` : ""})`,
          ),
      );
    }
  }

  /**
   * Reconnects with `X-Agent-Resume` and a resuming hello until the controller answers `resume`,
   * with backoff, for at most `reconnectTimeoutMs` (and never past `returnBy`). A refusal (4007,
   * an HTTP refusal, a protocol error) ends the attempts at once; the job is then given up.
   */
  async #resume(): Promise<void> {
    const config = this.#config;
    const jobId = this.#jobId();
    const giveUpAt = Date.now() + this.#boundedBy(config.reconnectTimeoutMs);
    // Given up, or interrupted and out of time to report: the attempt in flight ends too.
    const stop = AbortSignal.any([this.#stopResuming.signal, this.#reportWindow.signal]);
    let pauseMs = 250;
    // What the last attempt that reached the controller came to, for the message if none succeeds
    // (the last connect may only say that the time ran out).
    let lastFailure: string | undefined;
    const after = () => (lastFailure === undefined ? "" : ` (before that, ${lastFailure})`);
    for (let attempt = 1; Date.now() < giveUpAt && !stop.aborted; attempt++) {
      if (attempt > 1) {
        await delay(Math.min(pauseMs, Math.max(0, giveUpAt - Date.now())), stop);
        pauseMs = Math.min(pauseMs * 2, 5_000);
        if (stop.aborted) return;
      }
      let session: AgentSession;
      try {
        session = await connectToController(config, this.#logger, {
          signal: stop,
          resumeJobId: jobId,
          timeoutMs: Math.max(1, giveUpAt - Date.now()),
          notAfter: giveUpAt,
          adopt: (socket) => this.#adopt(socket),
        });
      } catch (error) {
        if (stop.aborted) return;
        const refused = error instanceof ControllerRefusedError;
        return this.#giveUp(
          new AgentError(
            "AGENT_ERR_CONNECTION_LOST",
            `${refused ? "the controller refused to resume" : "could not reconnect to the controller"} during job ${jobId}: ${(error as Error).message}${refused ? "" : after()}`,
            { cause: error },
          ),
        );
      }
      session.sendHello({ ...this.#hello!, resume: { jobId } });
      const why = await this.#until(
        () => this.state !== "resuming",
        config.handshakeTimeoutMs,
        undefined,
        session.closed,
      );
      if (why === "done") return;
      const info = await session.close(CloseCode.normal, "resume failed");
      lastFailure =
        why === "timeout"
          ? `the controller did not answer the resuming hello within ${config.handshakeTimeoutMs} ms`
          : `the controller closed the resumed session (code ${info.code}${info.reason ? `: ${clip(info.reason)}` : ""})`;
      if (info.code === CloseCode.resumeRefused || info.error !== undefined) {
        return this.#giveUp(
          info.error ??
            new AgentError(
              "AGENT_ERR_CONNECTION_LOST",
              `the controller refused to resume job ${jobId} (code ${info.code}: ${info.reason})`,
            ),
        );
      }
    }
    if (!stop.aborted) {
      this.#giveUp(
        new AgentError(
          "AGENT_ERR_CONNECTION_LOST",
          `the controller did not come back within ${config.reconnectTimeoutMs} ms${after()}`,
        ),
      );
    }
  }

  // -------------------------------------------------------------------------------------------
  // Failures

  /** The job's session is gone for good: stop the job, never block its output again. */
  #giveUp(error: AgentError): void {
    if (this.#lost !== undefined) return;
    this.#lost = error;
    this.#logger.error(`${error.message}; stopping the job`, { code: error.code });
    this.#stopResuming.abort();
    this.flow.release();
    this.#download?.fail(error);
    this.stopJob("error");
    this.#machine.close();
    this.#changed();
  }

  #onSpoolError(error: AgentIoError): void {
    this.#ioError = error;
    this.#logger.error("the output spool failed; stopping the job (its output so far is kept in memory)", {
      error,
    });
    this.flow.update();
    this.stopJob(error.diskFull ? "disk" : "error");
  }

  // -------------------------------------------------------------------------------------------
  // Waits

  #changed(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  /**
   * Resolves `done` once `predicate` holds (checked now and on every state change), `closed` when
   * `closed` settles first, `aborted` when `signal` is, or `timeout` after `timeoutMs`.
   */
  #until(
    predicate: () => boolean,
    timeoutMs: number,
    signal?: AbortSignal,
    closed?: Promise<unknown>,
  ): Promise<"done" | "closed" | "aborted" | "timeout"> {
    return new Promise((resolve) => {
      let settled = false;
      const finish = (why: "done" | "closed" | "aborted" | "timeout") => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#listeners.delete(listener);
        signal?.removeEventListener("abort", onAbort);
        resolve(why);
      };
      const listener = () => {
        if (predicate()) finish("done");
      };
      const onAbort = () => finish("aborted");
      const timer = setTimeout(() => finish("timeout"), timeoutMs);
      this.#listeners.add(listener);
      signal?.addEventListener("abort", onAbort, { once: true });
      void closed?.then(() => finish(predicate() ? "done" : "closed"));
      listener();
      if (signal?.aborted) onAbort();
    });
  }

  /** `ms`, cut short so that it ends by `returnBy`. */
  #boundedBy(ms: number): number {
    const returnBy = this.#options.returnBy;
    if (returnBy === null || returnBy === undefined) return ms;
    return Math.max(0, Math.min(ms, returnBy - Date.now()));
  }

  #jobId(): string {
    return this.#machine.job!.id;
  }
}

/** Waits `ms`, or less when `signal` is aborted. */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    if (signal.aborted) done();
  });
}

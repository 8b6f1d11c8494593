import type {
  CloudWatchLogsClient,
  CloudWatchLogsClientConfig,
  RejectedLogEventsInfo,
} from "@aws-sdk/client-cloudwatch-logs";
import { ConfigError, type ConfigProblem } from "../../errors.ts";
import type { Logger } from "../../logger.ts";
import { awsProxyAgents } from "../../net/proxy.ts";
import { sdkExports } from "../../sdk-module.ts";
import { batchBytes, EVENT_OVERHEAD_BYTES, LogBatcher, type LogEvent, splitMessage } from "./batcher.ts";
import {
  DEFAULT_FLUSH_INTERVAL_MS,
  DEFAULT_MAX_PENDING_BYTES,
  logGroupProblem,
  logStreamProblem,
} from "./settings.ts";

/**
 * A sink that copies job output to one CloudWatch Logs stream.
 *
 * - `write` never blocks and never throws: events are batched in memory (see `batcher.ts`) and
 *   sent by one background loop, so at most one request per stream is in flight and the stream's
 *   order is the order of the writes.
 * - Memory is bounded by `maxPendingBytes`: a write that does not fit is dropped and counted
 *   (warned about once).
 * - A batch is sent when it is full or `flushIntervalMs` after the first event that is waiting.
 * - Throttling, `ServiceUnavailableException`, 5xx, timeouts and network errors are retried
 *   with exponential backoff and full jitter, at most `maxAttempts` times per batch; a batch
 *   that still fails is dropped and counted (warned about once). Access and credential errors
 *   turn the sink off (everything after is dropped and counted).
 * - A missing group or stream (`ResourceNotFoundException`) is created, and
 *   `ResourceAlreadyExistsException` is success.
 * - Events the service rejects (`rejectedLogEventsInfo`: too old, too new, expired) are
 *   counted and warned about once per kind.
 * - `flush` and `close` wait a bounded time. At `close`'s deadline the request in flight is
 *   aborted and whatever was not confirmed is counted as dropped.
 *
 * Warnings carry a stable `code` ({@link CloudWatchSinkWarningCode}).
 */

/** Codes of the warnings the sink logs (each at most once per sink, except the final summary). */
export const CloudWatchSinkWarning = {
  /** `maxPendingBytes` reached: writes are dropped until the backlog shrinks. */
  bufferFull: "AGENT_WARN_CLOUDWATCH_BUFFER_FULL",
  /** A batch could not be delivered (retries exhausted, or an error that retrying cannot fix). */
  sendFailed: "AGENT_WARN_CLOUDWATCH_SEND_FAILED",
  /** Access denied, bad credentials or no SDK: the sink stopped sending and drops everything. */
  disabled: "AGENT_WARN_CLOUDWATCH_DISABLED",
  /** The service rejected events as too old, too new or expired. */
  rejected: "AGENT_WARN_CLOUDWATCH_REJECTED",
  /** `write` after `close`. */
  writeAfterClose: "AGENT_WARN_CLOUDWATCH_WRITE_AFTER_CLOSE",
  /** A bug in the sink; it drops what it was handling. */
  internal: "AGENT_WARN_CLOUDWATCH_INTERNAL",
  /** `close` summary when anything was lost. */
  losses: "AGENT_WARN_CLOUDWATCH_LOSSES",
} as const;

/** One of the values of {@link CloudWatchSinkWarning}. */
export type CloudWatchSinkWarningCode = (typeof CloudWatchSinkWarning)[keyof typeof CloudWatchSinkWarning];

/** The calls the sink makes. {@link createCloudWatchSink} implements it with the AWS SDK. */
export interface CloudWatchLogsApi {
  putLogEvents(
    input: { logGroupName: string; logStreamName: string; logEvents: LogEvent[] },
    signal: AbortSignal,
  ): Promise<{ rejectedLogEventsInfo?: RejectedLogEventsInfo | undefined }>;
  createLogGroup(logGroupName: string, signal: AbortSignal): Promise<void>;
  createLogStream(logGroupName: string, logStreamName: string, signal: AbortSignal): Promise<void>;
  /** Releases sockets; called once by `close`. */
  destroy(): void;
}

/** Options of a {@link CloudWatchSink}. */
export interface CloudWatchSinkOptions {
  logGroupName: string;
  logStreamName: string;
  /** Agent diagnostics: warnings go here. */
  logger: Logger;
  /** A waiting event is sent at most this long after it was written. Default 1000. */
  flushIntervalMs?: number;
  /** Bytes held (pending and in flight, counted as the service counts them) before writes are dropped. Default 8 MiB. */
  maxPendingBytes?: number;
  /** Attempts per batch (first try included). Default 6. */
  maxAttempts?: number;
  /** Backoff before retry n is a random delay in [0, min(retryMaxMs, retryBaseMs * 2^(n-1))). Default 200. */
  retryBaseMs?: number;
  /** Default 5000. */
  retryMaxMs?: number;
  /** One request is aborted (and retried) after this long. Default 10000. */
  requestTimeoutMs?: number;
  /** Clock for events written without a timestamp. Default `Date.now`. */
  now?: () => number;
  /** Source of jitter in [0, 1). Default `Math.random`. */
  random?: () => number;
}

/** Options of {@link createCloudWatchSink}. */
export interface CreateCloudWatchSinkOptions extends CloudWatchSinkOptions {
  region: string;
  /**
   * Merged over the sink's client configuration (`region`, `maxAttempts: 1`, request timeouts).
   * Tests point the real client at a loopback server with `endpoint` and dummy `credentials`.
   */
  clientConfig?: CloudWatchLogsClientConfig;
}

/** What became of the events written to a sink. `writtenEvents = sentEvents + droppedEvents + rejected.*`. */
export interface CloudWatchSinkSummary {
  /** Events written, counted after splitting long messages (empty messages are not events). */
  writtenEvents: number;
  /** Events the service confirmed storing. */
  sentEvents: number;
  /** Events not confirmed stored: refused when the buffer was full or the sink closed or off, failed batches, and what was left at `close`'s deadline. */
  droppedEvents: number;
  /** Events the service refused one by one (`rejectedLogEventsInfo`). An event both too old and expired counts as too old. */
  rejected: { tooOld: number; tooNew: number; expired: number };
  /** Whether `close` hit its deadline before everything was settled. */
  timedOut: boolean;
}

type Outcome =
  | { kind: "sent"; rejected?: RejectedLogEventsInfo | undefined }
  | { kind: "failed"; error: unknown; attempts: number }
  | { kind: "disabled"; error: unknown }
  | { kind: "aborted" };

type ErrorClass = "missing" | "retry" | "fatal" | "drop" | "accepted";

const RETRYABLE = new Set([
  "ThrottlingException",
  "ServiceUnavailableException",
  "InternalFailure",
  "InternalServerError",
  "InternalServerException",
  "RequestTimeout",
  "RequestTimeoutException",
  "TooManyRequestsException",
  "InvalidSequenceTokenException",
  "ExpiredTokenException",
  "TimeoutError",
]);
const FATAL = new Set([
  "AccessDeniedException",
  "UnrecognizedClientException",
  "InvalidSignatureException",
  "IncompleteSignature",
  "MissingAuthenticationToken",
  "InvalidClientTokenId",
  "CredentialsProviderError",
  "SdkUnavailableError",
]);

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : "";
}

function classify(error: unknown): ErrorClass {
  const name = errorName(error);
  if (name === "ResourceNotFoundException") return "missing";
  if (name === "DataAlreadyAcceptedException") return "accepted";
  if (RETRYABLE.has(name)) return "retry";
  if (FATAL.has(name)) return "fatal";
  const status = (error as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
  if (status === undefined) return "retry"; // no HTTP answer: network error, reset, timeout
  return status >= 500 || status === 429 ? "retry" : "drop";
}

/** How long `close` waits, after its deadline, for the aborted sending loop to stop. */
const STOP_WAIT_MS = 1000;

/**
 * Resolves after `ms`, or at once when `signal` aborts. The timer does not keep the process
 * alive unless `ref` is set.
 */
function pause(ms: number, signal?: AbortSignal, ref = false): Promise<void> {
  if (signal?.aborted || ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    if (!ref) timer.unref();
    signal?.addEventListener("abort", done, { once: true });
  });
}

function optionProblems(options: CloudWatchSinkOptions & { region?: string }): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const integer = (name: keyof CloudWatchSinkOptions, value: unknown, min: number) => {
    if (value === undefined) return;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
      problems.push({
        field: name,
        message: `Expected the \`${name}\` option to be an integer >= ${min}, got \`${String(value)}\` (${typeof value})`,
      });
    }
  };
  const group = typeof options.logGroupName === "string" ? logGroupProblem(options.logGroupName) : "required";
  if (group !== undefined) problems.push({ field: "logGroupName", message: group });
  const stream =
    typeof options.logStreamName === "string" ? logStreamProblem(options.logStreamName) : "required";
  if (stream !== undefined) problems.push({ field: "logStreamName", message: stream });
  if ("region" in options && (typeof options.region !== "string" || options.region === "")) {
    problems.push({
      field: "region",
      message: `Expected a non-empty string, got \`${String(options.region)}\``,
    });
  }
  integer("flushIntervalMs", options.flushIntervalMs, 1);
  integer("maxPendingBytes", options.maxPendingBytes, 1);
  integer("maxAttempts", options.maxAttempts, 1);
  integer("retryBaseMs", options.retryBaseMs, 0);
  integer("retryMaxMs", options.retryMaxMs, 0);
  integer("requestTimeoutMs", options.requestTimeoutMs, 1);
  return problems;
}

/**
 * Copies lines to one CloudWatch Logs stream (see the module comment for the guarantees).
 * Build it with {@link createCloudWatchSink}; the constructor takes any {@link CloudWatchLogsApi}.
 *
 * @example
 * const sink = await createCloudWatchSink({ region, logGroupName, logStreamName, logger });
 * sink.write("hello");
 * const summary = await sink.close(5_000); // { sentEvents: 1, droppedEvents: 0, ... }
 */
export class CloudWatchSink {
  readonly logGroupName: string;
  readonly logStreamName: string;
  readonly #api: CloudWatchLogsApi;
  readonly #logger: Logger;
  readonly #batcher = new LogBatcher();
  readonly #flushIntervalMs: number;
  readonly #maxPendingBytes: number;
  readonly #maxAttempts: number;
  readonly #retryBaseMs: number;
  readonly #retryMaxMs: number;
  readonly #requestTimeoutMs: number;
  readonly #now: () => number;
  readonly #random: () => number;
  /** Aborted at `close`'s deadline: stops the request in flight and any backoff. */
  readonly #abort = new AbortController();
  readonly #warned = new Set<CloudWatchSinkWarningCode>();
  readonly #waiters = new Set<{ target: number; resolve: (settled: boolean) => void }>();
  #timer: NodeJS.Timeout | undefined;
  #pump: Promise<void> | undefined;
  /** Send what is pending now rather than at the next interval. */
  #due = false;
  #needsResources = false;
  #disabled = false;
  #closing: Promise<CloudWatchSinkSummary> | undefined;
  /** `close` hit its deadline: accounting is final. */
  #finalized = false;
  #inflight: LogEvent[] | undefined;
  #inflightBytes = 0;
  /** Events that entered the batcher, and events that left it and were settled (sent, rejected or dropped). */
  #queued = 0;
  #settled = 0;
  #written = 0;
  #sent = 0;
  #dropped = 0;
  readonly #rejected = { tooOld: 0, tooNew: 0, expired: 0 };
  #timedOut = false;

  /** @throws {@link ConfigError} when an option is invalid. */
  constructor(api: CloudWatchLogsApi, options: CloudWatchSinkOptions) {
    const problems = optionProblems(options);
    if (problems.length > 0) throw new ConfigError(problems, "Invalid CloudWatch sink options");
    this.#api = api;
    this.logGroupName = options.logGroupName;
    this.logStreamName = options.logStreamName;
    this.#logger = options.logger;
    this.#flushIntervalMs = options.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS;
    this.#maxPendingBytes = options.maxPendingBytes ?? DEFAULT_MAX_PENDING_BYTES;
    this.#maxAttempts = options.maxAttempts ?? 6;
    this.#retryBaseMs = options.retryBaseMs ?? 200;
    this.#retryMaxMs = options.retryMaxMs ?? 5000;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
  }

  /** Bytes held, pending and in flight, counted as the service counts them. */
  get pendingBytes(): number {
    return this.#batcher.pendingBytes + this.#inflightBytes;
  }

  /** Events held, pending and in flight. */
  get pendingEvents(): number {
    return this.#batcher.pendingEvents + (this.#inflight?.length ?? 0);
  }

  /** The counts so far (final once `close` has resolved). */
  get summary(): CloudWatchSinkSummary {
    return {
      writtenEvents: this.#written,
      sentEvents: this.#sent,
      droppedEvents: this.#dropped,
      rejected: { ...this.#rejected },
      timedOut: this.#timedOut,
    };
  }

  /**
   * Queues `message` as one event (several when longer than 256 KiB) stamped `timestamp`
   * (milliseconds since the epoch; default now; an invalid one is replaced by now). Never blocks,
   * never throws: when the sink is closed, off, or holds `maxPendingBytes`, the event is dropped
   * and counted. Empty messages are ignored.
   */
  write(message: string, timestamp?: number): void {
    let counted = 0;
    try {
      if (typeof message !== "string" || message.length === 0) return;
      const at =
        timestamp !== undefined && Number.isFinite(timestamp) && timestamp >= 0 ? timestamp : this.#now();
      const messageBytes = Buffer.byteLength(message, "utf8");
      const events =
        messageBytes <= this.#batcher.maxEventMessageBytes
          ? 1
          : splitMessage(message, this.#batcher.maxEventMessageBytes).length;
      this.#written += events;
      counted = events;
      if (this.#closing !== undefined) {
        counted = 0; // counted as dropped here
        this.#drop(
          events,
          CloudWatchSinkWarning.writeAfterClose,
          "CloudWatch sink: write after close, dropped",
        );
        return;
      }
      if (this.#disabled) {
        counted = 0;
        this.#dropped += events;
        return;
      }
      if (this.pendingBytes + messageBytes + EVENT_OVERHEAD_BYTES * events > this.#maxPendingBytes) {
        counted = 0;
        this.#drop(
          events,
          CloudWatchSinkWarning.bufferFull,
          "CloudWatch sink: buffer full, dropping events (further drops are only counted)",
          { maxPendingBytes: this.#maxPendingBytes },
        );
        return;
      }
      const queued = this.#batcher.add({ timestamp: at, message });
      this.#queued += queued;
      counted -= queued;
      this.#schedule();
    } catch (error) {
      // Whatever was counted as written but not queued is lost.
      this.#dropped += counted;
      this.#warnOnce(CloudWatchSinkWarning.internal, "CloudWatch sink: internal error in write", { error });
    }
  }

  /**
   * Sends what was written so far without waiting for the interval, and waits at most
   * `timeoutMs` for it to be settled (sent, rejected or counted as dropped). Resolves true when
   * it was, false when the time ran out (sending goes on). Never rejects.
   */
  async flush(timeoutMs: number): Promise<boolean> {
    const target = this.#queued;
    this.#due = true;
    this.#schedule();
    return this.#waitSettled(target, timeoutMs);
  }

  /**
   * Stops taking writes, sends everything held and waits at most `timeoutMs`; then aborts the
   * request in flight (and any backoff), counts what is left as dropped, releases the client's
   * sockets, logs a warning when anything was lost, and resolves with the final counts. After
   * it resolves the sink holds no timer, request or socket. Never rejects; calling it again
   * returns the same promise.
   */
  close(timeoutMs: number): Promise<CloudWatchSinkSummary> {
    this.#closing ??= this.#close(timeoutMs);
    return this.#closing;
  }

  async #close(timeoutMs: number): Promise<CloudWatchSinkSummary> {
    const target = this.#queued;
    this.#due = true;
    this.#schedule();
    const settled = await this.#waitSettled(target, timeoutMs);
    this.#clearTimer();
    if (!settled) {
      this.#timedOut = true;
      this.#finalized = true;
      this.#abort.abort();
      const lost = (this.#inflight?.length ?? 0) + this.#batcher.clear();
      this.#dropped += lost;
      this.#inflight = undefined;
      this.#inflightBytes = 0;
      for (const waiter of this.#waiters) waiter.resolve(false);
      this.#waiters.clear();
      // The abort ends the request in flight and any backoff at once; wait (bounded) for the loop
      // to stop so that nothing of the sink runs after close resolves.
      if (this.#pump !== undefined) {
        const stopped = new AbortController();
        await Promise.race([this.#pump, pause(STOP_WAIT_MS, stopped.signal, true)]);
        stopped.abort(); // clears the timer when the loop won the race
      }
    }
    try {
      this.#api.destroy();
    } catch (error) {
      this.#warnOnce(CloudWatchSinkWarning.internal, "CloudWatch sink: releasing the client failed", {
        error,
      });
    }
    const summary = this.summary;
    if (summary.droppedEvents > 0) {
      this.#logger.warn("CloudWatch sink: events were lost", {
        code: CloudWatchSinkWarning.losses,
        logGroupName: this.logGroupName,
        logStreamName: this.logStreamName,
        ...summary,
      });
    }
    return summary;
  }

  #waitSettled(target: number, timeoutMs: number): Promise<boolean> {
    if (this.#settled >= target) return Promise.resolve(true);
    if (this.#finalized) return Promise.resolve(false);
    return new Promise((resolve) => {
      // A referenced timer: a caller awaiting a flush keeps the process alive, for a bounded time.
      const timer = setTimeout(() => finish(false), Math.max(0, timeoutMs));
      const waiter = { target, resolve: (settled: boolean) => finish(settled) };
      const finish = (settled: boolean) => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        resolve(settled);
      };
      this.#waiters.add(waiter);
    });
  }

  #schedule(): void {
    if (this.#pump !== undefined || this.#finalized || this.#batcher.pendingEvents === 0) return;
    if (this.#due || this.#batcher.fullBatchReady) {
      this.#clearTimer();
      this.#pump = this.#run()
        .catch((error: unknown) => {
          this.#warnOnce(CloudWatchSinkWarning.internal, "CloudWatch sink: internal error while sending", {
            error,
          });
          // A bug: turn the sink off (counting what it holds) rather than restart a failing loop.
          this.#settle(this.#inflight ?? [], { kind: "disabled", error });
        })
        .finally(() => {
          this.#pump = undefined;
          this.#schedule();
        });
      return;
    }
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#due = true;
        this.#schedule();
      }, this.#flushIntervalMs);
      this.#timer.unref();
    }
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** The one sending loop: at most one request in flight. */
  async #run(): Promise<void> {
    while (!this.#finalized) {
      if (!this.#due && !this.#batcher.fullBatchReady) return;
      const batch = this.#batcher.takeBatch();
      if (batch === undefined) {
        this.#due = false;
        return;
      }
      if (this.#batcher.pendingEvents === 0) this.#due = false;
      this.#inflight = batch;
      this.#inflightBytes = batchBytes(batch);
      const outcome = this.#disabled ? ({ kind: "aborted" } as const) : await this.#deliver(batch);
      if (this.#finalized) return; // close's deadline counted this batch already
      this.#settle(batch, outcome);
    }
  }

  async #deliver(batch: LogEvent[]): Promise<Outcome> {
    let created = false;
    for (let attempt = 1; ; attempt++) {
      if (this.#abort.signal.aborted) return { kind: "aborted" };
      try {
        if (this.#needsResources) {
          await this.#ensureResources();
          this.#needsResources = false;
          created = true;
        }
        const output = await this.#api.putLogEvents(
          { logGroupName: this.logGroupName, logStreamName: this.logStreamName, logEvents: batch },
          this.#requestSignal(),
        );
        return { kind: "sent", rejected: output.rejectedLogEventsInfo };
      } catch (error) {
        if (this.#abort.signal.aborted) return { kind: "aborted" };
        const kind = classify(error);
        if (kind === "accepted") return { kind: "sent" };
        if (kind === "fatal") return { kind: "disabled", error };
        if (kind === "drop" || attempt >= this.#maxAttempts)
          return { kind: "failed", error, attempts: attempt };
        if (kind === "missing") {
          this.#needsResources = true;
          if (!created) continue; // create it now; back off only if it is still missing after that
        }
        const capMs = Math.min(this.#retryMaxMs, this.#retryBaseMs * 2 ** (attempt - 1));
        await pause(Math.floor(this.#random() * capMs), this.#abort.signal);
      }
    }
  }

  /** Creates the stream, and the group first when that is what is missing. "Already exists" is success. */
  async #ensureResources(): Promise<void> {
    const exists = (error: unknown) => errorName(error) === "ResourceAlreadyExistsException";
    try {
      await this.#api.createLogStream(this.logGroupName, this.logStreamName, this.#requestSignal());
      this.#logger.debug("CloudWatch sink: created log stream", { logStreamName: this.logStreamName });
      return;
    } catch (error) {
      if (exists(error)) return;
      if (errorName(error) !== "ResourceNotFoundException") throw error;
    }
    try {
      await this.#api.createLogGroup(this.logGroupName, this.#requestSignal());
      this.#logger.debug("CloudWatch sink: created log group", { logGroupName: this.logGroupName });
    } catch (error) {
      if (!exists(error)) throw error;
    }
    try {
      await this.#api.createLogStream(this.logGroupName, this.logStreamName, this.#requestSignal());
    } catch (error) {
      if (!exists(error)) throw error;
    }
  }

  #requestSignal(): AbortSignal {
    return AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#requestTimeoutMs)]);
  }

  #settle(batch: LogEvent[], outcome: Outcome): void {
    this.#inflight = undefined;
    this.#inflightBytes = 0;
    const fields = { logGroupName: this.logGroupName, logStreamName: this.logStreamName };
    switch (outcome.kind) {
      case "sent":
        this.#countSent(batch.length, outcome.rejected);
        break;
      case "failed":
        this.#drop(
          batch.length,
          CloudWatchSinkWarning.sendFailed,
          "CloudWatch sink: a batch could not be delivered and was dropped (further failures are only counted)",
          { ...fields, attempts: outcome.attempts, error: outcome.error },
        );
        break;
      case "disabled": {
        this.#disabled = true;
        const pending = this.#batcher.clear();
        this.#settled += pending;
        this.#drop(
          batch.length + pending,
          CloudWatchSinkWarning.disabled,
          "CloudWatch sink: turned off (access or credentials refused); every event is dropped and counted",
          { ...fields, error: outcome.error },
        );
        break;
      }
      case "aborted":
        this.#dropped += batch.length;
        break;
    }
    this.#settled += batch.length;
    for (const waiter of this.#waiters) if (this.#settled >= waiter.target) waiter.resolve(true);
  }

  #countSent(count: number, info: RejectedLogEventsInfo | undefined): void {
    if (info === undefined) {
      this.#sent += count;
      return;
    }
    const tooOldEnd = Math.min(count, Math.max(0, info.tooOldLogEventEndIndex ?? 0));
    const expiredEnd = Math.min(count, Math.max(tooOldEnd, info.expiredLogEventEndIndex ?? 0));
    const tooNewStart = Math.max(expiredEnd, Math.min(count, info.tooNewLogEventStartIndex ?? count));
    const tooOld = tooOldEnd;
    const expired = expiredEnd - tooOldEnd;
    const tooNew = count - tooNewStart;
    this.#rejected.tooOld += tooOld;
    this.#rejected.expired += expired;
    this.#rejected.tooNew += tooNew;
    this.#sent += count - tooOld - expired - tooNew;
    if (tooOld + expired + tooNew > 0) {
      this.#warnOnce(
        CloudWatchSinkWarning.rejected,
        "CloudWatch sink: the service rejected events (too old, too new or expired; further rejections are only counted)",
        { logGroupName: this.logGroupName, logStreamName: this.logStreamName, tooOld, tooNew, expired },
      );
    }
  }

  #drop(
    count: number,
    code: CloudWatchSinkWarningCode,
    msg: string,
    fields: Record<string, unknown> = {},
  ): void {
    this.#dropped += count;
    this.#warnOnce(code, msg, { droppedEvents: count, ...fields });
  }

  #warnOnce(code: CloudWatchSinkWarningCode, msg: string, fields: Record<string, unknown>): void {
    if (this.#warned.has(code)) return;
    this.#warned.add(code);
    this.#logger.warn(msg, { code, ...fields });
  }
}

/** The SDK module's type (the module itself is loaded only by {@link createCloudWatchSink}). */
type CloudWatchLogsSdk = typeof import("@aws-sdk/client-cloudwatch-logs");

function sdkApi(sdk: CloudWatchLogsSdk, client: CloudWatchLogsClient): CloudWatchLogsApi {
  return {
    putLogEvents: (input, signal) => client.send(new sdk.PutLogEventsCommand(input), { abortSignal: signal }),
    createLogGroup: async (logGroupName, signal) => {
      await client.send(new sdk.CreateLogGroupCommand({ logGroupName }), { abortSignal: signal });
    },
    createLogStream: async (logGroupName, logStreamName, signal) => {
      await client.send(new sdk.CreateLogStreamCommand({ logGroupName, logStreamName }), {
        abortSignal: signal,
      });
    },
    destroy: () => client.destroy(),
  };
}

/** An API whose every call fails: the sink turns itself off at its first send and counts its losses. */
function unavailableApi(cause: unknown): CloudWatchLogsApi {
  const fail = async (): Promise<never> => {
    const error = new Error(`the CloudWatch Logs SDK could not be loaded: ${String(cause)}`, { cause });
    error.name = "SdkUnavailableError";
    throw error;
  };
  return { putLogEvents: fail, createLogGroup: fail, createLogStream: fail, destroy: () => {} };
}

/**
 * Loads the AWS SDK (only now: it costs tens of milliseconds of start-up) and returns a sink
 * writing to `logGroupName`/`logStreamName` in `region`. The client makes one attempt per
 * call (the sink retries) with the default credential chain, through the environment's proxy
 * (`HTTPS_PROXY`, `NO_PROXY`...) if one is set, unless `clientConfig` says otherwise.
 * If the SDK cannot be loaded, the sink is returned anyway and turns itself off at its first send
 * (warned, losses counted).
 *
 * @throws {@link ConfigError} when an option is invalid.
 *
 * @example
 * const sink = await createCloudWatchSink({
 *   region: "eu-west-1",
 *   logGroupName: "/ephemeral-agent/lambda",
 *   logStreamName: "build.lambda-abcdef",
 *   logger,
 * });
 */
export async function createCloudWatchSink(options: CreateCloudWatchSinkOptions): Promise<CloudWatchSink> {
  const problems = optionProblems(options);
  if (problems.length > 0) throw new ConfigError(problems, "Invalid CloudWatch sink options");
  const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
  let api: CloudWatchLogsApi;
  try {
    const sdk: CloudWatchLogsSdk = sdkExports(
      await import("@aws-sdk/client-cloudwatch-logs"),
      "CloudWatchLogsClient",
      "@aws-sdk/client-cloudwatch-logs",
    );
    // Through the environment's proxy (HTTPS_PROXY, NO_PROXY...), decided per request.
    const proxyAgents = await awsProxyAgents();
    const client = new sdk.CloudWatchLogsClient({
      region: options.region,
      maxAttempts: 1,
      requestHandler: {
        requestTimeout: requestTimeoutMs,
        connectionTimeout: Math.min(5000, requestTimeoutMs),
        ...proxyAgents,
      },
      ...options.clientConfig,
    });
    api = sdkApi(sdk, client);
  } catch (error) {
    api = unavailableApi(error);
  }
  return new CloudWatchSink(api, options);
}

import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A loopback CloudWatch Logs endpoint speaking the service's JSON protocol (AWS JSON 1.1:
 * `POST /`, `X-Amz-Target: Logs_20140328.<Operation>`, `Content-Type: application/x-amz-json-1.1`)
 * for CreateLogGroup, CreateLogStream, PutLogEvents and GetLogEvents. The real SDK client is
 * pointed at it with `endpoint`, dummy credentials and a region.
 *
 * It enforces the documented PutLogEvents rules, each break answered with
 * `InvalidParameterException` (400) and recorded in `violations`:
 * - 1 to 10,000 events; at most 1,048,576 bytes counting UTF-8 message bytes + 26 per event;
 * - each event: integer timestamp, non-empty message, at most 262,144 bytes including the 26;
 * - chronological order; first to last event spanning at most 24 hours;
 * - events more than 2 h in the future, older than 14 days, or older than the group's retention
 *   are rejected one by one (`rejectedLogEventsInfo`); the rest are stored;
 * - a missing group or stream is `ResourceNotFoundException`; creating an existing one is
 *   `ResourceAlreadyExistsException`.
 * It also records a violation when two PutLogEvents for the same stream are in flight at once,
 * and can be told to fail the next N requests (throttling, 500s, connection resets) or to answer
 * slowly.
 */

/** The operations served. */
export type FakeOperation = "CreateLogGroup" | "CreateLogStream" | "PutLogEvents" | "GetLogEvents";
const OPERATIONS: readonly string[] = ["CreateLogGroup", "CreateLogStream", "PutLogEvents", "GetLogEvents"];

/**
 * Injected failures: `ThrottlingException` (400), `ServiceUnavailableException` (500, JSON),
 * `InternalServerError` (500, plain text body), `ConnectionReset` (socket destroyed, no answer),
 * `AccessDeniedException` (400).
 */
export type FakeFailure =
  | "ThrottlingException"
  | "ServiceUnavailableException"
  | "InternalServerError"
  | "ConnectionReset"
  | "AccessDeniedException";

/** One request as the fake saw it. */
export interface RecordedRequest {
  operation: string;
  status: number;
  /** The error type answered, if any. */
  errorType?: string;
  /** Whether the request carried a SigV4 `Authorization` header. */
  signed: boolean;
  logGroupName?: string;
  logStreamName?: string;
  /** PutLogEvents: number of events and bytes as the service counts them. */
  eventCount?: number;
  batchBytes?: number;
  startedAt: number;
  /** Whether the client closed the connection before the answer was sent. */
  aborted: boolean;
}

/** An event as stored. */
export interface StoredEvent {
  timestamp: number;
  message: string;
  ingestionTime: number;
}

export interface FakeCloudWatchOptions {
  /** The service's clock (default `Date.now`). */
  now?: () => number;
}

const OVERHEAD = 26;
const MAX_BATCH_BYTES = 1_048_576;
const MAX_EVENTS = 10_000;
const MAX_EVENT_BYTES = 262_144;
const MAX_SPAN_MS = 24 * 3600 * 1000;
const TOO_NEW_MS = 2 * 3600 * 1000;
const TOO_OLD_MS = 14 * 24 * 3600 * 1000;
const MAX_BODY_BYTES = 16 * 1024 * 1024;
const MAX_GET_BYTES = 1_048_576;

interface Group {
  retentionInDays: number | undefined;
  streams: Map<string, StoredEvent[]>;
}

class ServiceError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

/** A running fake CloudWatch Logs endpoint. */
export interface FakeCloudWatch {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  /** Client configuration for the real SDK client: endpoint, region, dummy credentials. */
  clientConfig: {
    endpoint: string;
    region: string;
    credentials: { accessKeyId: string; secretAccessKey: string };
  };
  /** Every request, in arrival order. */
  requests: RecordedRequest[];
  /** Rule breaks and concurrent PutLogEvents on one stream. */
  violations: string[];
  /** Fail the next `count` requests (of `operation`, or any) with `failure`. `Infinity` fails them all. */
  failNext(count: number, failure: FakeFailure, operation?: FakeOperation): void;
  /** Forget every pending injected failure. */
  clearFailures(): void;
  /** Delay every answer (of `operation`, or any) by `ms`. */
  setLatency(ms: number, operation?: FakeOperation): void;
  /** Called with each well-formed request before it is handled (after any latency): lets a test change state at an exact point. */
  onRequest: ((operation: FakeOperation, input: Record<string, unknown>) => void) | undefined;
  /** Test set-up without a request. */
  createGroup(name: string, options?: { retentionInDays?: number }): void;
  createStream(group: string, stream: string): void;
  /** The stored events of a stream, or undefined when it does not exist. */
  events(group: string, stream: string): StoredEvent[] | undefined;
  /** Highest number of PutLogEvents in flight at once on one stream. */
  maxConcurrentPuts: number;
  close(): Promise<void>;
}

function byteLength(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

function field(input: Record<string, unknown>, name: string): string {
  const value = input[name];
  if (typeof value !== "string" || value.length === 0) {
    throw new ServiceError("InvalidParameterException", `1 validation error detected: ${name} is required`);
  }
  return value;
}

/** Starts the fake on 127.0.0.1, port 0. */
export async function startFakeCloudWatch(options: FakeCloudWatchOptions = {}): Promise<FakeCloudWatch> {
  const now = options.now ?? Date.now;
  const groups = new Map<string, Group>();
  const requests: RecordedRequest[] = [];
  const violations: string[] = [];
  const failures: { count: number; failure: FakeFailure; operation: FakeOperation | undefined }[] = [];
  const latency = new Map<string, number>();
  const inFlight = new Map<string, number>();
  const pendingTimers = new Set<NodeJS.Timeout>();
  let maxConcurrentPuts = 0;

  const group = (name: string): Group => {
    const found = groups.get(name);
    if (!found)
      throw new ServiceError("ResourceNotFoundException", "The specified log group does not exist.");
    return found;
  };
  const stream = (groupName: string, streamName: string): StoredEvent[] => {
    const found = group(groupName).streams.get(streamName);
    if (!found)
      throw new ServiceError("ResourceNotFoundException", "The specified log stream does not exist.");
    return found;
  };
  function invalid(message: string): never {
    violations.push(message);
    throw new ServiceError("InvalidParameterException", message);
  }

  const handlers: Record<string, (input: Record<string, unknown>, record: RecordedRequest) => unknown> = {
    CreateLogGroup(input, record) {
      const name = field(input, "logGroupName");
      record.logGroupName = name;
      if (name.length > 512 || !/^[A-Za-z0-9_\-/.#]+$/.test(name)) invalid(`invalid log group name ${name}`);
      if (groups.has(name)) {
        throw new ServiceError("ResourceAlreadyExistsException", "The specified log group already exists");
      }
      groups.set(name, { retentionInDays: undefined, streams: new Map() });
      return {};
    },
    CreateLogStream(input, record) {
      const groupName = field(input, "logGroupName");
      const name = field(input, "logStreamName");
      Object.assign(record, { logGroupName: groupName, logStreamName: name });
      if (name.length > 512 || /[:*]/.test(name)) invalid(`invalid log stream name ${name}`);
      const owner = group(groupName);
      if (owner.streams.has(name)) {
        throw new ServiceError("ResourceAlreadyExistsException", "The specified log stream already exists");
      }
      owner.streams.set(name, []);
      return {};
    },
    PutLogEvents(input, record) {
      const groupName = field(input, "logGroupName");
      const streamName = field(input, "logStreamName");
      const events = input.logEvents;
      if (!Array.isArray(events) || events.length === 0)
        return invalid("logEvents must hold at least one event");
      record.eventCount = events.length;
      if (events.length > MAX_EVENTS) invalid(`${events.length} events in one batch (at most ${MAX_EVENTS})`);
      let total = 0;
      let previous = Number.NEGATIVE_INFINITY;
      const checked: { timestamp: number; message: string }[] = [];
      for (const [index, raw] of (events as unknown[]).entries()) {
        const event = raw as { timestamp?: unknown; message?: unknown } | null;
        const timestamp = event?.timestamp;
        const message = event?.message;
        if (typeof timestamp !== "number" || !Number.isSafeInteger(timestamp) || timestamp < 0) {
          invalid(`event ${index}: timestamp must be a non-negative integer, got ${String(timestamp)}`);
        }
        if (typeof message !== "string" || message.length === 0) {
          invalid(`event ${index}: message must be a non-empty string`);
        }
        const size = byteLength(message) + OVERHEAD;
        if (size > MAX_EVENT_BYTES)
          invalid(`event ${index}: Log event too large: ${size} bytes (at most ${MAX_EVENT_BYTES})`);
        total += size;
        const at = timestamp as number;
        if (at < previous) {
          invalid(
            `Log events in a single PutLogEvents request must be in chronological order (event ${index})`,
          );
        }
        previous = at;
        checked.push({ timestamp: at, message });
      }
      record.batchBytes = total;
      if (total > MAX_BATCH_BYTES) invalid(`batch of ${total} bytes (at most ${MAX_BATCH_BYTES})`);
      const span = checked[checked.length - 1]!.timestamp - checked[0]!.timestamp;
      if (span > MAX_SPAN_MS) {
        invalid(
          `A batch of log events in a single PutLogEvents request cannot span more than 24 hours (${span} ms)`,
        );
      }
      const owner = group(groupName);
      const stored = stream(groupName, streamName);
      const at = now();
      const retentionMs =
        owner.retentionInDays === undefined ? undefined : owner.retentionInDays * 86_400_000;
      let tooOldEnd = 0;
      let expiredEnd = 0;
      let tooNewStart = checked.length;
      checked.forEach((event, index) => {
        if (event.timestamp < at - TOO_OLD_MS) tooOldEnd = index + 1;
        if (retentionMs !== undefined && event.timestamp < at - retentionMs) expiredEnd = index + 1;
        if (event.timestamp > at + TOO_NEW_MS && tooNewStart === checked.length) tooNewStart = index;
      });
      const firstKept = Math.max(tooOldEnd, expiredEnd);
      for (let i = firstKept; i < tooNewStart; i++) stored.push({ ...checked[i]!, ingestionTime: at });
      const rejected: Record<string, number> = {};
      if (tooOldEnd > 0) rejected.tooOldLogEventEndIndex = tooOldEnd;
      if (expiredEnd > 0) rejected.expiredLogEventEndIndex = expiredEnd;
      if (tooNewStart < checked.length) rejected.tooNewLogEventStartIndex = tooNewStart;
      return {
        nextSequenceToken: String(stored.length).padStart(56, "0"),
        ...(Object.keys(rejected).length > 0 ? { rejectedLogEventsInfo: rejected } : {}),
      };
    },
    GetLogEvents(input, record) {
      const groupName = field(input, "logGroupName");
      const streamName = field(input, "logStreamName");
      Object.assign(record, { logGroupName: groupName, logStreamName: streamName });
      const stored = stream(groupName, streamName);
      const limit = typeof input.limit === "number" ? Math.min(10_000, Math.max(1, input.limit)) : 10_000;
      const token = typeof input.nextToken === "string" ? input.nextToken : undefined;
      const match = token === undefined ? undefined : /^([fb])\/(\d+)$/.exec(token);
      if (token !== undefined && !match) invalid(`invalid nextToken ${token}`);
      const forward = match ? match[1] === "f" : input.startFromHead === true;
      const startTime = typeof input.startTime === "number" ? input.startTime : Number.NEGATIVE_INFINITY;
      const endTime = typeof input.endTime === "number" ? input.endTime : Number.POSITIVE_INFINITY;
      const page: StoredEvent[] = [];
      let bytes = 0;
      if (forward) {
        let index = match ? Number(match[2]) : 0;
        const from = index;
        for (; index < stored.length && page.length < limit; index++) {
          const event = stored[index]!;
          if (event.timestamp < startTime || event.timestamp >= endTime) continue;
          const size = byteLength(event.message) + OVERHEAD;
          if (page.length > 0 && bytes + size > MAX_GET_BYTES) break;
          page.push(event);
          bytes += size;
        }
        return { events: page, nextForwardToken: `f/${index}`, nextBackwardToken: `b/${from}` };
      }
      let end = match ? Number(match[2]) : stored.length;
      const to = end;
      for (; end > 0 && page.length < limit; end--) {
        const event = stored[end - 1]!;
        if (event.timestamp < startTime || event.timestamp >= endTime) continue;
        const size = byteLength(event.message) + OVERHEAD;
        if (page.length > 0 && bytes + size > MAX_GET_BYTES) break;
        page.unshift(event);
        bytes += size;
      }
      return { events: page, nextForwardToken: `f/${to}`, nextBackwardToken: `b/${end}` };
    },
  };

  const send = (res: ServerResponse, record: RecordedRequest, status: number, body: unknown) => {
    record.status = status;
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "content-type": "application/x-amz-json-1.1",
      "content-length": Buffer.byteLength(text),
      "x-amzn-requestid": randomUUID(),
      ...(status >= 400 ? { "x-amzn-errortype": (body as { __type: string }).__type } : {}),
    });
    res.end(text);
  };
  const fail = (res: ServerResponse, record: RecordedRequest, error: ServiceError) => {
    record.errorType = error.type;
    send(res, record, error.status, { __type: error.type, message: error.message });
  };

  const readBody = (req: IncomingMessage): Promise<Buffer | undefined> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size <= MAX_BODY_BYTES) chunks.push(chunk);
      });
      req.on("end", () => resolve(size > MAX_BODY_BYTES ? undefined : Buffer.concat(chunks)));
      req.on("error", reject);
    });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const target = String(req.headers["x-amz-target"] ?? "");
    const operation = target.startsWith("Logs_20140328.") ? target.slice("Logs_20140328.".length) : target;
    const record: RecordedRequest = {
      operation,
      status: 0,
      signed: String(req.headers.authorization ?? "").startsWith("AWS4-HMAC-SHA256 "),
      startedAt: now(),
      aborted: false,
    };
    requests.push(record);
    res.once("close", () => {
      if (!res.writableFinished) record.aborted = true;
    });
    const body = await readBody(req);
    if (req.method !== "POST" || req.url !== "/") {
      return fail(
        res,
        record,
        new ServiceError("UnknownOperationException", `${req.method} ${req.url}`, 404),
      );
    }
    if (!String(req.headers["content-type"] ?? "").startsWith("application/x-amz-json-1.1")) {
      return fail(
        res,
        record,
        new ServiceError("SerializationException", "Content-Type must be application/x-amz-json-1.1"),
      );
    }
    if (!OPERATIONS.includes(operation)) {
      return fail(res, record, new ServiceError("UnknownOperationException", `unknown target ${target}`));
    }
    if (body === undefined)
      return fail(res, record, new ServiceError("SerializationException", "body too large", 413));
    let input: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(body.toString("utf8") || "{}");
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
        throw new Error("not an object");
      input = parsed as Record<string, unknown>;
    } catch {
      return fail(res, record, new ServiceError("SerializationException", "body is not a JSON object"));
    }

    // Concurrency check: PutLogEvents on one stream, from arrival to answer.
    let key: string | undefined;
    if (operation === "PutLogEvents") {
      key = `${String(input.logGroupName)}\u0000${String(input.logStreamName)}`;
      const count = (inFlight.get(key) ?? 0) + 1;
      inFlight.set(key, count);
      maxConcurrentPuts = Math.max(maxConcurrentPuts, count);
      if (count > 1)
        violations.push(`${count} PutLogEvents in flight at once on ${String(input.logStreamName)}`);
      const release = () => {
        if (key === undefined) return;
        inFlight.set(key, (inFlight.get(key) ?? 1) - 1);
        key = undefined;
      };
      res.once("finish", release);
      res.once("close", release);
    }

    const delay = latency.get(operation) ?? latency.get("*") ?? 0;
    if (delay > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          pendingTimers.delete(timer);
          resolve();
        }, delay);
        pendingTimers.add(timer);
      });
      if (res.destroyed) return;
    }

    fake.onRequest?.(operation as FakeOperation, input);
    const injected = failures.find(
      (f) => f.count > 0 && (f.operation === undefined || f.operation === operation),
    );
    if (injected) {
      injected.count--;
      record.errorType = injected.failure;
      switch (injected.failure) {
        case "ThrottlingException":
          return send(res, record, 400, { __type: "ThrottlingException", message: "Rate exceeded" });
        case "ServiceUnavailableException":
          return send(res, record, 500, {
            __type: "ServiceUnavailableException",
            message: "The service cannot complete the request.",
          });
        case "InternalServerError":
          record.status = 500;
          res.writeHead(500, { "content-type": "text/plain" });
          return res.end("Internal Server Error");
        case "AccessDeniedException":
          return send(res, record, 400, { __type: "AccessDeniedException", message: "not authorized" });
        case "ConnectionReset":
          record.status = -1;
          return req.socket.destroy();
      }
    }

    try {
      send(res, record, 200, handlers[operation]!(input, record));
    } catch (error) {
      if (error instanceof ServiceError) return fail(res, record, error);
      return fail(res, record, new ServiceError("InternalFailure", String(error), 500));
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      violations.push(`fake failed: ${String(error)}`);
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${port}`;

  const fake: FakeCloudWatch = {
    endpoint,
    onRequest: undefined,
    clientConfig: {
      endpoint,
      region: "us-east-1",
      credentials: { accessKeyId: "AKIDFAKECLOUDWATCH", secretAccessKey: "fake-secret" },
    },
    requests,
    violations,
    get maxConcurrentPuts() {
      return maxConcurrentPuts;
    },
    failNext(count, failure, operation) {
      failures.push({ count, failure, operation });
    },
    clearFailures() {
      failures.length = 0;
    },
    setLatency(ms, operation) {
      latency.set(operation ?? "*", ms);
    },
    createGroup(name, groupOptions = {}) {
      groups.set(name, { retentionInDays: groupOptions.retentionInDays, streams: new Map() });
    },
    createStream(groupName, streamName) {
      group(groupName).streams.set(streamName, []);
    },
    events(groupName, streamName) {
      return groups.get(groupName)?.streams.get(streamName);
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of pendingTimers) clearTimeout(timer);
        pendingTimers.clear();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return fake;
}

import { execFile } from "node:child_process";
import { promisify } from "node:util";
import {
  CloudWatchLogsClient,
  CreateLogGroupCommand,
  CreateLogStreamCommand,
  GetLogEventsCommand,
  type OutputLogEvent,
  PutLogEventsCommand,
} from "@aws-sdk/client-cloudwatch-logs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger, type LogFields } from "../../agent-core/index.ts";
import {
  type CloudWatchSink,
  CloudWatchSinkWarning,
  type CreateCloudWatchSinkOptions,
  createCloudWatchSink,
} from "../../agent-core/logs/cloudwatch/index.ts";
import { type FakeCloudWatch, startFakeCloudWatch } from "../support/fake-cloudwatch.ts";

const GROUP = "/ephemeral-agent/test";
const STREAM = "build.lambda-abcdef";
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

let fake: FakeCloudWatch;
let client: CloudWatchLogsClient;
const sinks: CloudWatchSink[] = [];

beforeEach(async () => {
  fake = await startFakeCloudWatch();
  client = new CloudWatchLogsClient({ ...fake.clientConfig, maxAttempts: 1 });
});
afterEach(async () => {
  for (const sink of sinks.splice(0)) await sink.close(1_000);
  client.destroy();
  await fake.close();
});

function capture() {
  const lines: LogFields[] = [];
  const logger = createLogger({ level: "debug", write: (line) => lines.push(JSON.parse(line) as LogFields) });
  return {
    logger,
    lines,
    warnings: (code: string) => lines.filter((l) => l.level === "warn" && l.code === code),
  };
}

async function sinkFor(
  logger: ReturnType<typeof capture>["logger"],
  options: Partial<CreateCloudWatchSinkOptions> = {},
): Promise<CloudWatchSink> {
  const sink = await createCloudWatchSink({
    region: fake.clientConfig.region,
    logGroupName: GROUP,
    logStreamName: STREAM,
    logger,
    clientConfig: fake.clientConfig,
    flushIntervalMs: 20,
    retryBaseMs: 5,
    retryMaxMs: 40,
    ...options,
  });
  sinks.push(sink);
  return sink;
}

/** Every event of a stream through the real SDK's GetLogEvents, paging forward until the token repeats. */
async function readAll(group = GROUP, stream = STREAM): Promise<OutputLogEvent[]> {
  const events: OutputLogEvent[] = [];
  let token: string | undefined;
  for (;;) {
    const page = await client.send(
      new GetLogEventsCommand({
        logGroupName: group,
        logStreamName: stream,
        startFromHead: true,
        nextToken: token,
      }),
    );
    events.push(...(page.events ?? []));
    if (page.nextForwardToken === undefined || page.nextForwardToken === token) return events;
    token = page.nextForwardToken;
  }
}

/** Polls `condition` every 10 ms until it holds, failing after `timeoutMs`. */
async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function puts() {
  return fake.requests.filter((r) => r.operation === "PutLogEvents");
}

function expectBalanced(summary: Awaited<ReturnType<CloudWatchSink["close"]>>) {
  const { tooOld, tooNew, expired } = summary.rejected;
  expect(summary.sentEvents + summary.droppedEvents + tooOld + tooNew + expired).toBe(summary.writtenEvents);
}

describe("CloudWatchSink against a fake CloudWatch Logs (real SDK client)", () => {
  it("creates the missing group and stream, then delivers, signed, in order", async () => {
    const log = capture();
    const sink = await sinkFor(log.logger);
    const start = Date.now();
    sink.write("first line", start);
    sink.write("second line ✓", start + 1);
    sink.write("third line", start + 2);
    const summary = await sink.close(5_000);

    expect(summary).toEqual({
      writtenEvents: 3,
      sentEvents: 3,
      droppedEvents: 0,
      rejected: { tooOld: 0, tooNew: 0, expired: 0 },
      timedOut: false,
    });
    expect(fake.requests.map((r) => `${r.operation}:${r.errorType ?? r.status}`)).toEqual([
      "PutLogEvents:ResourceNotFoundException",
      "CreateLogStream:ResourceNotFoundException",
      "CreateLogGroup:200",
      "CreateLogStream:200",
      "PutLogEvents:200",
    ]);
    expect(fake.requests.every((r) => r.signed)).toBe(true);
    expect((await readAll()).map((e) => [e.timestamp, e.message])).toEqual([
      [start, "first line"],
      [start + 1, "second line ✓"],
      [start + 2, "third line"],
    ]);
    expect(log.lines.filter((l) => l.level === "warn")).toEqual([]);
  });

  it("copes with ResourceAlreadyExistsException for the group and for the stream", async () => {
    // Another agent creates the group (then the stream) just before this one does.
    fake.onRequest = (operation) => {
      if (operation === "CreateLogGroup") fake.createGroup(GROUP);
    };
    const log = capture();
    const first = await sinkFor(log.logger);
    first.write("one");
    expect((await first.close(5_000)).sentEvents).toBe(1);
    expect(fake.requests.map((r) => `${r.operation}:${r.errorType ?? r.status}`)).toEqual([
      "PutLogEvents:ResourceNotFoundException",
      "CreateLogStream:ResourceNotFoundException",
      "CreateLogGroup:ResourceAlreadyExistsException",
      "CreateLogStream:200",
      "PutLogEvents:200",
    ]);

    fake.requests.length = 0;
    fake.onRequest = (operation) => {
      if (operation === "CreateLogStream") fake.createStream(GROUP, "second");
    };
    const second = await sinkFor(log.logger, { logStreamName: "second" });
    second.write("two");
    expect((await second.close(5_000)).sentEvents).toBe(1);
    expect(fake.requests.map((r) => `${r.operation}:${r.errorType ?? r.status}`)).toEqual([
      "PutLogEvents:ResourceNotFoundException",
      "CreateLogStream:ResourceAlreadyExistsException",
      "PutLogEvents:200",
    ]);
    expect((await readAll(GROUP, "second")).map((e) => e.message)).toEqual(["two"]);
    expect(log.lines.filter((l) => l.level === "warn")).toEqual([]);
  });

  it("batches 9 MB (small lines, 1 KiB lines, 600 KiB blobs, multibyte, clock going back) into valid requests; GetLogEvents gives it all back in order", async () => {
    fake.createGroup(GROUP);
    fake.createStream(GROUP, STREAM);
    const log = capture();
    const sink = await sinkFor(log.logger, { flushIntervalMs: 200 });
    const written: string[] = [];
    const start = Date.now();
    let bytes = 0;
    let i = 0;
    const write = async (message: string, timestamp: number) => {
      written.push(message);
      bytes += Buffer.byteLength(message);
      sink.write(message, timestamp);
      // The producer is paced by awaiting the sink, as the agent's pipes would be; nothing is dropped.
      if (sink.pendingBytes > 4 * 1024 * 1024) expect(await sink.flush(30_000)).toBe(true);
    };
    // ~3 MB of 40-byte lines: over 10,000 events per MiB, so the event limit cuts the batches.
    while (bytes < 3_000_000)
      await write(`line ${String(i++).padStart(8, "0")} é€😀 ${"x".repeat(15)}`, start + i);
    // ~4 MB of 700-byte lines: the byte limit cuts (4 batches and more). Every 1000th line's clock goes back 5 s.
    while (bytes < 7_000_000) {
      i++;
      await write(`${i} ${"ü€abc".repeat(120)}`.slice(0, 700), i % 1000 === 0 ? start - 5000 : start + i);
    }
    // 3 blobs of 600 KiB: each is split into 3 events on character boundaries.
    for (let blob = 0; blob < 3; blob++)
      await write(`blob ${blob}:${"😀é".repeat(102_400)}`, start + i + blob);
    const summary = await sink.close(60_000);

    expect(summary.droppedEvents).toBe(0);
    expect(summary.sentEvents).toBe(summary.writtenEvents);
    expect(fake.violations).toEqual([]);
    expect(fake.maxConcurrentPuts).toBe(1);
    const requests = puts();
    expect(requests.every((r) => r.status === 200)).toBe(true);
    expect(Math.max(...requests.map((r) => r.eventCount!))).toBe(10_000);
    expect(Math.max(...requests.map((r) => r.batchBytes!))).toBeGreaterThan(1_040_000);
    expect(Math.max(...requests.map((r) => r.batchBytes!))).toBeLessThanOrEqual(1_048_576);

    const stored = await readAll();
    expect(stored).toHaveLength(summary.sentEvents);
    for (let k = 1; k < stored.length; k++)
      expect(stored[k]!.timestamp! >= stored[k - 1]!.timestamp!).toBe(true);
    const back = stored.map((e) => e.message).join("");
    expect(Buffer.byteLength(back)).toBeGreaterThan(8_800_000);
    expect(back === written.join("")).toBe(true);
    expect(log.lines.filter((l) => l.level === "warn")).toEqual([]);
  });

  it("retries through throttling, 500s and a reset connection, with backoff", async () => {
    fake.createGroup(GROUP);
    fake.createStream(GROUP, STREAM);
    fake.failNext(2, "ThrottlingException", "PutLogEvents");
    fake.failNext(1, "ServiceUnavailableException", "PutLogEvents");
    fake.failNext(1, "InternalServerError", "PutLogEvents");
    fake.failNext(1, "ConnectionReset", "PutLogEvents");
    const log = capture();
    // Jitter pinned near its top: the waits are about 10, 20, 40, 80 and 160 ms.
    const sink = await sinkFor(log.logger, {
      maxAttempts: 6,
      retryBaseMs: 10,
      retryMaxMs: 1_000,
      random: () => 0.999,
    });
    for (let n = 0; n < 100; n++) sink.write(`line ${n}`);
    const summary = await sink.close(10_000);
    const starts = puts().map((r) => r.startedAt);
    // Each wait is a lower bound on the gap between two attempts (load can only lengthen a gap):
    // floor(0.999 * 10 * 2^(n-1)) ms before attempt n + 1.
    const gaps = starts.slice(1).map((t, k) => t - starts[k]!);
    expect(gaps).toHaveLength(5);
    for (const [k, gap] of gaps.entries())
      expect(gap).toBeGreaterThanOrEqual(Math.floor(0.999 * 10 * 2 ** k));

    expect(summary).toMatchObject({ writtenEvents: 100, sentEvents: 100, droppedEvents: 0 });
    expect(puts().map((r) => r.errorType ?? r.status)).toEqual([
      "ThrottlingException",
      "ThrottlingException",
      "ServiceUnavailableException",
      "InternalServerError",
      "ConnectionReset",
      200,
    ]);
    expect((await readAll()).map((e) => e.message)).toEqual(
      Array.from({ length: 100 }, (_, n) => `line ${n}`),
    );
    expect(log.lines.filter((l) => l.level === "warn")).toEqual([]);
  });

  it("surfaces rejected events (too old, expired, too new) as one warning and counts them", async () => {
    fake.createGroup(GROUP, { retentionInDays: 1 });
    fake.createStream(GROUP, STREAM);
    const log = capture();
    const sink = await sinkFor(log.logger);
    const now = Date.now();
    sink.write("too old", now - 15 * DAY);
    sink.write("expired", now - 2 * DAY);
    sink.write("fine", now);
    sink.write("too new", now + 3 * HOUR);
    const summary = await sink.close(5_000);

    expect(summary).toMatchObject({
      writtenEvents: 4,
      sentEvents: 1,
      droppedEvents: 0,
      rejected: { tooOld: 1, tooNew: 1, expired: 1 },
    });
    expectBalanced(summary);
    expect((await readAll()).map((e) => e.message)).toEqual(["fine"]);
    // The events span 15 days: the batcher sent them in several requests, none over 24 h.
    expect(fake.violations).toEqual([]);
    expect(puts().length).toBeGreaterThan(1);
    const warnings = log.warnings(CloudWatchSinkWarning.rejected);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ logGroupName: GROUP, logStreamName: STREAM });
  });

  it("keeps one request in flight per stream, even with flushes called concurrently", async () => {
    fake.createGroup(GROUP);
    fake.createStream(GROUP, STREAM);
    fake.setLatency(15, "PutLogEvents");
    const log = capture();
    const sink = await sinkFor(log.logger, { flushIntervalMs: 1 });
    const flushes: Promise<boolean>[] = [];
    for (let n = 0; n < 30_000; n++) {
      sink.write(`event ${n} ${"z".repeat(60)}`);
      if (n % 2_000 === 0) flushes.push(sink.flush(20_000));
    }
    expect(await Promise.all(flushes)).toEqual(flushes.map(() => true));
    const summary = await sink.close(20_000);
    expect(summary).toMatchObject({ sentEvents: 30_000, droppedEvents: 0 });
    expect(puts().length).toBeGreaterThan(3);
    expect(fake.maxConcurrentPuts).toBe(1);
    expect(fake.violations).toEqual([]);
  });

  it("the fake records two PutLogEvents in flight at once on one stream (the check works)", async () => {
    fake.createGroup(GROUP);
    fake.createStream(GROUP, STREAM);
    fake.setLatency(50, "PutLogEvents");
    const put = (message: string) =>
      client.send(
        new PutLogEventsCommand({
          logGroupName: GROUP,
          logStreamName: STREAM,
          logEvents: [{ timestamp: Date.now(), message }],
        }),
      );
    await Promise.all([put("a"), put("b")]);
    expect(fake.maxConcurrentPuts).toBe(2);
    expect(fake.violations).toEqual([expect.stringContaining("2 PutLogEvents in flight")]);
  });

  it("flushes within the deadline on close", async () => {
    fake.createGroup(GROUP);
    fake.createStream(GROUP, STREAM);
    fake.setLatency(100, "PutLogEvents");
    const log = capture();
    const sink = await sinkFor(log.logger, { flushIntervalMs: 60_000 });
    for (let n = 0; n < 25_000; n++) sink.write(`pending ${n}`);
    const started = Date.now();
    const summary = await sink.close(5_000);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(summary).toMatchObject({ sentEvents: 25_000, droppedEvents: 0, timedOut: false });
    expect(fake.events(GROUP, STREAM)).toHaveLength(25_000);
  });

  it("stops at close's deadline: aborts the request in flight and counts what is left as lost", async () => {
    fake.createGroup(GROUP);
    fake.createStream(GROUP, STREAM);
    fake.setLatency(30_000, "PutLogEvents");
    const log = capture();
    const sink = await sinkFor(log.logger);
    for (let n = 0; n < 20_000; n++) sink.write(`stuck ${n}`);
    const started = Date.now();
    const summary = await sink.close(300);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(1_500);
    expect(summary).toMatchObject({
      writtenEvents: 20_000,
      sentEvents: 0,
      droppedEvents: 20_000,
      timedOut: true,
    });
    await until(() => puts()[0]?.aborted === true, 2_000, "the request in flight was not aborted");
    expect(puts()).toHaveLength(1);
    expect(log.warnings(CloudWatchSinkWarning.losses)).toEqual([
      expect.objectContaining({ droppedEvents: 20_000, timedOut: true }),
    ]);
    // Writes after close are dropped and counted, never thrown.
    sink.write("late");
    expect(sink.summary.droppedEvents).toBe(20_001);
  });

  it("close's deadline also ends a backoff at once: nothing of the sink runs after close", async () => {
    fake.createGroup(GROUP);
    fake.createStream(GROUP, STREAM);
    fake.failNext(Number.POSITIVE_INFINITY, "ThrottlingException", "PutLogEvents");
    const log = capture();
    const sink = await sinkFor(log.logger, {
      maxAttempts: 10,
      retryBaseMs: 5_000,
      retryMaxMs: 5_000,
      random: () => 0.999,
    });
    sink.write("throttled");
    await sink.flush(0);
    await until(() => puts().length === 1 && puts()[0]!.status !== 0, 5_000, "no PutLogEvents answered");
    const started = Date.now();
    const summary = await sink.close(200);
    expect(Date.now() - started).toBeLessThan(800);
    expect(summary).toMatchObject({ sentEvents: 0, droppedEvents: 1, timedOut: true });
    expect(puts()).toHaveLength(1);
  });

  it("counts losses when the service keeps failing, warns once, and never throws", async () => {
    fake.createGroup(GROUP);
    fake.createStream(GROUP, STREAM);
    fake.failNext(Number.POSITIVE_INFINITY, "ServiceUnavailableException", "PutLogEvents");
    const log = capture();
    const sink = await sinkFor(log.logger, { maxAttempts: 3 });
    for (let batch = 0; batch < 3; batch++) {
      for (let n = 0; n < 10; n++) sink.write(`batch ${batch} line ${n}`);
      expect(await sink.flush(5_000)).toBe(true); // settled: counted as dropped
    }
    const summary = await sink.close(5_000);
    expect(summary).toMatchObject({ writtenEvents: 30, sentEvents: 0, droppedEvents: 30, timedOut: false });
    expect(puts()).toHaveLength(9); // 3 batches x 3 attempts
    expect(log.warnings(CloudWatchSinkWarning.sendFailed)).toHaveLength(1);
    expect(log.warnings(CloudWatchSinkWarning.sendFailed)[0]).toMatchObject({ attempts: 3 });
    expect(log.warnings(CloudWatchSinkWarning.losses)).toHaveLength(1);
  });

  it("retries network errors without an HTTP answer (connection refused), then counts the loss", async () => {
    const closed = await startFakeCloudWatch();
    await closed.close(); // nothing listens on its port any more
    const log = capture();
    const sink = await sinkFor(log.logger, {
      maxAttempts: 3,
      clientConfig: { ...fake.clientConfig, endpoint: closed.endpoint },
    });
    sink.write("nowhere");
    const summary = await sink.close(5_000);
    expect(summary).toMatchObject({ writtenEvents: 1, sentEvents: 0, droppedEvents: 1, timedOut: false });
    expect(log.warnings(CloudWatchSinkWarning.sendFailed)).toEqual([
      expect.objectContaining({ attempts: 3 }),
    ]);
  });

  it("turns itself off when access is denied: one request, then every event dropped and counted", async () => {
    fake.failNext(Number.POSITIVE_INFINITY, "AccessDeniedException");
    const log = capture();
    const sink = await sinkFor(log.logger);
    sink.write("a");
    sink.write("b");
    expect(await sink.flush(5_000)).toBe(true);
    sink.write("c");
    const summary = await sink.close(5_000);
    expect(summary).toMatchObject({ writtenEvents: 3, sentEvents: 0, droppedEvents: 3 });
    expect(fake.requests).toHaveLength(1);
    expect(log.warnings(CloudWatchSinkWarning.disabled)).toHaveLength(1);
  });

  it("bounds memory: beyond maxPendingBytes writes are dropped and counted, warned once, never blocking", async () => {
    fake.createGroup(GROUP);
    fake.createStream(GROUP, STREAM);
    fake.setLatency(200, "PutLogEvents");
    const log = capture();
    const maxPendingBytes = 256 * 1024;
    const sink = await sinkFor(log.logger, { maxPendingBytes });
    let peak = 0;
    let n = 0;
    const burst = () => {
      const started = Date.now();
      for (let k = 0; k < 1_000; k++) {
        sink.write(`${n++} ${"m".repeat(1_000)}`);
        peak = Math.max(peak, sink.pendingBytes);
      }
      expect(Date.now() - started).toBeLessThan(1_000);
    };
    burst();
    // The second burst comes while the first batch is in flight: in-flight bytes count too.
    await until(() => puts().length > 0, 5_000, "no PutLogEvents arrived");
    expect(sink.pendingBytes).toBeGreaterThan(maxPendingBytes / 2);
    burst();
    expect(peak).toBeLessThanOrEqual(maxPendingBytes);
    const summary = await sink.close(10_000);
    expect(summary.droppedEvents).toBeGreaterThan(1_000);
    expect(summary.sentEvents).toBeGreaterThan(100);
    expectBalanced(summary);
    expect(fake.events(GROUP, STREAM)).toHaveLength(summary.sentEvents);
    expect(log.warnings(CloudWatchSinkWarning.bufferFull)).toHaveLength(1);
  });

  it("refuses invalid options at once, naming each", async () => {
    const log = capture();
    await expect(
      createCloudWatchSink({
        region: "",
        logGroupName: "bad*group",
        logStreamName: "a:b",
        logger: log.logger,
        flushIntervalMs: 0,
        maxAttempts: 1.5,
      }),
    ).rejects.toMatchObject({
      code: "AGENT_ERR_CONFIG",
      problems: [
        expect.objectContaining({ field: "logGroupName" }),
        expect.objectContaining({ field: "logStreamName" }),
        expect.objectContaining({ field: "region" }),
        expect.objectContaining({ field: "flushIntervalMs" }),
        expect.objectContaining({ field: "maxAttempts" }),
      ],
    });
  });
});

describe("the fake CloudWatch Logs enforces the PutLogEvents rules", () => {
  const put = (logEvents: { timestamp: number; message: string }[], group = GROUP, stream = STREAM) =>
    client.send(new PutLogEventsCommand({ logGroupName: group, logStreamName: stream, logEvents }));
  const at = () => Date.now();

  beforeEach(() => {
    fake.createGroup(GROUP);
    fake.createStream(GROUP, STREAM);
  });

  it("accepts batches exactly at the limits", async () => {
    const t = at();
    await put(Array.from({ length: 10_000 }, () => ({ timestamp: t, message: "x" })));
    await put(Array.from({ length: 4 }, () => ({ timestamp: t, message: "y".repeat(262_118) }))); // 1,048,576 bytes
    await put([
      { timestamp: t - DAY, message: "a" },
      { timestamp: t, message: "b" },
    ]);
    expect(fake.violations).toEqual([]);
    expect(fake.events(GROUP, STREAM)).toHaveLength(10_006);
  });

  it.each([
    ["10,001 events", () => Array.from({ length: 10_001 }, () => ({ timestamp: at(), message: "x" }))],
    [
      "over 1,048,576 bytes (26 per event counted)",
      () => [
        ...Array.from({ length: 4 }, () => ({ timestamp: at(), message: "y".repeat(262_118) })),
        { timestamp: at(), message: "1" },
      ],
    ],
    ["an event over 256 KiB", () => [{ timestamp: at(), message: "z".repeat(262_119) }]],
    [
      "events out of order",
      () => [
        { timestamp: at(), message: "b" },
        { timestamp: at() - 1000, message: "a" },
      ],
    ],
    [
      "a span over 24 h",
      () => [
        { timestamp: at() - DAY - 1, message: "a" },
        { timestamp: at(), message: "b" },
      ],
    ],
    ["an empty message", () => [{ timestamp: at(), message: "" }]],
  ])("rejects %s with InvalidParameterException", async (_name, events) => {
    await expect(put(events())).rejects.toMatchObject({ name: "InvalidParameterException" });
    expect(fake.violations).toHaveLength(1);
    expect(fake.events(GROUP, STREAM)).toEqual([]);
  });

  it("answers ResourceNotFoundException and ResourceAlreadyExistsException", async () => {
    await expect(put([{ timestamp: at(), message: "x" }], "/missing")).rejects.toMatchObject({
      name: "ResourceNotFoundException",
    });
    await expect(put([{ timestamp: at(), message: "x" }], GROUP, "missing")).rejects.toMatchObject({
      name: "ResourceNotFoundException",
    });
    await expect(client.send(new CreateLogGroupCommand({ logGroupName: GROUP }))).rejects.toMatchObject({
      name: "ResourceAlreadyExistsException",
    });
    await expect(
      client.send(new CreateLogStreamCommand({ logGroupName: GROUP, logStreamName: STREAM })),
    ).rejects.toMatchObject({ name: "ResourceAlreadyExistsException" });
  });

  it("answers throttling (400) and 500 on demand, then recovers", async () => {
    fake.failNext(1, "ThrottlingException");
    fake.failNext(1, "ServiceUnavailableException");
    await expect(put([{ timestamp: at(), message: "x" }])).rejects.toMatchObject({
      name: "ThrottlingException",
      $metadata: { httpStatusCode: 400 },
    });
    await expect(put([{ timestamp: at(), message: "x" }])).rejects.toMatchObject({
      $metadata: { httpStatusCode: 500 },
    });
    await put([{ timestamp: at(), message: "x" }]);
    expect(fake.events(GROUP, STREAM)).toHaveLength(1);
  });
});

describe("loading", () => {
  it("importing the module does not load the AWS SDK; createCloudWatchSink does", async () => {
    const script = `
      import { createRequire } from "node:module";
      const require = createRequire(process.cwd() + "/");
      const loaded = () => Object.keys(require.cache).some((k) => k.includes("client-cloudwatch-logs"));
      const m = await import("./agent-core/logs/cloudwatch/index.ts");
      const before = loaded();
      const sink = await m.createCloudWatchSink({
        region: "us-east-1", logGroupName: "/g", logStreamName: "s",
        logger: { debug() {}, info() {}, warn() {}, error() {}, child() { return this; } },
      });
      const after = loaded();
      await sink.close(100);
      console.log(JSON.stringify({ before, after }));
    `;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", "--input-type=module", "-e", script],
      { cwd: process.cwd(), timeout: 30_000 },
    );
    expect(JSON.parse(stdout.trim())).toEqual({ before: false, after: true });
  });
});

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type BatcherLimits,
  batchBytes,
  EVENT_OVERHEAD_BYTES,
  LogBatcher,
  type LogEvent,
  MAX_BATCH_BYTES,
  MAX_BATCH_EVENTS,
  MAX_BATCH_SPAN_MS,
  MAX_EVENT_MESSAGE_BYTES,
  splitMessage,
} from "../../agent-core/logs/cloudwatch/index.ts";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function drain(batcher: LogBatcher): LogEvent[][] {
  const batches: LogEvent[][] = [];
  for (let batch = batcher.takeBatch(); batch !== undefined; batch = batcher.takeBatch()) batches.push(batch);
  return batches;
}

/**
 * Checks every rule on every batch, the order across batches, and that the batches give back
 * the input exactly: each input message is the concatenation of consecutive output events
 * carrying its (clamped) timestamp.
 */
function checkBatches(inputs: LogEvent[], batches: LogEvent[][], batcher: LogBatcher): void {
  let previous = Number.NEGATIVE_INFINITY;
  for (const batch of batches) {
    expect(batch.length).toBeGreaterThan(0);
    expect(batch.length).toBeLessThanOrEqual(batcher.maxBatchEvents);
    expect(batchBytes(batch)).toBeLessThanOrEqual(batcher.maxBatchBytes);
    for (const event of batch) {
      expect(event.message.length).toBeGreaterThan(0);
      expect(Buffer.byteLength(event.message)).toBeLessThanOrEqual(batcher.maxEventMessageBytes);
      expect(Number.isSafeInteger(event.timestamp)).toBe(true);
      expect(event.timestamp).toBeGreaterThanOrEqual(previous);
      previous = event.timestamp;
    }
    expect(batch.at(-1)!.timestamp - batch[0]!.timestamp).toBeLessThan(batcher.maxBatchSpanMs);
  }

  const out = batches.flat();
  let cursor = 0;
  let clamped = Number.NEGATIVE_INFINITY;
  for (const input of inputs) {
    if (input.message.length === 0) continue;
    clamped = Math.max(clamped, Math.trunc(input.timestamp));
    let rest = input.message;
    while (rest.length > 0) {
      const piece = out[cursor++];
      expect(piece, "an input message is missing from the output").toBeDefined();
      expect(piece!.timestamp).toBe(clamped);
      expect(rest.startsWith(piece!.message), "pieces must be consecutive parts of one message").toBe(true);
      rest = rest.slice(piece!.message.length);
      if (rest.length > 0) {
        const last = piece!.message.charCodeAt(piece!.message.length - 1);
        const next = rest.charCodeAt(0);
        const splitPair = last >= 0xd800 && last <= 0xdbff && next >= 0xdc00 && next <= 0xdfff;
        expect(splitPair, "a cut fell inside a surrogate pair").toBe(false);
      }
    }
  }
  expect(cursor, "the output holds events that were never written").toBe(out.length);
  expect(out.map((e) => e.message).join("")).toBe(inputs.map((e) => e.message).join(""));
}

/** Text made of any code point, sometimes a lone surrogate. */
const unit = fc.oneof(
  { weight: 30, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
  { weight: 5, arbitrary: fc.string({ unit: "grapheme", minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: fc.constantFrom("\ud800", "\udbff", "\udc00", "\udfff") },
);
const shortText = fc.string({ unit, maxLength: 120 });
/** Characters of every UTF-8 length (1 to 4 bytes) and lone surrogates, so that cuts fall inside them. */
const multibyte = fc.oneof(unit, fc.constantFrom("a", "é", "€", "😀", "𝄞", "\ud800", "\udfff"));
/** Up to 600 KiB: a short prefix (shifts the cut points) and a repeated multibyte pattern. */
const bigText = fc
  .record({
    prefix: fc.string({ unit: "grapheme-ascii", maxLength: 3 }),
    pattern: fc.string({ unit: multibyte, minLength: 1, maxLength: 4 }),
    bytes: fc.integer({ min: 1, max: 600 * 1024 }),
  })
  .map(
    ({ prefix, pattern, bytes }) =>
      prefix + pattern.repeat(Math.max(1, Math.floor(bytes / Buffer.byteLength(pattern)))),
  );

/** Timestamp steps: mostly forward, sometimes backwards, sometimes jumps of up to 3 days. */
const step = fc.oneof(
  { weight: 10, arbitrary: fc.integer({ min: 0, max: 2_000 }) },
  { weight: 3, arbitrary: fc.integer({ min: -3 * DAY, max: -1 }) },
  { weight: 2, arbitrary: fc.integer({ min: HOUR, max: 3 * DAY }) },
  { weight: 1, arbitrary: fc.constantFrom(MAX_BATCH_SPAN_MS - 1, MAX_BATCH_SPAN_MS, MAX_BATCH_SPAN_MS + 1) },
);

type Op = { kind: "add"; message: string; step: number } | { kind: "take" };

function run(ops: Op[], start: number, limits: BatcherLimits = {}) {
  const batcher = new LogBatcher(limits);
  const inputs: LogEvent[] = [];
  const batches: LogEvent[][] = [];
  let at = start;
  for (const op of ops) {
    if (op.kind === "take") {
      const batch = batcher.takeBatch();
      if (batch !== undefined) batches.push(batch);
      continue;
    }
    at = Math.max(0, at + op.step);
    const event = { timestamp: at, message: op.message };
    inputs.push(event);
    const before = batcher.pendingEvents;
    const added = batcher.add(event);
    expect(batcher.pendingEvents - before).toBe(added);
  }
  batches.push(...drain(batcher));
  expect(batcher.pendingEvents).toBe(0);
  expect(batcher.pendingBytes).toBe(0);
  checkBatches(inputs, batches, batcher);
}

describe("LogBatcher (property)", () => {
  it("any sequence of events (up to 600 KiB, multibyte, out of order, spans over 24 h) yields only valid batches, in order, losing nothing", () => {
    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 12,
        arbitrary: fc.record({ kind: fc.constant("add" as const), message: shortText, step }),
      },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("add" as const), message: bigText, step }) },
      { weight: 3, arbitrary: fc.constant({ kind: "take" as const }) },
    );
    fc.assert(
      fc.property(
        fc.array(op, { maxLength: 60 }),
        fc.integer({ min: 0, max: 2_000_000_000_000 }),
        (ops, start) => run(ops, start),
      ),
      { numRuns: 150 },
    );
  });

  it("with small limits, every cut (bytes, events, span, event size) stays valid and lossless", () => {
    const limits = fc
      .record({
        maxBatchEvents: fc.integer({ min: 1, max: 8 }),
        maxBatchBytes: fc.integer({ min: 30, max: 400 }),
        maxEventBytes: fc.integer({ min: 4, max: 374 }),
        maxBatchSpanMs: fc.integer({ min: 1, max: 5_000 }),
      })
      .map(
        (l): BatcherLimits => ({
          maxBatchEvents: l.maxBatchEvents,
          maxBatchBytes: l.maxBatchBytes,
          maxEventMessageBytes: Math.max(
            4,
            Math.min(l.maxEventBytes, l.maxBatchBytes - EVENT_OVERHEAD_BYTES),
          ),
          maxBatchSpanMs: l.maxBatchSpanMs,
        }),
      );
    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 6,
        arbitrary: fc.record({
          kind: fc.constant("add" as const),
          message: fc.string({ unit, maxLength: 80 }),
          step: fc.integer({ min: -3_000, max: 3_000 }),
        }),
      },
      { weight: 2, arbitrary: fc.constant({ kind: "take" as const }) },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), limits, (ops, batchLimits) =>
        run(ops, 1_000_000, batchLimits),
      ),
      { numRuns: 500 },
    );
  });
});

describe("splitMessage", () => {
  it("keeps a message that fits, and gives no pieces for an empty one", () => {
    expect(splitMessage("hello")).toEqual(["hello"]);
    expect(splitMessage("")).toEqual([]);
    const exact = "a".repeat(MAX_EVENT_MESSAGE_BYTES);
    expect(splitMessage(exact)).toEqual([exact]);
    expect(splitMessage(`${exact}b`)).toEqual([exact, "b"]);
  });

  it("cuts between characters: 2-, 3- and 4-byte characters and lone surrogates", () => {
    expect(splitMessage("é".repeat(3), 4)).toEqual(["éé", "é"]);
    expect(splitMessage("a€€", 4)).toEqual(["a€", "€"]);
    expect(splitMessage("a😀b", 4)).toEqual(["a", "😀", "b"]);
    expect(splitMessage("\ud800\ud800x", 4)).toEqual(["\ud800", "\ud800x"]);
    const big = `x${"😀".repeat(100_000)}`; // 400,001 bytes: the first cut falls inside an emoji
    const pieces = splitMessage(big);
    expect(pieces.join("")).toBe(big);
    expect(pieces.map((p) => Buffer.byteLength(p))).toEqual([MAX_EVENT_MESSAGE_BYTES - 1, 400_001 - 262_117]);
  });
});

describe("LogBatcher", () => {
  it("gives an event older than the previous one the previous timestamp, without reordering", () => {
    const batcher = new LogBatcher();
    batcher.add({ timestamp: 1000, message: "a" });
    batcher.add({ timestamp: 900, message: "b" });
    batcher.add({ timestamp: 1200.7, message: "c" });
    batcher.add({ timestamp: 1100, message: "d" });
    expect(batcher.takeBatch()).toEqual([
      { timestamp: 1000, message: "a" },
      { timestamp: 1000, message: "b" },
      { timestamp: 1200, message: "c" },
      { timestamp: 1200, message: "d" },
    ]);
    // The clamp holds across batches: the stream's last timestamp is remembered.
    batcher.add({ timestamp: 5, message: "e" });
    expect(batcher.takeBatch()).toEqual([{ timestamp: 1200, message: "e" }]);
  });

  it("cuts at 10,000 events", () => {
    const batcher = new LogBatcher();
    for (let i = 0; i < MAX_BATCH_EVENTS + 1; i++) batcher.add({ timestamp: 1, message: "x" });
    expect(batcher.fullBatchReady).toBe(true);
    expect(batcher.takeBatch()).toHaveLength(MAX_BATCH_EVENTS);
    expect(batcher.takeBatch()).toHaveLength(1);
    expect(batcher.takeBatch()).toBeUndefined();
  });

  it("cuts at exactly 1,048,576 bytes counting 26 per event", () => {
    const batcher = new LogBatcher();
    // 4 events of 262,118 + 26 = 262,144 bytes fill a batch exactly.
    for (let i = 0; i < 5; i++) batcher.add({ timestamp: 1, message: "y".repeat(MAX_EVENT_MESSAGE_BYTES) });
    const first = batcher.takeBatch()!;
    expect(first).toHaveLength(4);
    expect(batchBytes(first)).toBe(MAX_BATCH_BYTES);
    expect(batcher.pendingBytes).toBe(262_144);
    expect(batcher.takeBatch()).toHaveLength(1);
  });

  it("keeps a batch under 24 hours", () => {
    const batcher = new LogBatcher();
    batcher.add({ timestamp: 0, message: "a" });
    batcher.add({ timestamp: MAX_BATCH_SPAN_MS - 1, message: "b" });
    expect(batcher.fullBatchReady).toBe(false);
    batcher.add({ timestamp: MAX_BATCH_SPAN_MS, message: "c" });
    expect(batcher.fullBatchReady).toBe(true);
    expect(drain(batcher).map((b) => b.map((e) => e.message))).toEqual([["a", "b"], ["c"]]);
  });

  it("splits long messages into consecutive events and counts them", () => {
    const batcher = new LogBatcher();
    const message = "€".repeat(200_000); // 600,000 bytes
    expect(batcher.add({ timestamp: 7, message })).toBe(3);
    expect(batcher.pendingBytes).toBe(600_000 + 3 * EVENT_OVERHEAD_BYTES);
    const batch = batcher.takeBatch()!;
    expect(batch.map((e) => e.message).join("")).toBe(message);
    expect(batch.every((e) => e.timestamp === 7)).toBe(true);
  });

  it("skips empty messages and refuses invalid timestamps", () => {
    const batcher = new LogBatcher();
    expect(batcher.add({ timestamp: 1, message: "" })).toBe(0);
    expect(batcher.pendingEvents).toBe(0);
    for (const timestamp of [Number.NaN, Number.POSITIVE_INFINITY, -1]) {
      expect(() => batcher.add({ timestamp, message: "x" })).toThrow(RangeError);
    }
  });

  it("refuses limits that cannot work", () => {
    expect(() => new LogBatcher({ maxBatchEvents: 0 })).toThrow(/maxBatchEvents/);
    expect(() => new LogBatcher({ maxEventMessageBytes: 3 })).toThrow(/maxEventMessageBytes/);
    expect(() => new LogBatcher({ maxBatchBytes: 100, maxEventMessageBytes: 80 })).toThrow(/fit/);
  });

  it("clear() empties the queue and reports how many events it held", () => {
    const batcher = new LogBatcher();
    batcher.add({ timestamp: 1, message: "a" });
    batcher.add({ timestamp: 2, message: "b" });
    expect(batcher.clear()).toBe(2);
    expect(batcher.pendingEvents).toBe(0);
    expect(batcher.pendingBytes).toBe(0);
  });
});

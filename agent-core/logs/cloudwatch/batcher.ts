/**
 * Pure batching of log events for CloudWatch Logs `PutLogEvents` (no I/O, no clock, no timers).
 *
 * The service's rules, and how this module keeps them:
 * - a batch holds at most {@link MAX_BATCH_BYTES} bytes, counted as the UTF-8 bytes of every
 *   message plus {@link EVENT_OVERHEAD_BYTES} per event, and at most {@link MAX_BATCH_EVENTS} events;
 * - one event is at most 256 KiB including its overhead: a longer message is split into several
 *   events of at most {@link MAX_EVENT_MESSAGE_BYTES} bytes, cut between characters (never inside
 *   a UTF-8 sequence or a surrogate pair), which concatenated give back the message exactly;
 * - events are in chronological order. Events are never reordered: an event whose timestamp is
 *   older than the previous event's (of the same batcher, that is of the same stream) is given
 *   the previous event's timestamp. Timestamps therefore never decrease, within a batch and from
 *   one batch to the next, and the order of the lines is the order they were written in;
 * - a batch spans less than {@link MAX_BATCH_SPAN_MS} (24 h) from its first to its last event.
 *
 * Empty messages are not events (the service requires at least one character) and are skipped.
 */

/** Bytes the service adds to every event's message when sizing a batch. */
export const EVENT_OVERHEAD_BYTES = 26;
/** Largest batch: UTF-8 bytes of the messages plus {@link EVENT_OVERHEAD_BYTES} per event. */
export const MAX_BATCH_BYTES = 1_048_576;
/** Most events in one batch. */
export const MAX_BATCH_EVENTS = 10_000;
/** Largest event including its overhead. 256 KiB is the limit everywhere (1 MiB since 2025 in some places). */
export const MAX_EVENT_BYTES = 262_144;
/** Largest message of one event: {@link MAX_EVENT_BYTES} minus the overhead. */
export const MAX_EVENT_MESSAGE_BYTES = MAX_EVENT_BYTES - EVENT_OVERHEAD_BYTES;
/** A batch spans strictly less than this from its first event to its last. */
export const MAX_BATCH_SPAN_MS = 24 * 60 * 60 * 1000;

/** One log event as `PutLogEvents` takes it: milliseconds since the epoch and a non-empty message. */
export interface LogEvent {
  timestamp: number;
  message: string;
}

/** Limits of a {@link LogBatcher}; each defaults to the service's limit. Smaller values are for tests. */
export interface BatcherLimits {
  /** Largest batch in bytes, counting {@link EVENT_OVERHEAD_BYTES} per event. */
  maxBatchBytes?: number;
  /** Most events per batch. */
  maxBatchEvents?: number;
  /** Largest message of one event in UTF-8 bytes (without the overhead); at least 4. */
  maxEventMessageBytes?: number;
  /** A batch spans strictly less than this many milliseconds. */
  maxBatchSpanMs?: number;
}

interface QueuedEvent {
  timestamp: number;
  message: string;
  /** UTF-8 bytes of the message plus the per-event overhead. */
  size: number;
}

/**
 * UTF-8 size of the code unit at `index` of `text` and how many code units it takes (2 for a
 * surrogate pair). A lone surrogate counts 3 bytes, as `Buffer.byteLength` (and the U+FFFD it
 * becomes on the wire) does.
 */
function charAt(text: string, index: number): { bytes: number; units: number } {
  const code = text.charCodeAt(index);
  if (code < 0x80) return { bytes: 1, units: 1 };
  if (code < 0x800) return { bytes: 2, units: 1 };
  if (code >= 0xd800 && code <= 0xdbff && index + 1 < text.length) {
    const next = text.charCodeAt(index + 1);
    if (next >= 0xdc00 && next <= 0xdfff) return { bytes: 4, units: 2 };
  }
  return { bytes: 3, units: 1 };
}

/**
 * Splits `message` into pieces of at most `maxBytes` UTF-8 bytes each, cut only between
 * characters, so that `pieces.join("") === message`. A message that fits is returned as is;
 * an empty message gives no pieces.
 *
 * @example
 * splitMessage("é".repeat(3), 4); // ["éé", "é"]
 */
export function splitMessage(message: string, maxBytes: number = MAX_EVENT_MESSAGE_BYTES): string[] {
  return splitSized(message, maxBytes).map((piece) => piece.message);
}

/** {@link splitMessage}, with the UTF-8 size of every piece. */
function splitSized(message: string, maxBytes: number): { message: string; bytes: number }[] {
  if (message.length === 0) return [];
  const total = Buffer.byteLength(message, "utf8");
  if (total <= maxBytes) return [{ message, bytes: total }];
  const pieces: { message: string; bytes: number }[] = [];
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < message.length; ) {
    const { bytes: size, units } = charAt(message, i);
    if (bytes + size > maxBytes) {
      pieces.push({ message: message.slice(start, i), bytes });
      start = i;
      bytes = 0;
    }
    bytes += size;
    i += units;
  }
  pieces.push({ message: message.slice(start), bytes });
  return pieces;
}

function positiveInteger(name: string, value: number, min = 1): number {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(
      `Expected the \`${name}\` option to be an integer >= ${min}, got \`${String(value)}\` (${typeof value})`,
    );
  }
  return value;
}

/**
 * Holds the events of one log stream and hands them out as batches that `PutLogEvents` accepts
 * (see the module comment for the rules). Events leave in the order they were added.
 *
 * @example
 * const batcher = new LogBatcher();
 * batcher.add({ timestamp: Date.now(), message: "hello" });
 * const batch = batcher.takeBatch(); // [{ timestamp, message: "hello" }]
 */
export class LogBatcher {
  readonly maxBatchBytes: number;
  readonly maxBatchEvents: number;
  readonly maxEventMessageBytes: number;
  readonly maxBatchSpanMs: number;
  #queue: QueuedEvent[] = [];
  #head = 0;
  #pendingBytes = 0;
  #lastTimestamp = Number.NEGATIVE_INFINITY;

  constructor(limits: BatcherLimits = {}) {
    this.maxBatchBytes = positiveInteger("maxBatchBytes", limits.maxBatchBytes ?? MAX_BATCH_BYTES);
    this.maxBatchEvents = positiveInteger("maxBatchEvents", limits.maxBatchEvents ?? MAX_BATCH_EVENTS);
    this.maxEventMessageBytes = positiveInteger(
      "maxEventMessageBytes",
      limits.maxEventMessageBytes ?? MAX_EVENT_MESSAGE_BYTES,
      4,
    );
    this.maxBatchSpanMs = positiveInteger("maxBatchSpanMs", limits.maxBatchSpanMs ?? MAX_BATCH_SPAN_MS);
    if (this.maxEventMessageBytes + EVENT_OVERHEAD_BYTES > this.maxBatchBytes) {
      throw new RangeError(
        `Expected \`maxEventMessageBytes\` + ${EVENT_OVERHEAD_BYTES} to fit in \`maxBatchBytes\` (${this.maxBatchBytes}), got \`${this.maxEventMessageBytes}\` (number)`,
      );
    }
  }

  /** Events waiting to be taken. */
  get pendingEvents(): number {
    return this.#queue.length - this.#head;
  }

  /** Bytes waiting to be taken, counted as the service counts them (message bytes + 26 per event). */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /**
   * Whether the next batch is full: the events pending cannot all go in one batch (or exactly
   * fill one). A sender may then send at once rather than wait for its flush interval.
   */
  get fullBatchReady(): boolean {
    const count = this.pendingEvents;
    if (count === 0) return false;
    if (count >= this.maxBatchEvents || this.#pendingBytes >= this.maxBatchBytes) return true;
    const first = this.#queue[this.#head]!.timestamp;
    const last = this.#queue[this.#queue.length - 1]!.timestamp;
    return last - first >= this.maxBatchSpanMs;
  }

  /**
   * Queues one event: split into several when its message is longer than
   * {@link BatcherLimits.maxEventMessageBytes}, its timestamp raised to the previous event's when
   * older. Returns the number of events queued (0 for an empty message).
   *
   * @throws RangeError when `timestamp` is not a non-negative finite number.
   */
  add(event: LogEvent): number {
    if (!Number.isFinite(event.timestamp) || event.timestamp < 0) {
      throw new RangeError(
        `Expected the event's \`timestamp\` to be a non-negative finite number, got \`${String(event.timestamp)}\` (${typeof event.timestamp})`,
      );
    }
    const pieces = splitSized(event.message, this.maxEventMessageBytes);
    if (pieces.length === 0) return 0;
    const timestamp = Math.max(Math.trunc(event.timestamp), this.#lastTimestamp);
    this.#lastTimestamp = timestamp;
    for (const { message, bytes } of pieces) {
      const size = bytes + EVENT_OVERHEAD_BYTES;
      this.#queue.push({ timestamp, message, size });
      this.#pendingBytes += size;
    }
    return pieces.length;
  }

  /**
   * Removes and returns the next batch: the longest run of pending events, oldest first, that
   * keeps every rule. Undefined when nothing is pending.
   */
  takeBatch(): LogEvent[] | undefined {
    if (this.pendingEvents === 0) return undefined;
    const first = this.#queue[this.#head]!;
    const batch: LogEvent[] = [];
    let bytes = 0;
    let index = this.#head;
    while (index < this.#queue.length && batch.length < this.maxBatchEvents) {
      const event = this.#queue[index]!;
      if (bytes + event.size > this.maxBatchBytes) break;
      if (event.timestamp - first.timestamp >= this.maxBatchSpanMs) break;
      batch.push({ timestamp: event.timestamp, message: event.message });
      bytes += event.size;
      index++;
    }
    this.#head = index;
    this.#pendingBytes -= bytes;
    this.#compact();
    return batch;
  }

  /** Removes every pending event and returns how many there were. */
  clear(): number {
    const count = this.pendingEvents;
    this.#queue = [];
    this.#head = 0;
    this.#pendingBytes = 0;
    return count;
  }

  #compact(): void {
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }
}

/** UTF-8 bytes of a batch as the service counts them (messages plus 26 per event). */
export function batchBytes(events: readonly LogEvent[]): number {
  let total = 0;
  for (const event of events) total += Buffer.byteLength(event.message, "utf8") + EVENT_OVERHEAD_BYTES;
  return total;
}

import {
  closeSync,
  existsSync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { open } from "node:fs/promises";
import { basename, join } from "node:path";
import type { OutputStream } from "../agent-core/index.ts";
import { storeWriteError } from "./errors.ts";
import type { JobEvent, JobRecord } from "./job-record.ts";

/** Fields the journal adds to what an agent reported: its message's seq and the attempt it belongs to. */
interface FromAgent {
  seq: number;
  attempt: number;
}

/**
 * A line of `events.jsonl`. Output is stored as a pointer into `output.log`, and an artifact frame
 * as its place in the attempt's artifact stream (its bytes are in `artifacts.tar.part`; readers
 * are not shown these lines); events that came from an agent carry their `seq` and `attempt`, so
 * the journal alone rebuilds where a job's message stream stands after a restart.
 */
export type StoredEvent =
  | Exclude<JobEvent, { type: "output" | "step-start" | "step-end" | "artifacts" }>
  | (Extract<JobEvent, { type: "artifacts" }> & { seq: number })
  | ({
      type: "artifact";
      offset: number;
      length: number;
      /** Set when the frame's bytes were not stored: the artifacts are past the store's cap. */
      dropped?: true;
    } & FromAgent)
  | (Extract<JobEvent, { type: "step-start" }> & FromAgent & { agentAt?: string })
  | (Extract<JobEvent, { type: "step-end" }> &
      FromAgent & { at: string; stdoutBytes: number; stderrBytes: number })
  | ({
      type: "output";
      stepId: string;
      stream: OutputStream;
      offset: number;
      length: number;
      /** Bytes of the frame not stored because the job's log reached its cap. */
      dropped?: number;
      /** When the controller received the frame (its clock). */
      at?: string;
    } & FromAgent);

/** One event as a reader gets it: output events with their bytes. */
export interface ReadEvent {
  event: JobEvent;
  data?: Buffer;
}

const SAVE_DELAY_MS = 200;
const READ_CHUNK_BYTES = 256 * 1024;
/** How often what could not be written (a full disk: journal lines, the record) is tried again. */
const STORE_RETRY_MS = 1_000;

/**
 * A job's files under `<dataDir>/jobs/<id>/`: `job.json` (the record), `output.log` (every output
 * byte in arrival order, unchanged) and `events.jsonl` (the journal: statuses, attempts, steps,
 * and where each output frame sits in output.log).
 *
 * Writes are synchronous and ordered: an output frame's bytes go to output.log before its journal
 * line, and a journal line is the commit point. So after the controller process dies at any
 * instant, `JobFiles.open` finds a consistent prefix: it drops a torn last line and cuts
 * output.log back to the end of the last committed frame. Acknowledging an agent's message only
 * after it is written means a restarted controller asks the agent for exactly what it lacks.
 *
 * A write that fails (a full disk) is undone (the files cut back to their last commit). What an
 * agent reported (a line with a `seq`, an output frame) then throws `storeWriteError`, so that
 * it is neither counted nor acknowledged and the agent sends it again later. What the controller
 * decided (statuses, attempts, the end) is kept in order in memory and written as soon as there
 * is room (before anything else, tried again every second): the controller never stops for it.
 */
export class JobFiles {
  readonly dir: string;
  readonly #outputFd: number;
  readonly #eventsFd: number;
  #outputBytes: number;
  #eventsBytes: number;
  #closed = false;
  /** Set by `close`: nothing more is appended; the files close once the pending lines are written. */
  #closing = false;
  #saveTimer: NodeJS.Timeout | undefined;
  /** A write failed and none succeeded since (`onSaveError` was told). */
  #failing = false;
  /** The controller's journal lines that could not be written yet (a full disk), in order. */
  readonly #pending: { line: Buffer; event: StoredEvent }[] = [];
  #pendingTimer: NodeJS.Timeout | undefined;
  /** Readers waiting for the journal to grow (or close). */
  readonly #wakers = new Set<() => void>();
  /** In-process observers told of each event as it is stored. */
  readonly #watchers = new Set<(event: JobEvent, data?: Buffer) => void>();

  readonly #onSaveError: (error: unknown) => void;

  private constructor(
    dir: string,
    outputBytes: number,
    eventsBytes: number,
    onSaveError: (error: unknown) => void,
  ) {
    this.dir = dir;
    this.#onSaveError = onSaveError;
    this.#outputFd = openSync(join(dir, "output.log"), "a");
    this.#eventsFd = openSync(join(dir, "events.jsonl"), "a");
    this.#outputBytes = outputBytes;
    this.#eventsBytes = eventsBytes;
  }

  /**
   * Creates the files of a new job in `dir`. `onSaveError` hears of a write of the controller's
   * (the record, a journal line it decided) that failed, once until a write succeeds again; what
   * failed is written again every `STORE_RETRY_MS`.
   */
  static create(dir: string, onSaveError: (error: unknown) => void = () => {}): JobFiles {
    mkdirSync(dir, { recursive: true });
    return new JobFiles(dir, 0, 0, onSaveError);
  }

  /**
   * Opens an existing job's files after a restart: repairs a torn journal tail and output written
   * past the last committed frame, and returns the committed events in order.
   */
  static open(
    dir: string,
    options: { ended: boolean; onSaveError?: (error: unknown) => void },
  ): { files: JobFiles; events: StoredEvent[] } {
    const eventsPath = join(dir, "events.jsonl");
    const outputPath = join(dir, "output.log");
    const text = existsSync(eventsPath) ? readFileSync(eventsPath) : Buffer.alloc(0);
    const events: StoredEvent[] = [];
    let committed = 0;
    let outputEnd = 0;
    while (committed < text.length) {
      const newline = text.indexOf(10, committed);
      if (newline < 0) break;
      let event: StoredEvent;
      try {
        event = JSON.parse(text.subarray(committed, newline).toString("utf8")) as StoredEvent;
      } catch {
        break;
      }
      events.push(event);
      if (event.type === "output") outputEnd = event.offset + event.length;
      committed = newline + 1;
    }
    repairLength(eventsPath, committed);
    repairLength(outputPath, outputEnd);
    const files = new JobFiles(dir, outputEnd, committed, options.onSaveError ?? (() => {}));
    if (options.ended) files.close();
    return { files, events };
  }

  get outputBytes(): number {
    return this.#outputBytes;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Writes the record now (atomically: a temp file, then a rename). Throws `storeWriteError`
   * when it cannot (the temp file removed); see `saveRecord` for the form that does not.
   */
  writeRecord(record: JobRecord): void {
    clearTimeout(this.#saveTimer);
    this.#saveTimer = undefined;
    const path = join(this.dir, "job.json");
    try {
      writeFileSync(`${path}.tmp`, `${JSON.stringify(record, null, 2)}\n`);
      renameSync(`${path}.tmp`, path);
    } catch (error) {
      rmSync(`${path}.tmp`, { force: true });
      throw storeWriteError(`the record of job ${record.id}`, error);
    }
  }

  /**
   * Writes the record now; when that fails (a full disk), `onSaveError` hears of it and the
   * record is written again every `STORE_RETRY_MS`, until it is. Never throws: the journal
   * already holds what a restart needs.
   */
  saveRecord(record: JobRecord): void {
    try {
      this.writeRecord(record);
      this.#failing = false;
    } catch (error) {
      this.#failed(error);
      this.#retrySave(record, STORE_RETRY_MS);
    }
  }

  /** Tells `onSaveError` of a failed write, once until a write succeeds again. */
  #failed(error: unknown): void {
    if (this.#failing) return;
    this.#failing = true;
    this.#onSaveError(error);
  }

  /**
   * Writes the record within `SAVE_DELAY_MS`, once for any number of calls: a job of many short
   * steps does not rewrite its record at every step (the journal has every step already).
   */
  saveRecordSoon(record: JobRecord): void {
    if (this.#saveTimer !== undefined) return;
    this.#retrySave(record, SAVE_DELAY_MS);
  }

  #retrySave(record: JobRecord, delayMs: number): void {
    clearTimeout(this.#saveTimer);
    this.#pendingRecord = record;
    this.#saveTimer = setTimeout(() => {
      this.#saveTimer = undefined;
      this.saveRecord(record);
    }, delayMs);
    this.#saveTimer.unref();
  }

  /** Writes now a record whose lazy write is pending, and the pending journal lines (the controller stops). */
  flush(): void {
    this.#flushPending();
    if (this.#saveTimer !== undefined && this.#pendingRecord !== undefined)
      this.saveRecord(this.#pendingRecord);
  }

  #pendingRecord: JobRecord | undefined;

  /**
   * Stores an output frame: its bytes, then its journal line (the commit). Throws
   * `storeWriteError` when either cannot be written, having kept nothing of the frame.
   */
  appendOutput(
    frame: { stepId: string; stream: OutputStream; data: Buffer; dropped?: number; at?: string } & FromAgent,
  ): void {
    if (this.#closing) return;
    this.#requirePendingWritten();
    const event: StoredEvent = {
      type: "output",
      stepId: frame.stepId,
      stream: frame.stream,
      offset: this.#outputBytes,
      length: frame.data.length,
      ...(frame.dropped ? { dropped: frame.dropped } : {}),
      ...(frame.at !== undefined ? { at: frame.at } : {}),
      seq: frame.seq,
      attempt: frame.attempt,
    };
    this.#commit(Buffer.from(`${JSON.stringify(event)}\n`), frame.data);
    // Decoding costs on every frame (1.5 CPU s per GB here): only for a watcher that reads `text`.
    if (this.#watchers.size > 0 && frame.data.length > 0) {
      const shown = lazyOutputEvent(frame);
      for (const watcher of this.#watchers) watcher(shown, frame.data);
    }
  }

  /**
   * Appends a journal line. One that came from an agent (it has a `seq`) is written now or
   * throws `storeWriteError`; one the controller decided is written in order as soon as it can be.
   */
  appendEvent(event: StoredEvent): void {
    if (this.#closing) return;
    const line = Buffer.from(`${JSON.stringify(event)}\n`);
    if ("seq" in event) {
      this.#requirePendingWritten();
      this.#commit(line);
      this.#told(event);
      return;
    }
    this.#pending.push({ line, event });
    this.#flushPending();
  }

  /** Writes the pending journal lines, in order, as far as it can; tries again later when it cannot. */
  #flushPending(): boolean {
    while (this.#pending.length > 0) {
      const { line, event } = this.#pending[0]!;
      try {
        this.#commit(line);
      } catch (error) {
        this.#failed(error);
        if (this.#pendingTimer === undefined) {
          this.#pendingTimer = setInterval(() => this.#flushPending(), STORE_RETRY_MS);
          this.#pendingTimer.unref();
        }
        return false;
      }
      this.#pending.shift();
      this.#told(event);
    }
    if (this.#pendingTimer !== undefined) {
      clearInterval(this.#pendingTimer);
      this.#pendingTimer = undefined;
      this.#failing = false;
    }
    if (this.#closing && !this.#closed) this.#closeFiles();
    return true;
  }

  /** An agent's message is stored only after every earlier line: throws while they cannot be written. */
  #requirePendingWritten(): void {
    if (this.#pending.length === 0 || this.#flushPending()) return;
    throw storeWriteError(
      `job ${this.#jobId}'s journal`,
      new Error("earlier journal lines are not written yet"),
    );
  }

  /** Writes `data` (output bytes) then `line` (journal); on a failure cuts both back and throws. */
  #commit(line: Buffer, data?: Buffer): void {
    try {
      if (data !== undefined && data.length > 0) writeAll(this.#outputFd, data);
      writeAll(this.#eventsFd, line);
    } catch (error) {
      try {
        ftruncateSync(this.#outputFd, this.#outputBytes);
        ftruncateSync(this.#eventsFd, this.#eventsBytes);
      } catch {
        // A file that cannot even be cut back: the next open cuts it at the last commit.
      }
      throw storeWriteError(`job ${this.#jobId}'s ${data ? "output" : "journal"}`, error);
    }
    if (data !== undefined) this.#outputBytes += data.length;
    this.#eventsBytes += line.length;
    this.#wake();
  }

  /** Tells in-process watchers of a stored event (output is told by `appendOutput`, with its bytes). */
  #told(event: StoredEvent): void {
    if (this.#watchers.size === 0 || event.type === "output" || event.type === "artifact") return;
    const shown = publicEvent(event);
    for (const watcher of this.#watchers) watcher(shown);
  }

  get #jobId(): string {
    return basename(this.dir);
  }

  /**
   * Tells `watcher` synchronously of every event stored from now on (output with its bytes),
   * until the returned function is called. For in-process observers that neither block nor
   * buffer (metrics, benchmarks); a reader that can fall behind uses `read`.
   */
  watch(watcher: (event: JobEvent, data?: Buffer) => void): () => void {
    this.#watchers.add(watcher);
    return () => this.#watchers.delete(watcher);
  }

  /**
   * Reads the job's events from the start, output with its bytes. With `follow`, waits for new
   * events until the job's log is closed; without, stops at what is stored now. The reader pulls:
   * a consumer that awaits between events (a slow HTTP client) holds no more than one chunk.
   * Ends early when `signal` aborts.
   */
  async *read(options: { follow: boolean; signal?: AbortSignal }): AsyncGenerator<ReadEvent> {
    const events = await open(join(this.dir, "events.jsonl"), "r");
    const output = await open(join(this.dir, "output.log"), "r");
    const limit = options.follow ? Number.POSITIVE_INFINITY : this.#eventsBytes;
    let position = 0;
    let pending = Buffer.alloc(0);
    try {
      for (;;) {
        if (options.signal?.aborted) return;
        const end = Math.min(this.#eventsBytes, limit);
        if (position >= end) {
          if (!options.follow || this.#closed) return;
          await this.#grown(options.signal);
          continue;
        }
        const chunk = Buffer.alloc(Math.min(READ_CHUNK_BYTES, end - position));
        const { bytesRead } = await events.read(chunk, 0, chunk.length, position);
        position += bytesRead;
        pending =
          pending.length === 0
            ? chunk.subarray(0, bytesRead)
            : Buffer.concat([pending, chunk.subarray(0, bytesRead)]);
        let start = 0;
        for (let newline = pending.indexOf(10); newline >= 0; newline = pending.indexOf(10, start)) {
          const stored = JSON.parse(pending.subarray(start, newline).toString("utf8")) as StoredEvent;
          start = newline + 1;
          if (stored.type === "artifact") continue;
          if (stored.type !== "output") {
            yield { event: publicEvent(stored) };
            continue;
          }
          if (stored.length === 0) continue;
          const data = Buffer.alloc(stored.length);
          await output.read(data, 0, stored.length, stored.offset);
          yield {
            event: {
              type: "output",
              stepId: stored.stepId,
              stream: stored.stream,
              text: data.toString("utf8"),
              ...(stored.at !== undefined ? { at: stored.at } : {}),
            },
            data,
          };
        }
        pending = pending.subarray(start);
      }
    } finally {
      await events.close();
      await output.close();
    }
  }

  /**
   * Ends the log: nothing more is appended, followers finish what is stored and stop. Journal
   * lines still pending (a full disk) are written first, as soon as there is room.
   */
  close(): void {
    if (this.#closing) return;
    this.#closing = true;
    if (this.#pending.length === 0) this.#closeFiles();
  }

  #closeFiles(): void {
    this.#closed = true;
    clearInterval(this.#pendingTimer);
    closeSync(this.#outputFd);
    closeSync(this.#eventsFd);
    this.#watchers.clear();
    this.#wake();
  }

  #grown(signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        this.#wakers.delete(wake);
        signal?.removeEventListener("abort", wake);
        resolve();
      };
      this.#wakers.add(wake);
      signal?.addEventListener("abort", wake, { once: true });
    });
  }

  #wake(): void {
    for (const wake of [...this.#wakers]) wake();
  }
}

/** What a reader is shown of a stored event: the journal's bookkeeping fields left out. */
function publicEvent(stored: Exclude<StoredEvent, { type: "output" | "artifact" }>): JobEvent {
  if (stored.type === "step-start") {
    const { seq: _seq, attempt: _attempt, agentAt: _agentAt, ...event } = stored;
    return event;
  }
  if (stored.type === "step-end") {
    const { seq: _seq, attempt: _attempt, at: _at, stdoutBytes: _out, stderrBytes: _err, ...event } = stored;
    return event;
  }
  if (stored.type === "artifacts") {
    const { seq: _seq, ...event } = stored;
    return event;
  }
  return stored;
}

/**
 * An output event whose `text` is decoded from `data` (UTF-8) on first read, then kept: an
 * enumerable property like any other (spread and JSON.stringify see it), paid for only when used.
 */
function lazyOutputEvent(frame: {
  stepId: string;
  stream: OutputStream;
  data: Buffer;
  at?: string;
}): JobEvent {
  let text: string | undefined;
  const event = {
    type: "output",
    stepId: frame.stepId,
    stream: frame.stream,
    get text(): string {
      text ??= frame.data.toString("utf8");
      return text;
    },
    ...(frame.at !== undefined ? { at: frame.at } : {}),
  } as const;
  return event;
}

/** Cuts a file back to `length` bytes when it is longer (bytes written after the last commit). */
function repairLength(path: string, length: number): void {
  if (!existsSync(path)) {
    writeFileSync(path, "");
    return;
  }
  const fd = openSync(path, "r+");
  try {
    if (fstatSync(fd).size > length) ftruncateSync(fd, length);
  } finally {
    closeSync(fd);
  }
}

function writeAll(fd: number, data: Buffer): void {
  let written = 0;
  while (written < data.length) written += writeSync(fd, data, written, data.length - written);
}

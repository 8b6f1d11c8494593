import { StringDecoder } from "node:string_decoder";

/** One line of remoting's output, as the supervisor reads it. */
export interface RemotingRecord {
  stream: "stdout" | "stderr";
  /** java.util.logging's level for a log record (`INFO`, `WARNING`, `SEVERE`...), null for other lines. */
  level: string | null;
  /** The logging source (`hudson.remoting.jnlp.Main$CuiListener status`) from the record's header line. */
  source: string | null;
  text: string;
}

/** What remoting said about its connection. Refusals and failures keep remoting's own words. */
export interface RemotingState {
  version: string | null;
  connected: boolean;
  terminated: boolean;
  /** A refusal no retry can change (wrong secret, unknown agent, TCP port disabled...). */
  refusal: string | null;
  /** The last transient failure (unreachable, not ready...). */
  failure: string | null;
  /** remoting rejected its command line (it then exits 0). */
  usage: string | null;
  /** The last meaningful lines, for messages. */
  lastWords: string[];
  /** remoting logged at least one record (it runs: the JVM started it and it parsed its arguments). */
  logged: boolean;
  /** The last lines on stderr that were no log record: the JVM's own words when it cannot run remoting. */
  otherStderr: string[];
}

/** A date-and-source header line of java.util.logging's default format: `Mar 5, 2026 1:02:03 PM class method`. */
const RECORD_HEADER = /^[A-Z][a-z]{2} \d{1,2}, \d{4} \d{1,2}:\d{2}:\d{2} [AP]M (\S.*)$/;
const RECORD_TEXT = /^(SEVERE|WARNING|INFO|CONFIG|FINE|FINER|FINEST): (.*)$/;
const USAGE_LINE = "java -jar agent.jar [options...]";

/** Remoting's words for a refusal: the controller said no, and saying it again will not help. */
const REFUSALS: RegExp[] = [
  /Local headers refused by remote/,
  /Authorization failure/,
  /Unknown client name/,
  /is already connected/,
  /Handshake error/,
  /tcpSlaveAgentListener\/ is invalid: 4\d\d/,
  /or newer is required/,
  /is not Jenkins/,
  /missing instance-identity/,
  /invalid X-Instance-Identity/,
  /publishing an invalid port/,
];
/** Transient failures: the controller could not be reached (yet). */
const FAILURES: RegExp[] = [
  /Could not locate server/,
  /Failed to connect/,
  /is not ready/,
  /is not reachable/,
  /Connection refused/,
  /UnknownHost/,
  /timed out/i,
];
const LAST_WORDS = 8;
const OTHER_STDERR = 4;

/**
 * Follows remoting's output: splits it into lines (multibyte characters split across reads
 * survive), pairs java.util.logging's header lines with their text, and tracks the status lines
 * that tell how the connection goes (`Connected`, `Terminated`, refusals, usage errors).
 * `onRecord` receives every line (header lines folded into the record they introduce).
 */
export class RemotingLog {
  readonly state: RemotingState = {
    version: null,
    connected: false,
    terminated: false,
    refusal: null,
    failure: null,
    usage: null,
    lastWords: [],
    logged: false,
    otherStderr: [],
  };
  readonly #onRecord: (record: RemotingRecord) => void;
  readonly #onChange: (state: RemotingState) => void;
  readonly #decoders = { stdout: new StringDecoder("utf8"), stderr: new StringDecoder("utf8") };
  readonly #partial = { stdout: "", stderr: "" };
  readonly #header: Record<"stdout" | "stderr", string | null> = { stdout: null, stderr: null };
  #previousStderrLine = "";

  constructor(
    onRecord: (record: RemotingRecord) => void,
    onChange: (state: RemotingState) => void = () => {},
  ) {
    this.#onRecord = onRecord;
    this.#onChange = onChange;
  }

  write(stream: "stdout" | "stderr", data: Buffer): void {
    const text = this.#partial[stream] + this.#decoders[stream].write(data);
    const lines = text.split("\n");
    this.#partial[stream] = lines.pop() ?? "";
    for (const line of lines) this.#line(stream, line.replace(/\r$/, ""));
  }

  /** Flushes partial lines at the end of the process. */
  end(): void {
    for (const stream of ["stdout", "stderr"] as const) {
      const rest = this.#partial[stream] + this.#decoders[stream].end();
      this.#partial[stream] = "";
      if (rest !== "") this.#line(stream, rest);
      const header = this.#header[stream];
      if (header !== null) this.#emit({ stream, level: null, source: null, text: header });
      this.#header[stream] = null;
    }
  }

  #line(stream: "stdout" | "stderr", line: string): void {
    const header = RECORD_HEADER.exec(line);
    if (header) {
      const pending = this.#header[stream];
      if (pending !== null) this.#emit({ stream, level: null, source: null, text: pending });
      this.#header[stream] = line;
      return;
    }
    const source =
      this.#header[stream] === null ? null : (RECORD_HEADER.exec(this.#header[stream]!)?.[1] ?? null);
    this.#header[stream] = null;
    const record = RECORD_TEXT.exec(line);
    const entry: RemotingRecord = record
      ? { stream, level: record[1]!, source, text: record[2]! }
      : { stream, level: null, source, text: line };
    this.#emit(entry);
    if (stream === "stderr") {
      if (record === null && line.trim() !== "") {
        this.state.otherStderr.push(line.trim());
        if (this.state.otherStderr.length > OTHER_STDERR) this.state.otherStderr.shift();
      }
      if (line.trim() === USAGE_LINE && this.state.usage === null) {
        this.state.usage = this.#previousStderrLine.trim() || "remoting rejected its command line";
        this.#changed();
      }
      this.#previousStderrLine = line;
    }
    if (entry.level !== null) this.#status(entry.text, entry.level);
  }

  #status(text: string, level: string): void {
    const state = this.state;
    state.logged = true;
    const version = /^Using Remoting version: (\S+)/.exec(text);
    if (version) state.version = version[1]!;
    else if (text === "Connected") state.connected = true;
    else if (text === "Terminated") state.terminated = true;
    else if (!state.connected && REFUSALS.some((pattern) => pattern.test(text))) state.refusal = text;
    else if (!state.connected && FAILURES.some((pattern) => pattern.test(text))) state.failure = text;
    else if (level !== "SEVERE" && level !== "WARNING") return;
    state.lastWords.push(text);
    if (state.lastWords.length > LAST_WORDS) state.lastWords.shift();
    this.#changed();
  }

  #emit(record: RemotingRecord): void {
    if (record.text === "" && record.level === null) return;
    this.#onRecord(record);
  }

  #changed(): void {
    this.#onChange(this.state);
  }
}

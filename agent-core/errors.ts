import { clip } from "./clip.ts";

/**
 * Errors raised by the agent. Every error carries a stable `code` (documented in the README);
 * tests and callers branch on `code`, never on the wording of `message`.
 */
export type AgentErrorCode =
  | "AGENT_ERR_CONFIG"
  | "AGENT_ERR_PROTOCOL"
  | "AGENT_ERR_CONTROLLER_REFUSED"
  | "AGENT_ERR_CONTROLLER_UNREACHABLE"
  | "AGENT_ERR_CONNECTION_LOST"
  | "AGENT_ERR_ACK_TIMEOUT"
  | "AGENT_ERR_WORKSPACE"
  | "AGENT_ERR_IDLE_TIMEOUT"
  | "AGENT_ERR_NO_JAVA"
  | "AGENT_ERR_AGENT_JAR"
  | "AGENT_ERR_MASK_LIMIT"
  | "AGENT_ERR_IO"
  | "AGENT_ERR_INTERRUPTED"
  | "AGENT_ERR_INTERNAL"
  | ArchiveErrorCode;

/**
 * Why a tar stream was refused or could not be written or read. Each code names one rule of
 * safe extraction or transfer (README, "Workspaces, artifacts and caches").
 */
export type ArchiveErrorCode =
  /** An entry's path is absolute (`/etc/passwd`, `C:\\x`). */
  | "AGENT_ERR_ARCHIVE_ABSOLUTE_PATH"
  /** An entry's path has a `..` component. */
  | "AGENT_ERR_ARCHIVE_PARENT_PATH"
  /** An entry's path is empty, too long (4096 bytes, 255 per component) or too deep (1024 levels). */
  | "AGENT_ERR_ARCHIVE_BAD_PATH"
  /** A symbolic link's target is absolute, leaves the workspace, or uses `..` after its start. */
  | "AGENT_ERR_ARCHIVE_LINK_ESCAPE"
  /** A hard link's target is not a file written earlier by the same archive. */
  | "AGENT_ERR_ARCHIVE_HARDLINK"
  /** An entry would be written below a symbolic link. */
  | "AGENT_ERR_ARCHIVE_THROUGH_LINK"
  /** A character or block device. */
  | "AGENT_ERR_ARCHIVE_DEVICE"
  /** A named pipe (FIFO). */
  | "AGENT_ERR_ARCHIVE_FIFO"
  /** Any other entry type (sockets, GNU dump dirs, sparse files...). */
  | "AGENT_ERR_ARCHIVE_UNSUPPORTED_TYPE"
  /** The entries' sizes add up to more than the byte budget (the job's disk budget). */
  | "AGENT_ERR_ARCHIVE_TOO_LARGE"
  /** More entries than allowed. */
  | "AGENT_ERR_ARCHIVE_TOO_MANY_ENTRIES"
  /** Not a tar stream, a damaged header, a truncated stream, a bad compression layer. */
  | "AGENT_ERR_ARCHIVE_CORRUPT"
  /** The stream's SHA-256 or length differs from what the sender announced. */
  | "AGENT_ERR_ARCHIVE_CHECKSUM"
  /** The filesystem failed while an entry was written or read (permissions, no space left). */
  | "AGENT_ERR_ARCHIVE_IO"
  /** The transfer was stopped before its end (cancel, interrupt, deadline, the controller lost). */
  | "AGENT_ERR_ARCHIVE_ABORTED";

export class AgentError extends Error {
  readonly code: AgentErrorCode;

  constructor(code: AgentErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** One problem found while validating an input: the field, the rule it broke, and the value (masked when secret). */
export interface ConfigProblem {
  field: string;
  message: string;
}

/**
 * A {@link ConfigError} lists at most this many problems; the rest are counted. Inputs from
 * outside can carry any number (a 6 MB Lambda event holds some 400,000 unknown fields), and the
 * error travels in a log line and a Lambda error response.
 */
export const MAX_LISTED_PROBLEMS = 50;

/**
 * Launch inputs or configuration are invalid. Lists every problem at once, up to
 * {@link MAX_LISTED_PROBLEMS} (`omittedProblems` counts the others).
 */
export class ConfigError extends AgentError {
  readonly problems: ConfigProblem[];
  /** Problems found but not listed (beyond {@link MAX_LISTED_PROBLEMS}). */
  readonly omittedProblems: number;

  constructor(problems: ConfigProblem[], intro = "Invalid agent configuration") {
    // Field names can come from outside (an unknown event field, an option): never echoed whole.
    const clipped = problems
      .slice(0, MAX_LISTED_PROBLEMS)
      .map((p) => ({ field: clip(p.field, 200), message: clip(p.message, 2000) }));
    const omitted = problems.length - clipped.length;
    const lines = clipped.map((p) => `  - ${p.field}: ${p.message}`);
    if (omitted > 0) lines.push(`  ... and ${omitted} more problems`);
    super(
      "AGENT_ERR_CONFIG",
      `${intro} (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n${lines.join("\n")}`,
    );
    this.problems = clipped;
    this.omittedProblems = omitted;
  }
}

/** The peer broke protocol v1; `closeCode` is the WebSocket close code sent or received. */
export class ProtocolError extends AgentError {
  readonly closeCode: number;

  constructor(closeCode: number, message: string, options?: { cause?: unknown }) {
    super("AGENT_ERR_PROTOCOL", message, options);
    this.closeCode = closeCode;
  }
}

/** The controller answered the WebSocket upgrade with a refusal (missing headers, wrong secret, duplicate name, protocol version). */
export class ControllerRefusedError extends AgentError {
  readonly status: number;

  constructor(status: number, message: string) {
    super("AGENT_ERR_CONTROLLER_REFUSED", message);
    this.status = status;
  }
}

export class WorkspaceError extends AgentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("AGENT_ERR_WORKSPACE", message, options);
  }
}

/**
 * The agent could not read or write one of its own files (the output spool). `errno` is the
 * system's code (`ENOSPC`, `EIO`, ...) when there is one.
 */
export class AgentIoError extends AgentError {
  readonly errno: string | undefined;

  constructor(message: string, errno: string | undefined, options?: { cause?: unknown }) {
    super("AGENT_ERR_IO", message, options);
    this.name = "AgentIoError";
    this.errno = errno;
  }

  /** True when the filesystem is full (or the quota is used up). */
  get diskFull(): boolean {
    return this.errno === "ENOSPC" || this.errno === "EDQUOT";
  }
}

/**
 * A tar stream was refused (an unsafe entry, over a limit), is damaged, or could not be written.
 * `entry` names the offending entry's path as the archive gives it (null when no one entry is to
 * blame, e.g. a truncated stream).
 */
export class ArchiveError extends AgentError {
  declare readonly code: ArchiveErrorCode;
  readonly entry: string | null;

  constructor(code: ArchiveErrorCode, entry: string | null, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "ArchiveError";
    this.entry = entry;
  }
}

import type { ConfigProblem } from "../agent-core/index.ts";

export type ControllerErrorCode =
  | "CONTROLLER_ERR_INVALID_JOB"
  | "CONTROLLER_ERR_JOB_FILE"
  | "CONTROLLER_ERR_NOT_FOUND"
  | "CONTROLLER_ERR_BAD_REQUEST"
  | "CONTROLLER_ERR_CONFLICT"
  | "CONTROLLER_ERR_BAD_ARCHIVE"
  | "CONTROLLER_ERR_TOO_LARGE"
  | "CONTROLLER_ERR_UNREACHABLE"
  | "CONTROLLER_ERR_UNAUTHORIZED"
  | "CONTROLLER_ERR_FORBIDDEN"
  | "CONTROLLER_ERR_RATE_LIMITED"
  | "CONTROLLER_ERR_LISTEN"
  | "CONTROLLER_ERR_DATA_IN_USE"
  | "CONTROLLER_ERR_CONFIG"
  | "CONTROLLER_ERR_STORE"
  | "CONTROLLER_ERR_INTERNAL";

/** An error the HTTP API returns as `{ "error": { "code", "message", "problems" } }` with `status`. */
export class ControllerApiError extends Error {
  readonly status: number;
  readonly code: ControllerErrorCode;
  readonly problems: ConfigProblem[];
  /** HTTP headers the answer carries (`Retry-After`). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    status: number,
    code: ControllerErrorCode,
    message: string,
    problems: ConfigProblem[] = [],
    headers: Readonly<Record<string, string>> = {},
    options: { cause?: unknown } = {},
  ) {
    super(message, options);
    this.name = "ControllerApiError";
    this.status = status;
    this.code = code;
    this.problems = problems;
    this.headers = headers;
  }

  toJSON() {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.problems.length ? { problems: this.problems } : {}),
      },
    };
  }
}

/**
 * A write to the controller's store failed (no space left, an I/O error): `what` names what was
 * not stored, `error` is the file system's error (kept as `cause`). The writer keeps nothing of
 * what it could not store. Code `CONTROLLER_ERR_STORE`, HTTP 507 (Insufficient Storage).
 */
export function storeWriteError(what: string, error: unknown): ControllerApiError {
  return new ControllerApiError(
    507,
    "CONTROLLER_ERR_STORE",
    `the controller cannot store ${what}: ${describeFsError(error)}`,
    [],
    {},
    { cause: error },
  );
}

/**
 * The data dir cannot be used at start (full, not writable, read-only): `CONTROLLER_ERR_STORE`
 * naming the dir; an error that is not the file system's is returned as it is.
 */
export function dataDirError(dataDir: string, error: unknown): unknown {
  if (error instanceof ControllerApiError || typeof (error as NodeJS.ErrnoException).code !== "string")
    return error;
  return new ControllerApiError(
    507,
    "CONTROLLER_ERR_STORE",
    `the controller cannot use its data dir ${dataDir}: ${describeFsError(error)}`,
    [],
    {},
    { cause: error },
  );
}

const FS_ERRORS: Record<string, string> = {
  ENOSPC: "no space left in its data dir",
  EDQUOT: "the disk quota is exhausted",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EROFS: "the file system is read-only",
};

/** A file system error in words, with its code: `no space left in its data dir (ENOSPC)`. */
function describeFsError(error: unknown): string {
  const errno = (error as NodeJS.ErrnoException).code;
  const text = (errno !== undefined ? FS_ERRORS[errno] : undefined) ?? (error as Error).message;
  return `${text}${errno && !text.includes(errno) ? ` (${errno})` : ""}`;
}

/** Whether `error` is a store write failure (`storeWriteError`). */
export function isStoreWriteError(error: unknown): error is ControllerApiError {
  return error instanceof ControllerApiError && error.code === "CONTROLLER_ERR_STORE";
}

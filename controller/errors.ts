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
  | "CONTROLLER_ERR_LISTEN"
  | "CONTROLLER_ERR_CONFIG"
  | "CONTROLLER_ERR_STORE"
  | "CONTROLLER_ERR_INTERNAL";

/** An error the HTTP API returns as `{ "error": { "code", "message", "problems" } }` with `status`. */
export class ControllerApiError extends Error {
  readonly status: number;
  readonly code: ControllerErrorCode;
  readonly problems: ConfigProblem[];

  constructor(
    status: number,
    code: ControllerErrorCode,
    message: string,
    problems: ConfigProblem[] = [],
    options: { cause?: unknown } = {},
  ) {
    super(message, options);
    this.name = "ControllerApiError";
    this.status = status;
    this.code = code;
    this.problems = problems;
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
  const errno = (error as NodeJS.ErrnoException).code;
  return new ControllerApiError(
    507,
    "CONTROLLER_ERR_STORE",
    `the controller cannot store ${what}: ${errno === "ENOSPC" ? "no space left in its data dir" : (error as Error).message}${errno ? ` (${errno})` : ""}`,
    [],
    { cause: error },
  );
}

/** Whether `error` is a store write failure (`storeWriteError`). */
export function isStoreWriteError(error: unknown): error is ControllerApiError {
  return error instanceof ControllerApiError && error.code === "CONTROLLER_ERR_STORE";
}

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
  ) {
    super(message);
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

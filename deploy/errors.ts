/**
 * Errors of the deploy command. Every error carries a stable `code` (documented in
 * docs/deploy.md); tests and callers branch on `code`, never on the wording of `message`.
 */
export type DeployErrorCode =
  /** Bad arguments, or a serverless.yml the function names cannot be read from. */
  | "DEPLOY_ERR_USAGE"
  /** The zip or image URI to deploy is unusable (missing, not a zip, too large, no handler, wrong package type). */
  | "DEPLOY_ERR_ARTIFACT"
  /** Another deploy of the function holds its alias, or someone changed the alias or the function meanwhile. */
  | "DEPLOY_ERR_BUSY"
  /** An AWS call failed (access denied, not found, throttled past the retries, a failed code update). */
  | "DEPLOY_ERR_AWS"
  /** The new version failed its smoke check; the alias was kept on (or put back to) the previous version. */
  | "DEPLOY_ERR_SMOKE_FAILED"
  /** Interrupted (SIGINT, SIGTERM); the alias was put back to the previous version. */
  | "DEPLOY_ERR_INTERRUPTED"
  /** `rollback` has no version to go back to (none recorded, or the record does not match the alias). */
  | "DEPLOY_ERR_NOTHING_TO_ROLL_BACK"
  /** The alias could not be put back: it may point at an unchecked version. Act now. */
  | "DEPLOY_ERR_RESTORE_FAILED"
  /** A bug in the deploy command (the alias was still put back). */
  | "DEPLOY_ERR_INTERNAL";

export class DeployError extends Error {
  readonly code: DeployErrorCode;

  constructor(code: DeployErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DeployError";
    this.code = code;
  }
}

/** The deploy command's exit codes: one table, used by the help text and docs/deploy.md. */
export const DeployExit = {
  /** Every function deployed (or rolled back) as asked. */
  ok: 0,
  /** A new version failed its smoke check (or the deploy was interrupted): the alias is on the previous version. */
  failed: 1,
  /** Bad arguments or artifact; nothing was changed. */
  usage: 2,
  /** An AWS call failed; the alias was not moved, or was put back. */
  aws: 3,
  /** Another deploy of the function is in progress (or the alias changed under this one); nothing was changed. */
  busy: 4,
  /** The alias could not be put back to the previous version: check it now (`status`, `rollback`). */
  restoreFailed: 5,
  /** A bug in the deploy command. */
  internal: 70,
} as const;

export type DeployExitCode = (typeof DeployExit)[keyof typeof DeployExit];

/** The exit code of an error code. */
export function exitCodeOf(code: DeployErrorCode): DeployExitCode {
  switch (code) {
    case "DEPLOY_ERR_SMOKE_FAILED":
    case "DEPLOY_ERR_INTERRUPTED":
      return DeployExit.failed;
    case "DEPLOY_ERR_USAGE":
    case "DEPLOY_ERR_ARTIFACT":
    case "DEPLOY_ERR_NOTHING_TO_ROLL_BACK":
      return DeployExit.usage;
    case "DEPLOY_ERR_AWS":
      return DeployExit.aws;
    case "DEPLOY_ERR_BUSY":
      return DeployExit.busy;
    case "DEPLOY_ERR_RESTORE_FAILED":
      return DeployExit.restoreFailed;
    case "DEPLOY_ERR_INTERNAL":
      return DeployExit.internal;
  }
}

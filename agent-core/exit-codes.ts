/**
 * The agent's process exit codes: one table, shared by every wrapper and documented in the README.
 */
export const ExitCode = {
  /** The job ran and every step succeeded. */
  ok: 0,
  /** The job ran and failed: a step exited non-zero, timed out, was cancelled or could not start. */
  jobFailed: 1,
  /** Launch inputs or configuration are invalid; nothing was attempted. */
  badConfig: 2,
  /** The controller could not be reached, the connection was lost, or it broke the protocol. */
  controllerFailure: 3,
  /** The job was stopped before the platform's deadline (Lambda's timeout, the ECS maximum duration). */
  deadline: 4,
  /** A step exceeded the work dir's disk budget. */
  disk: 5,
  /** The controller refused this agent (wrong secret, unknown or duplicate name): never retried. */
  refused: 6,
  /** Connected, but no job arrived within the idle timeout. */
  idle: 7,
  /** A bug in the agent itself. */
  internal: 70,
  /** Stopped by SIGINT. */
  sigint: 130,
  /** Stopped by SIGTERM (ECS stop, Fargate Spot interruption). */
  sigterm: 143,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** The exit code of an interruption: 130 when `signal` was aborted for SIGINT, else 143 (SIGTERM, Lambda's backstop). */
export function interruptCode(signal: AbortSignal): typeof ExitCode.sigint | typeof ExitCode.sigterm {
  return signal.reason === "SIGINT" ? ExitCode.sigint : ExitCode.sigterm;
}

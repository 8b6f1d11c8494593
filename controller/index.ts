/** The reference controller's public face. */

export {
  type ApiAccess,
  type ApiAuth,
  apiAccess,
  authorize,
  checkListenSecurity,
  checkRequestSource,
  clientKey,
  DEFAULT_TOKEN_GUESS_LIMIT,
  MIN_TOKEN_CHARS,
  SESSION_COOKIE,
  sessionRoutes,
  sessionValue,
  TokenGuesses,
  type TokenGuessLimit,
} from "./auth.ts";
export { CLI_EXIT, exitCodeForJob } from "./cli.ts";
export { CLI_EXIT_MEANINGS, COMMAND_HELP } from "./cli-help.ts";
export { ControllerClient, describeConnectError } from "./client.ts";
export {
  type AgentInfo,
  Controller,
  type ControllerOptions,
  DEFAULT_INFRASTRUCTURE_RETRIES,
  DEFAULT_MAX_LOG_BYTES,
} from "./controller.ts";
export {
  CAUSE_WORDS,
  describeFailure,
  describeStepEnd,
  formatBytes,
  formatMs,
  REASON_WORDS,
} from "./describe.ts";
export { ControllerApiError, type ControllerErrorCode } from "./errors.ts";
export { API_ROUTES, type ControllerApi, type Route, type RouteContext } from "./http-api.ts";
export type {
  AttemptCause,
  AttemptRecord,
  FailureCause,
  JobEvent,
  JobReason,
  JobRecord,
  JobStatus,
  StepRecord,
  StepStatus,
} from "./job-record.ts";
export { type JobSubmission, nestingDepth, prepareJob, readJobFile } from "./job-spec.ts";
export {
  computeMetrics,
  type LatencySummary,
  type Metrics,
  type MetricsGroup,
  prometheusText,
  summarize,
} from "./metrics.ts";
export { LocalProvisioner, type LocalProvisionerOptions } from "./provisioners/local.ts";
export type {
  AgentExit,
  LaunchTemplate,
  ProvisionedAgent,
  Provisioner,
  ProvisionRequest,
} from "./provisioners/provisioner.ts";
export { type ColorTarget, colorEnabled, createRenderer, paint, renderOutcome } from "./render.ts";
export type { TlsFiles } from "./server.ts";
export { defaultWebDir, WEB_SECURITY_HEADERS, webViewRoutes } from "./web-assets.ts";

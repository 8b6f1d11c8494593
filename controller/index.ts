/** The reference controller's public face. */

export { CLI_EXIT, exitCodeForJob } from "./cli.ts";
export { ControllerClient } from "./client.ts";
export {
  type AgentInfo,
  Controller,
  type ControllerOptions,
  DEFAULT_INFRASTRUCTURE_RETRIES,
  DEFAULT_MAX_LOG_BYTES,
} from "./controller.ts";
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
} from "./job-record.ts";
export { type JobSubmission, nestingDepth, prepareJob, readJobFile } from "./job-spec.ts";
export { LocalProvisioner, type LocalProvisionerOptions } from "./provisioners/local.ts";
export type {
  AgentExit,
  LaunchTemplate,
  ProvisionedAgent,
  Provisioner,
  ProvisionRequest,
} from "./provisioners/provisioner.ts";
export { createRenderer } from "./render.ts";

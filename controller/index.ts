/** The reference controller's public face. */

export { CLI_EXIT, exitCodeForJob } from "./cli.ts";
export { ControllerClient } from "./client.ts";
export { type AgentInfo, Controller, type ControllerOptions } from "./controller.ts";
export { ControllerApiError, type ControllerErrorCode } from "./errors.ts";
export { API_ROUTES, type ControllerApi, type Route, type RouteContext } from "./http-api.ts";
export { type JobSubmission, prepareJob, readJobFile } from "./job-spec.ts";
export type { FailureCause, JobEvent, JobReason, JobRecord, JobStatus, StepRecord } from "./job-store.ts";
export {
  LocalProvisioner,
  type LocalProvisionerOptions,
  type ProvisionedAgent,
  type Provisioner,
  type ProvisionRequest,
} from "./provisioner.ts";
export { createRenderer } from "./render.ts";

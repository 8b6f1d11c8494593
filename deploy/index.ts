/** The deploy command's public face: safe rollout of the Lambda functions (dist/deploy.mjs). */
export { type Artifact, checkArtifactFits, imageArtifact, readZipArtifact } from "./artifact.ts";
export { type CliIo, DEPLOY_HELP, main, parseRolloutArgs, type RolloutCommand } from "./cli.ts";
export { DeployError, type DeployErrorCode, DeployExit, type DeployExitCode, exitCodeOf } from "./errors.ts";
export { awsError, createLambdaClient, type LambdaClientOptions } from "./lambda-api.ts";
export {
  type DeploymentRecord,
  decodeRecord,
  describeRecord,
  encodeRecord,
  holdExpired,
  MAX_DESCRIPTION_LENGTH,
  RECORD_TAG,
  type RecordState,
  recordTime,
} from "./record.ts";
export {
  type AliasStatus,
  aliasStatus,
  type DeployRequest,
  deployFunction,
  preflightDeploy,
  type RollbackRequest,
  type RolloutContext,
  type RolloutResult,
  rollbackFunction,
} from "./rollout.ts";
export { formatSmoke, type SmokeOutcome, type SmokeRequest, smokeCheck, smokeEvent } from "./smoke-check.ts";

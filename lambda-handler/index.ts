/** The Lambda handler's public face; the bundle (dist/lambda/handler.js) exports `handler`. */

export { type BootstrapIo, runBootstrap } from "./bootstrap.ts";
export {
  type AgentInvocation,
  EVENT_FIELDS,
  fromLambdaEvent,
  type Invocation,
  type LambdaEvent,
  type LambdaLaunch,
  lambdaEventSchema,
  MIN_RUN_MS,
  type SmokeInvocation,
} from "./event.ts";
export {
  DEFAULT_DEADLINE_MARGIN_MS,
  DEFAULT_SMOKE_TOOLS,
  type FunctionEnv,
  type FunctionSettings,
  HIDDEN_FROM_STEPS,
  readFunctionEnv,
} from "./function-env.ts";
export {
  type AgentHandler,
  createHandler,
  type HandlerOptions,
  handler,
  type InvocationResult,
  type InvocationSummary,
  type StepSummary,
} from "./handler.ts";
export {
  errorBody,
  MAX_ERROR_BODY_BYTES,
  MAX_RESPONSE_BYTES,
  type NextInvocation,
  parseRuntimeApi,
  RUNTIME_API_VERSION,
  RUNTIME_HEADERS,
  RuntimeApiClient,
  RuntimeApiError,
  type RuntimeErrorBody,
} from "./runtime-api.ts";
export {
  callHandler,
  contextFor,
  RuntimeInitError,
  type RuntimeLoopOptions,
  runRuntimeLoop,
} from "./runtime-loop.ts";
export {
  type CloudWatchFailure,
  cloudWatchFailureCause,
  probeController,
  type SmokeCheck,
  type SmokeFunctionInfo,
  type SmokeReport,
  SmokeTestFailedError,
} from "./smoke.ts";
export { layoutOf, type WorkDirLayout } from "./work-dir.ts";

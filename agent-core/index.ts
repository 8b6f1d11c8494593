/** The agent core's public face. Wrappers and the controller import only from here. */
export type { AgentOutcome, AgentTimings, RunAgentOptions } from "./agent.ts";
export { CLIP_CHARS, clip } from "./clip.ts";
export * from "./config/index.ts";
export * from "./errors.ts";
export * from "./exit-codes.ts";
export { formatBytes } from "./format.ts";
export * from "./jenkins/index.ts";
export { type JobOutcome, type JobSink, type OutputFlow, runJob, type StepOutcome } from "./job/run-job.ts";
export {
  type ArtifactChannel,
  type ArtifactOptions,
  artifactsDue,
  cacheRequestFor,
  type SeedOptions,
  seedFailureOutcome,
  seedWorkspace,
  uploadArtifacts,
  withArtifactsResult,
} from "./job/transfers.ts";
export { type DeadlinePlan, deadlineMessage, mayStartStep, msUntilStop } from "./limits/deadline.ts";
export { DiskWatcher, diskBudgetBytes, filesystemSpace, largestDirectories } from "./limits/disk-budget.ts";
export { GroupRssSampler, groupRssBytes } from "./limits/memory.ts";
export {
  createLogger,
  isLogLevel,
  type LogFields,
  type Logger,
  type LogLevel,
  silentLogger,
} from "./logger.ts";
export * from "./logs/cloudwatch/index.ts";
export { OutputFramer } from "./logs/framer.ts";
export { JobLogLines, type LineWriter } from "./logs/job-log-lines.ts";
export { type JobEventTarget, JobOutputTee } from "./logs/job-output.ts";
export {
  buildMaskSet,
  MASK,
  type MaskSet,
  MIN_SECRET_CHARS,
  maskText,
  maskVariants,
  StreamMasker,
} from "./logs/masker.ts";
export { type LongTimeout, MAX_TIMER_MS, setLongTimeout } from "./long-timer.ts";
export { isLoopbackHost } from "./net/loopback.ts";
export { awsProxyAgents, PROXY_VARIABLES, proxyFor, proxyProblems, tunnelAgentFor } from "./net/proxy.ts";
export * from "./protocol/index.ts";
export { type AgentRunOutcome, runAgent } from "./run-agent.ts";
export { type Command, commandArgv, runStep, type StepResult } from "./runner/run-step.ts";
export { sdkExports } from "./sdk-module.ts";
export {
  type ChannelEffect,
  type ChannelState,
  ChannelStateMachine,
  type ControllerInput,
  type LossAction,
  type WorkspaceData,
} from "./session/channel-state.ts";
export { FlowControl } from "./session/flow-control.ts";
export { INTERRUPT_REPORT_MS, signalExitMs } from "./session/job-channel.ts";
export { Outbox, type OutboxOptions } from "./session/outbox.ts";
export {
  type Interrupts,
  LAST_RESORT_SLACK_MS,
  type SignalTrap,
  type SignalTrapOptions,
  trapSignals,
} from "./signals.ts";
export { validateInput } from "./validation.ts";
export { AGENT_VERSION, PROTOCOL_VERSION } from "./version.ts";
export * from "./workspace/index.ts";

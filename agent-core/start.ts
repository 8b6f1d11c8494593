/**
 * The part of the agent core's public face a program needs to start the agent (the container
 * entrypoint, the Lambda handler): configuration, diagnostics, signals and `runAgent`. Everything here is also
 * exported by index.ts. It exists because esbuild's code splitting places a module in the chunk of
 * every entry that can reach its file, used or not: importing index.ts would load the Jenkins
 * supervisor, the job channel, the transfers and picomatch at start, although `runAgent` loads
 * them on demand (docs/performance.md, issue 16).
 */
export { CLIP_CHARS, clip } from "./clip.ts";
export * from "./config/index.ts";
export * from "./errors.ts";
export * from "./exit-codes.ts";
export * from "./jenkins/settings.ts";
export { diskBudgetBytes } from "./limits/disk-budget.ts";
export { createLogger, isLogLevel, type LogFields, type Logger, type LogLevel } from "./logger.ts";
export { type CloudWatchSettings, readCloudWatchSettings } from "./logs/cloudwatch/settings.ts";
export { buildMaskSet, MIN_SECRET_CHARS, maskText } from "./logs/masker.ts";
export { proxyProblems } from "./net/proxy.ts";
export { MAX_DURATION_MS, RUNTIME_KINDS, type RuntimeKind } from "./protocol/messages.ts";
export { type AgentRunOutcome, runAgent } from "./run-agent.ts";
export { type Interrupts, trapSignals } from "./signals.ts";
export { validateInput } from "./validation.ts";
export { AGENT_VERSION } from "./version.ts";

/** Jenkins mode: supervising the controller's own remoting agent.jar. */
export { type AgentJar, AgentJarError, controllerKey, inspectJar, obtainAgentJar } from "./agent-jar.ts";
export {
  type CdsPlan,
  FAST_START_FLAGS,
  heapFor,
  planClassDataSharing,
  type RemotingCommandInput,
  remotingCommand,
} from "./command-line.ts";
export { type ControllerKind, detectController, discoveryUrl } from "./discovery.ts";
export { findJava, JAVA_ADVICE, type JavaRuntime, NoJavaError } from "./java.ts";
export { type LimitedRunOptions, type LimitedRunResult, type RunLimited, runLimited } from "./limited-run.ts";
export { memoryMb } from "./memory.ts";
export { type RemotingOutcome, type RemotingRun, remotingOutcome } from "./outcome.ts";
export { RemotingLog, type RemotingRecord, type RemotingState } from "./remoting-log.ts";
export * from "./settings.ts";
export {
  type JenkinsAgentOptions,
  type JenkinsOutcome,
  type JenkinsRunReport,
  runJenkinsAgent,
} from "./supervisor.ts";

/** Jenkins mode: supervising the controller's own remoting agent.jar. */
export {
  type AgentJar,
  AgentJarError,
  askForAgentJar,
  bakedJar,
  controllerKey,
  fallbackJar,
  inspectJar,
  type JarAnswer,
  type JarCache,
  readJarCache,
} from "./agent-jar.ts";
export { ArgsGate } from "./args-gate.ts";
export {
  type CdsPlan,
  FAST_START_FLAGS,
  heapFor,
  planClassDataSharing,
  type RemotingCommandInput,
  remotingCommand,
} from "./command-line.ts";
export { getUrl, underController, untilAnswered } from "./discovery.ts";
export { findJava, JAVA_ADVICE, type JavaRuntime, NoJavaError } from "./java.ts";
export { type LimitedRunOptions, type LimitedRunResult, type RunLimited, runLimited } from "./limited-run.ts";
export { memoryMb } from "./memory.ts";
export { failureExitCode, type RemotingOutcome, type RemotingRun, remotingOutcome } from "./outcome.ts";
export { RemotingLog, type RemotingRecord, type RemotingState } from "./remoting-log.ts";
export * from "./settings.ts";
export {
  type JenkinsAgentOptions,
  type JenkinsOutcome,
  type JenkinsResult,
  type JenkinsRunReport,
  runJenkinsAgent,
} from "./supervisor.ts";

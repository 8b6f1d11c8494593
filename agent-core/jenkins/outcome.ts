import { AgentError, type AgentErrorCode } from "../errors.ts";
import { ExitCode, type ExitCodeValue } from "../exit-codes.ts";
import type { RuntimeKind, StepReason } from "../protocol/messages.ts";
import type { RemotingState } from "./remoting-log.ts";

/** How the remoting process ended, as the runner and the supervisor's own watch saw it. */
export interface RemotingRun {
  /** The runner's reason: `exit` (by itself), `deadline`, `disk`, `interrupted`, `cancelled` (stopped by the supervisor), `error` (could not start). */
  reason: StepReason;
  exitCode: number | null;
  signal: string | null;
  /** The runner's explanation (disk budget, could not start). */
  message?: string;
  /** Why the supervisor stopped remoting itself, when it did. */
  stoppedBecause?: "refused" | "connect-timeout" | "lingered";
  /** False when remoting was never started (too little time was left before the deadline). */
  started?: boolean;
}

export interface OutcomeContext {
  url: string;
  connectTimeoutMs: number;
  runtime: RuntimeKind;
  deadlineAt: number | null;
  graceMs: number;
  /** The signal that interrupted the agent (SIGTERM, SIGINT), when one did. */
  interruptedBy: string | null;
}

export interface RemotingOutcome {
  exitCode: ExitCodeValue;
  summary: string;
  error?: AgentError;
}

/**
 * The agent's outcome for a remoting run. Remoting's exit code is not its outcome (usage errors
 * and rejected handshakes exit 0): what it said on stderr decides, then the limits that stopped it.
 *
 * | remoting                                     | exit code                 |
 * | -------------------------------------------- | ------------------------- |
 * | connected, the controller closed the channel | 0 ok                      |
 * | connected, ended otherwise                   | 3 (connection lost)       |
 * | never connected: refused                     | 6 refused                 |
 * | never connected: unreachable, or gave up     | 3 (unreachable)           |
 * | never logged: java could not run it          | 2 bad config / no Java    |
 * | rejected its command line                    | 2 bad config              |
 * | stopped at the deadline                      | 4 deadline                |
 * | stopped over the disk budget                 | 5 disk                    |
 * | stopped by SIGTERM / SIGINT                  | 143 / 130                 |
 * | could not start (no usable java)             | 2 bad config              |
 */
export function remotingOutcome(
  run: RemotingRun,
  state: RemotingState,
  ctx: OutcomeContext,
): RemotingOutcome {
  const words = (fallback: string) =>
    state.lastWords.length > 0 ? state.lastWords.slice(-3).join(" / ") : fallback;
  switch (run.reason) {
    case "deadline":
      return {
        exitCode: ExitCode.deadline,
        summary: deadlineSummary(ctx, run.started === false ? "not-started" : state.connected),
      };
    case "disk":
      return {
        exitCode: ExitCode.disk,
        summary: `remoting was stopped over the disk budget: ${run.message ?? "the work dir's filesystem is full"}`,
      };
    case "interrupted": {
      const signal = ctx.interruptedBy ?? "SIGTERM";
      return {
        exitCode: signal === "SIGINT" ? ExitCode.sigint : ExitCode.sigterm,
        summary: `remoting was stopped by ${signal}${state.connected ? " while connected to the controller" : ""}`,
      };
    }
    case "error": {
      const error = new AgentError(
        "AGENT_ERR_NO_JAVA",
        `remoting could not start: ${run.message ?? "spawn failed"}`,
      );
      return { exitCode: ExitCode.badConfig, summary: error.message, error };
    }
    default:
      break;
  }
  if (state.connected) {
    if (state.terminated) {
      return {
        exitCode: ExitCode.ok,
        summary: `remoting connected to ${ctx.url} and served it until the controller closed the channel`,
      };
    }
    const how = run.signal !== null ? `signal ${run.signal}` : `exit code ${run.exitCode}`;
    const error = new AgentError(
      "AGENT_ERR_CONNECTION_LOST",
      `remoting ended (${how}) after connecting, before the controller closed the channel: ${words("no last words")}`,
    );
    return { exitCode: ExitCode.controllerFailure, summary: error.message, error };
  }
  if (state.usage !== null) {
    const error = new AgentError(
      "AGENT_ERR_CONFIG",
      `remoting rejected its command line: ${state.usage} (check REMOTING_OPTS and the remoting options given)`,
    );
    return { exitCode: ExitCode.badConfig, summary: error.message, error };
  }
  if (state.refusal !== null) {
    const error = new AgentError(
      "AGENT_ERR_CONTROLLER_REFUSED",
      `the Jenkins controller at ${ctx.url} refused the agent: ${state.refusal}${hintFor(state.refusal)}`,
    );
    return { exitCode: ExitCode.refused, summary: error.message, error };
  }
  if (!state.logged && run.stoppedBecause === undefined) {
    // It never logged a record: the JVM could not run remoting (a bad JVM option, a Java too old
    // for the jar), and its own words say why. Not the controller's doing.
    const said = state.otherStderr.length > 0 ? state.otherStderr.join(" / ") : "it said nothing";
    const how = run.signal !== null ? `signal ${run.signal}` : `exit code ${run.exitCode}`;
    if (BAD_JAR.test(said)) {
      const error = new AgentError(
        "AGENT_ERR_AGENT_JAR",
        `java could not run remoting (${run.signal !== null ? `signal ${run.signal}` : `exit code ${run.exitCode}`}): ${said} (the jar is damaged or gone: remove it, or the work dir's cache/jenkins, to have it fetched again)`,
      );
      return { exitCode: ExitCode.controllerFailure, summary: error.message, error };
    }
    const jvmOptions = JVM_REFUSED_OPTIONS.test(said);
    const error = new AgentError(
      jvmOptions ? "AGENT_ERR_CONFIG" : "AGENT_ERR_NO_JAVA",
      `java could not run remoting (${how}): ${said} (${
        jvmOptions
          ? "check the JVM options in JENKINS_JAVA_OPTS or JAVA_OPTS"
          : "remoting needs Java 17 or newer: check JENKINS_JAVA_BIN and JAVA_HOME, or use the image's Jenkins variant"
      })`,
    );
    return { exitCode: ExitCode.badConfig, summary: error.message, error };
  }
  const said = state.failure ?? words("it said nothing");
  const how =
    run.stoppedBecause === "connect-timeout"
      ? `did not connect within ${ctx.connectTimeoutMs} ms`
      : `exited (${run.signal !== null ? `signal ${run.signal}` : `code ${run.exitCode}`}) before connecting`;
  const error = new AgentError(
    "AGENT_ERR_CONTROLLER_UNREACHABLE",
    `remoting ${how} to ${ctx.url}: ${said}${hintFor(said)}`,
  );
  return { exitCode: ExitCode.controllerFailure, summary: error.message, error };
}

/** The JVM's words when it refuses its own options (before any class is loaded). */
const JVM_REFUSED_OPTIONS =
  /Could not create the Java Virtual Machine|Unrecognized (VM )?option|Improperly specified VM option|Invalid (initial|maximum)? ?heap size/;

/** The java launcher's words for a jar it cannot open. */
const BAD_JAR = /Invalid or corrupt jarfile|Unable to access jarfile/;

const HINTS: [RegExp, string][] = [
  [
    /tcpSlaveAgentListener\/ is invalid: 404/,
    "the controller's TCP agent port is disabled: enable it (Manage Jenkins > Security > Agents) or connect over WebSocket (JENKINS_WEB_SOCKET=true)",
  ],
  [
    /is not reachable on host/,
    "the agent port is not reachable from here (a firewall or security group): open it, set JENKINS_TUNNEL, or connect over WebSocket (JENKINS_WEB_SOCKET=true)",
  ],
  [
    /Handshake error/,
    "the controller rejected the WebSocket handshake: the node may not exist (single-use nodes are removed once used), the secret may not match it, or WebSocket agents may be off",
  ],
  [
    /Unknown client name/,
    "Jenkins has no node of this name (a single-use node already removed, or a mistyped name)",
  ],
  [/Authorization failure|Local headers refused/, "the secret does not match the node's"],
  [
    /or newer is required/,
    "the controller needs a newer remoting than this agent.jar: the controller did not serve its own, and JENKINS_AGENT_FILE is older",
  ],
  [/is not ready|Connection refused|Failed to connect/, "check the URL and that the controller is up"],
];

function hintFor(text: string): string {
  const hint = HINTS.find(([pattern]) => pattern.test(text))?.[1];
  return hint === undefined ? "" : ` (${hint})`;
}

/**
 * The exit code of a Jenkins-mode failure before remoting ran, by its error code: configuration
 * and Java problems 2, a bug 70, the controller or its jar 3.
 */
export function failureExitCode(code: AgentErrorCode): ExitCodeValue {
  if (code === "AGENT_ERR_NO_JAVA" || code === "AGENT_ERR_CONFIG") return ExitCode.badConfig;
  if (code === "AGENT_ERR_INTERNAL") return ExitCode.internal;
  return ExitCode.controllerFailure;
}

function deadlineSummary(ctx: OutcomeContext, connected: boolean | "not-started"): string {
  const at = ctx.deadlineAt === null ? "" : ` (${new Date(ctx.deadlineAt).toISOString()})`;
  const what =
    connected === "not-started"
      ? `remoting was not started: less than AGENT_DEADLINE_STEP_START_MIN_MS remained before the agent must stop (the deadline less AGENT_GRACE_MS, ${ctx.graceMs} ms)`
      : connected
        ? `remoting was stopped (SIGTERM, then SIGKILL after ${ctx.graceMs} ms); Jenkins sees the agent go offline and fails the build running on it`
        : "remoting was stopped before it connected";
  if (ctx.runtime === "lambda") {
    return `The Lambda function's deadline${at} ended the Jenkins agent: ${what}, before Lambda's timeout would have killed it without a word. To fix it: raise the function's timeout (at most 900 s), split the job into shorter ones, or give its label to an ECS/Fargate agent template, which has no such limit.`;
  }
  return `The agent's maximum duration (AGENT_MAX_DURATION_MS)${at} ended the Jenkins agent: ${what}. To fix it: raise that limit or split the job into shorter ones.`;
}

import type { AgentOutcome, RunAgentOptions } from "./agent.ts";
import type { AgentConfig } from "./config/config.ts";
import type { JenkinsRunReport } from "./jenkins/supervisor.ts";
import { type JobLogCopy, openJobLogCopy } from "./logs/job-log.ts";
import { buildMaskSet, maskText } from "./logs/masker.ts";

/** How a run of the agent ended, and in which mode it ran. */
export interface AgentRunOutcome extends AgentOutcome {
  /** The mode the agent ran in (`auto` resolved); null when it could not tell (controller unreachable). */
  mode: "native" | "jenkins" | null;
  /** Jenkins mode: the jar, java, remoting's version and connection, class-data sharing. */
  jenkins?: JenkinsRunReport;
}

/**
 * Runs the agent once in the configured mode. `native` speaks protocol v1 to the reference
 * controller; `jenkins` supervises the controller's own remoting agent.jar; `auto` (the default)
 * asks the controller once, for its agent.jar (`GET <url>jnlpJars/agent.jar`): Jenkins answers
 * every request with `X-Jenkins`, and that answer gives (or revalidates) the jar too; any other
 * answer means the reference controller (native). A `ws(s)://` URL is native without a request. Whatever the mode: the secret is masked in every diagnostic from the start, the
 * CloudWatch copy of the log (when on) is flushed before returning, and the process is kept alive
 * until the outcome is decided (a ref'd handle), so that it can never end early with no exit code
 * because everything pending waits on unref'd timers. Never throws for expected failures; the
 * outcome carries the exit code.
 *
 * @example
 * const outcome = await runAgent(parseAgentConfig(input), { logger, signal });
 * process.exitCode = outcome.exitCode;
 */
export async function runAgent(config: AgentConfig, options: RunAgentOptions): Promise<AgentRunOutcome> {
  const keepAlive = setInterval(() => {}, 1 << 30);
  try {
    const agentMask = buildMaskSet([config.secret], options.logger);
    const logger = options.logger.redacting((line) => maskText(line, agentMask));
    // The log copy's SDK loads in the background while the agent connects.
    const copy = options.cloudWatch
      ? openJobLogCopy(options.cloudWatch.settings, logger, options.cloudWatch.clientConfig)
      : undefined;
    const flushMs = options.logFlushTimeoutMs ?? 5_000;
    // The run ends early enough to leave the log copy its flush before `returnBy`.
    const returnBy = options.returnBy === undefined ? undefined : options.returnBy - (copy ? flushMs : 0);
    const outcome = await runInMode(config, { ...options, logger, ...(returnBy ? { returnBy } : {}) }, copy);
    if (copy === undefined) return outcome;
    const leftMs = options.returnBy === undefined ? flushMs : options.returnBy - Date.now();
    const summary = await copy.close(Math.max(0, Math.min(flushMs, leftMs)));
    return { ...outcome, logs: { ...copy.location, summary } };
  } finally {
    clearInterval(keepAlive);
  }
}

async function runInMode(
  config: AgentConfig,
  options: RunAgentOptions,
  copy: JobLogCopy | undefined,
): Promise<AgentRunOutcome> {
  const { logger } = options;
  const protocol = new URL(config.url).protocol;
  if (
    config.mode === "jenkins" ||
    (config.mode === "auto" && (protocol === "http:" || protocol === "https:"))
  ) {
    // Auto mode asks the controller for its agent.jar: Jenkins answers every request with
    // X-Jenkins, and then the same answer gives (or confirms) the jar. Loaded on demand: a
    // ws(s):// start (and the Lambda handler's import) does not parse the supervisor.
    const { runJenkinsAgent } = await import("./jenkins/supervisor.ts");
    const result = await runJenkinsAgent(config, { ...options, auto: config.mode === "auto" }, copy);
    if (result.mode !== "native") return { ...result.outcome, mode: result.mode };
    logger.info("mode detected", { mode: "native", how: result.how, url: config.url });
  } else if (config.mode === "auto") {
    logger.info("mode detected", {
      mode: "native",
      how: `${protocol}// URL (Jenkins is reached over http(s))`,
    });
  }
  // Loaded on demand: a Jenkins start does not parse the native agent's code (ws, the job channel).
  const { runNativeAgent } = await import("./agent.ts");
  return { ...(await runNativeAgent(config, options, copy)), mode: "native" };
}

import { type AgentOutcome, type RunAgentOptions, runNativeAgent } from "./agent.ts";
import type { AgentConfig } from "./config/config.ts";
import { AgentError } from "./errors.ts";
import { ExitCode, interruptCode } from "./exit-codes.ts";
import { detectController } from "./jenkins/discovery.ts";
import { type JenkinsRunReport, runJenkinsAgent } from "./jenkins/supervisor.ts";
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
 * asks the controller once (`GET <url>agents/v1/discovery`: Jenkins answers every request with
 * `X-Jenkins`). Whatever the mode: the secret is masked in every diagnostic from the start, the
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
    // The log copy's SDK loads while the agent connects (native) or once remoting runs (Jenkins:
    // loading it would slow remoting's start).
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
  let mode = config.mode;
  let jenkinsVersion: string | undefined;
  if (mode === "auto") {
    const startedAt = Date.now();
    try {
      const found = await detectController(config.url, {
        timeoutMs: config.connectTimeoutMs,
        logger,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      mode = found.kind;
      if (found.kind === "jenkins") jenkinsVersion = found.jenkinsVersion;
      logger.info("mode detected", { mode, how: found.how, url: config.url });
    } catch (error) {
      const outcome = notDetected(error, options.signal, startedAt);
      logger.error("agent finished", {
        exitCode: outcome.exitCode,
        summary: outcome.summary,
        code: outcome.error?.code,
      });
      return outcome;
    }
  }
  if (mode === "jenkins") {
    const outcome = await runJenkinsAgent(
      config,
      { ...options, ...(jenkinsVersion !== undefined ? { jenkinsVersion } : {}) },
      copy,
    );
    return { ...outcome, mode: "jenkins" };
  }
  return { ...(await runNativeAgent(config, options, copy)), mode: "native" };
}

/** The outcome when `auto` could not ask the controller what it is. */
function notDetected(error: unknown, signal: AbortSignal | undefined, startedAt: number): AgentRunOutcome {
  const timings = { startedAt, endedAt: Date.now() };
  if (signal?.aborted) {
    const summary = "interrupted while asking the controller what it is";
    return {
      exitCode: interruptCode(signal),
      summary,
      error: new AgentError("AGENT_ERR_INTERRUPTED", summary, { cause: error }),
      timings,
      mode: null,
    };
  }
  const agentError =
    error instanceof AgentError
      ? error
      : new AgentError("AGENT_ERR_INTERNAL", String(error), { cause: error });
  return {
    exitCode: ExitCode.controllerFailure,
    summary: agentError.message,
    error: agentError,
    timings,
    mode: null,
  };
}

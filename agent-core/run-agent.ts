import { type AgentOutcome, type RunAgentOptions, runAgent as runNativeAgent } from "./agent.ts";
import type { AgentConfig } from "./config/config.ts";
import { AgentError } from "./errors.ts";
import { ExitCode } from "./exit-codes.ts";
import { detectController } from "./jenkins/discovery.ts";
import { type JenkinsRunReport, runJenkinsAgent } from "./jenkins/supervisor.ts";
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
 * `X-Jenkins`). Never throws for expected failures; the outcome carries the exit code.
 *
 * @example
 * const outcome = await runAgent(parseAgentConfig(input), { logger, signal });
 * process.exitCode = outcome.exitCode;
 */
export async function runAgent(config: AgentConfig, options: RunAgentOptions): Promise<AgentRunOutcome> {
  const mask = buildMaskSet([config.secret]);
  const logger = options.logger.redacting((line) => maskText(line, mask));
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
      const agentError =
        error instanceof AgentError
          ? error
          : new AgentError("AGENT_ERR_INTERNAL", String(error), { cause: error });
      const interrupted = options.signal?.aborted === true;
      const outcome: AgentRunOutcome = {
        exitCode: interrupted
          ? options.signal?.reason === "SIGINT"
            ? ExitCode.sigint
            : ExitCode.sigterm
          : ExitCode.controllerFailure,
        summary: interrupted ? "interrupted while asking the controller what it is" : agentError.message,
        ...(interrupted ? {} : { error: agentError }),
        timings: { startedAt, endedAt: Date.now() },
        mode: null,
      };
      logger.error("agent finished", {
        exitCode: outcome.exitCode,
        summary: outcome.summary,
        code: agentError.code,
      });
      return outcome;
    }
  }
  if (mode === "jenkins") {
    return {
      ...(await runJenkinsAgent(config, {
        ...options,
        logger,
        ...(jenkinsVersion !== undefined ? { jenkinsVersion } : {}),
      })),
      mode: "jenkins",
    };
  }
  return { ...(await runNativeAgent(config, options)), mode: "native" };
}

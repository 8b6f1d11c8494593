import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import {
  AGENT_VERSION,
  ConfigError,
  createLogger,
  ExitCode,
  type Logger,
  runAgent,
  trapSignals,
} from "../agent-core/start.ts";
import { HELP_TEXT, type LaunchPlan, parseLaunch } from "./launch-args.ts";
import { type ReadLaunchFd, takeLaunch } from "./launch-pipe.ts";
import type { ScrubResult } from "./secret-scrub.ts";

export interface EntrypointIo {
  argv: string[];
  env: Readonly<Record<string, string | undefined>>;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /**
   * Overwrites the secrets where steps could read them about this process (the real
   * entrypoint passes scrubSecretsFromProc; tests running in-process pass none).
   */
  scrubSecrets?: (secrets: readonly string[]) => ScrubResult;
  /**
   * Reads the launch pipe that `AGENT_LAUNCH_FD` names (launch-pipe.ts: the image's entrypoint
   * hands the arguments and the secret's variables over that way); without it, a launch with
   * `AGENT_LAUNCH_FD` set is refused.
   */
  readLaunchFd?: ReadLaunchFd;
}

/**
 * The container entrypoint: parses the launch form (Jenkins images' forms included), runs the
 * agent, and resolves with the process exit code. Installs SIGTERM/SIGINT handlers while it runs:
 * the first signal interrupts the job (reported `interrupted`), a second one exits at once.
 */
export async function runEntrypoint(io: EntrypointIo): Promise<number> {
  let plan: ReturnType<typeof parseLaunch>;
  let env: Record<string, string | undefined>;
  try {
    const launch = takeLaunch(io.argv, io.env, io.readLaunchFd ?? refuseLaunchFd);
    env = launch.env;
    plan = parseLaunch(launch.argv, launch.env, (path) => readFileSync(path, "utf8"));
  } catch (error) {
    if (error instanceof ConfigError) {
      io.stderr(`agent: ${error.message}\n\nRun with --help for the launch forms.\n`);
      return ExitCode.badConfig;
    }
    throw error;
  }
  switch (plan.kind) {
    case "help":
      io.stdout(HELP_TEXT);
      return ExitCode.ok;
    case "version":
      io.stdout(`${AGENT_VERSION}\n`);
      return ExitCode.ok;
    case "exec":
      return execCommand(plan.argv, env);
    case "agent":
      return runWithSignals(plan, io);
  }
}

async function runWithSignals(
  plan: Extract<LaunchPlan, { kind: "agent" }>,
  io: EntrypointIo,
): Promise<number> {
  const { config, logLevel: level, ignored, cloudWatch } = plan;
  const logger: Logger = createLogger({ level, write: io.stderr, fields: { agent: config.name } });
  if (ignored.length > 0) logger.debug("remoting options accepted without effect", { options: ignored });
  if (io.scrubSecrets !== undefined) hideSecret(io.scrubSecrets(plan.secrets), logger);
  if (process.pid === 1) {
    logger.warn(
      "running as PID 1 without an init: orphaned grandchildren of steps will not be reaped; run under tini (the image does) or set initProcessEnabled in the ECS task definition",
    );
  }
  const trap = trapSignals({ logger, shutdownBudgetMs: config.graceMs + config.drainMs });
  try {
    if (cloudWatch.enabled) {
      // The SDK warns in plain text on Node < 22, which would break the JSON-lines diagnostics.
      process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
    }
    const outcome = await runAgent(config, {
      logger,
      signal: trap.signal,
      killNow: trap.killNow,
      cloudWatch: { settings: cloudWatch },
    });
    return outcome.exitCode;
  } finally {
    trap.dispose();
  }
}

/** Says what the scrub of the secret left readable (or could not do), and what to do about it. */
function hideSecret(result: ScrubResult, logger: Logger): void {
  if (result.error !== undefined) {
    logger.warn("could not overwrite the agent's secret in this process's memory", { error: result.error });
  }
  if (result.stillReadable.length > 0) {
    logger.warn(
      "the agent's secret stays readable by steps in these /proc files; give it as a file instead (-secret @FILE or JENKINS_SECRET=@FILE)",
      { files: result.stillReadable },
    );
  } else if (result.overwritten > 0) {
    logger.debug("the agent's secret was overwritten in /proc/<pid>/environ and cmdline", {
      copies: result.overwritten,
    });
  }
}

function refuseLaunchFd(): never {
  throw new Error("this entrypoint takes no launch pipe");
}

/**
 * The jenkins-agent behaviour: a single non-option argument is run as a command, with the
 * entrypoint's environment as given (the variables the image's entrypoint moved included).
 */
function execCommand(argv: string[], env: Record<string, string | undefined>): Promise<number> {
  return new Promise((resolve) => {
    const [file, ...args] = argv;
    const child = spawn(file!, args, { stdio: "inherit", env });
    child.once("error", (error) => {
      process.stderr.write(`agent: cannot run ${JSON.stringify(file)}: ${error.message}\n`);
      resolve(127);
    });
    child.once("exit", (code, signal) => resolve(code ?? (signal === "SIGINT" ? 130 : 143)));
  });
}

import { mkdir } from "node:fs/promises";
import { arch, platform } from "node:os";
import { join } from "node:path";
import type { AgentConfig } from "./config/config.ts";
import { AgentError, ControllerRefusedError } from "./errors.ts";
import { ExitCode, type ExitCodeValue, interruptCode } from "./exit-codes.ts";
import { type JobOutcome, runJob } from "./job/run-job.ts";
import type { TransferPhasesResult } from "./job/transfer-phases.ts";
import { type DeadlinePlan, msUntilStop } from "./limits/deadline.ts";
import { diskBudgetBytes } from "./limits/disk-budget.ts";
import type { Logger } from "./logger.ts";
import type { CloudWatchSettings } from "./logs/cloudwatch/settings.ts";
import type { CloudWatchSinkSummary, CreateCloudWatchSinkOptions } from "./logs/cloudwatch/sink.ts";
import type { JobLogCopy, JobLogLocation } from "./logs/job-log.ts";
import { JobOutputTee } from "./logs/job-output.ts";
import { buildMaskSet, maskText } from "./logs/masker.ts";
import { CloseCode } from "./protocol/close-codes.ts";
import type { Hello, Job } from "./protocol/messages.ts";
import { StepPipes } from "./runner/step-pipes.ts";
import { JobChannel } from "./session/job-channel.ts";
import type { SessionClose } from "./session/session.ts";
import { AGENT_VERSION } from "./version.ts";
import type { CacheStore } from "./workspace/caches.ts";
import { createWorkspace, removeWorkspace } from "./workspace/workspace.ts";

export interface RunAgentOptions {
  logger: Logger;
  /**
   * Aborting interrupts the agent (the wrapper does it on SIGTERM/SIGINT): connecting ends at
   * once, and the running step is stopped and reported `interrupted`. `signal.reason` names the
   * signal ("SIGINT" or "SIGTERM").
   */
  signal?: AbortSignal;
  /** Aborting after `signal` kills the running step at once, without the grace period (a second signal). */
  killNow?: AbortSignal;
  /** Where to copy the job's log (read by the wrapper from the environment: cloudWatchSettings). */
  cloudWatch?: { settings: CloudWatchSettings; clientConfig?: CreateCloudWatchSinkOptions["clientConfig"] };
  /** How long the log copy may take to flush at the end (bounded by the platform's margin). */
  logFlushTimeoutMs?: number;
  /**
   * Epoch ms by which `runAgent` must have returned, whatever the controller does (Lambda: the
   * invocation's end less a reserve for the summary). Connecting, resuming, the wait for the
   * job-end ack and the log flush are all cut short to end by then.
   */
  returnBy?: number;
  /**
   * The warm caches of this process (root `<workDir>/caches`): a wrapper that runs several jobs in
   * one process (the Lambda handler) keeps one store for all of them. Without it, each run has a
   * store of its own, which keeps nothing from an earlier run.
   */
  caches?: CacheStore;
}

export interface AgentTimings {
  startedAt: number;
  connectedAt?: number;
  jobStartedAt?: number;
  jobEndedAt?: number;
  endedAt?: number;
}

/** How a run of the agent ended: the exit code to use and what it is based on. */
export interface AgentOutcome {
  exitCode: ExitCodeValue;
  summary: string;
  jobId?: string;
  job?: JobOutcome;
  error?: AgentError;
  timings: AgentTimings;
  /** The CloudWatch copy of the job log: where it is, and what became of its lines. */
  logs?: JobLogLocation & { summary: CloudWatchSinkSummary | null };
}

type Ending = Omit<AgentOutcome, "timings">;

const CAPABILITIES = [
  "output-binary-v1",
  "cancel",
  "step-timeout",
  "job-timeout",
  "continue-on-error",
  "workspace-v1",
  "artifacts-v1",
  "caches-v1",
];

/**
 * Native mode (protocol v1 to the reference controller), in order: connect -> hello -> wait for a
 * job -> run it -> report it -> clean up. Called by `runAgent` (run-agent.ts), which holds the
 * process open, masks the secret in `options.logger` and owns the log copy. Never throws for
 * expected failures; the outcome carries the exit code.
 */
export async function runNativeAgent(
  config: AgentConfig,
  options: RunAgentOptions,
  copy: JobLogCopy | undefined,
): Promise<AgentOutcome> {
  const { logger } = options;
  const timings: AgentTimings = { startedAt: Date.now() };
  const end = (ending: Ending): AgentOutcome => {
    timings.endedAt = Date.now();
    const result = { ...ending, timings };
    logger[result.exitCode === 0 ? "info" : "error"]("agent finished", {
      exitCode: result.exitCode,
      summary: result.summary,
      code: result.error?.code,
    });
    return result;
  };

  const connected = await connect(config, options);
  if (!(connected instanceof JobChannel)) return end(connected);
  const channel = connected;
  timings.connectedAt = Date.now();
  let pipes: StepPipes | undefined;
  try {
    await sayHello(channel, config, logger, copy);
    // The steps' first FIFOs are made while the controller answers: `mkfifo`'s spawn is then
    // off the first step's path (runner/step-pipes.ts).
    pipes = new StepPipes({ logger });
    const first = await waitForJob(channel, config, options);
    if ("exitCode" in first) return end(first);
    const job = first.job;
    timings.jobStartedAt = Date.now();
    const jobLogger = logger.child({ job: job.id });
    const run = await runJobOnChannel(job, channel, config, { ...options, logger: jobLogger }, copy, pipes);
    timings.jobEndedAt = Date.now();
    try {
      return end({
        ...(await report(job, run.outcome, run.extras, channel, jobLogger, options)),
        jobId: job.id,
      });
    } finally {
      await cleanUp(run.workspace, jobLogger);
    }
  } finally {
    await pipes?.close();
    channel.dispose();
  }
}

/** Connect: the channel in `awaiting-job`, or how connecting failed. */
async function connect(config: AgentConfig, options: RunAgentOptions): Promise<JobChannel | Ending> {
  try {
    return await JobChannel.open(config, options.logger, {
      signal: options.signal,
      returnBy: options.returnBy ?? null,
    });
  } catch (error) {
    if (options.signal?.aborted) {
      return {
        exitCode: interruptCode(options.signal),
        summary: "interrupted while connecting",
        error: new AgentError("AGENT_ERR_INTERRUPTED", "interrupted while connecting", { cause: error }),
      };
    }
    if (error instanceof ControllerRefusedError) {
      return { exitCode: ExitCode.refused, summary: error.message, error };
    }
    const agentError =
      error instanceof AgentError
        ? error
        : new AgentError("AGENT_ERR_INTERNAL", (error as Error).message, { cause: error });
    const exitCode = agentError.code === "AGENT_ERR_CONFIG" ? ExitCode.badConfig : ExitCode.controllerFailure;
    return { exitCode, summary: agentError.message, error: agentError };
  }
}

/** Hello: the agent, its limits (the disk budget is measured now) and where its log copy goes. */
async function sayHello(
  channel: JobChannel,
  config: AgentConfig,
  logger: Logger,
  copy: JobLogCopy | undefined,
): Promise<void> {
  const diskBudget = await measureBudget(config, logger);
  channel.sendHello({ ...helloFor(config, diskBudget), ...(copy ? { logs: copy.location } : {}) });
}

/** Wait for a job: up to the idle timeout, or to the deadline's stop when that comes first. */
async function waitForJob(
  channel: JobChannel,
  config: AgentConfig,
  options: RunAgentOptions,
): Promise<{ job: Job } | Ending> {
  const untilStop = msUntilStop(deadlinePlan(config));
  const waitMs =
    untilStop === null ? config.idleTimeoutMs : Math.max(0, Math.min(config.idleTimeoutMs, untilStop));
  const first = await channel.waitForJob(waitMs, options.signal);
  switch (first.kind) {
    case "job":
      return { job: first.job };
    case "closed":
      return closedBeforeJob(first.info);
    case "idle":
      if (waitMs < config.idleTimeoutMs) {
        await channel.close(CloseCode.normal, "deadline reached before a job arrived");
        return {
          exitCode: ExitCode.deadline,
          summary: `the deadline came before a job arrived (after ${waitMs} ms)`,
        };
      }
      await channel.close(CloseCode.normal, "idle timeout: no job arrived");
      return {
        exitCode: ExitCode.idle,
        summary: `no job arrived within ${config.idleTimeoutMs} ms`,
        error: new AgentError("AGENT_ERR_IDLE_TIMEOUT", `no job arrived within ${config.idleTimeoutMs} ms`),
      };
    case "aborted":
      await channel.close(CloseCode.goingAway, "agent interrupted");
      return {
        exitCode: interruptCode(options.signal!),
        summary: "interrupted before a job arrived",
        error: new AgentError("AGENT_ERR_INTERRUPTED", "interrupted before a job arrived"),
      };
  }
}

/**
 * Run: the job's steps in a fresh workspace, their output teed to the controller stream and the
 * log copy. Stops on the channel's reasons (cancel, controller lost, spool failure) and on the
 * interrupt. Returns the outcome and the workspace to remove once the job is reported.
 */
async function runJobOnChannel(
  job: Job,
  channel: JobChannel,
  config: AgentConfig,
  options: RunAgentOptions,
  copy: JobLogCopy | undefined,
  pipes: StepPipes,
): Promise<{
  outcome: JobOutcome;
  workspace: string | undefined;
  extras: Omit<TransferPhasesResult, "outcome">;
}> {
  let { logger } = options;
  // The agent's own secret and the job's secrets never reach a sink: output, messages, diagnostics.
  // One set, built once (a set of 1,000 secrets takes tens of megabytes).
  const both = buildMaskSet([config.secret, ...job.mask], logger);
  logger = logger.redacting((line) => maskText(line, both));
  const interrupt = options.signal;
  const onInterrupt = () => channel.stopJob("interrupted");
  interrupt?.addEventListener("abort", onInterrupt, { once: true });
  if (interrupt?.aborted) onInterrupt();
  const tee = new JobOutputTee({
    job,
    agentName: config.name,
    events: [channel],
    lines: copy ? [copy.lines] : [],
    flow: channel.flow,
    logger,
  });
  tee.jobStart();
  let workspace: string | undefined;
  let outcome: JobOutcome;
  let extras: Omit<TransferPhasesResult, "outcome"> = {};
  try {
    const dir = await createWorkspace(config.workDir, job.id);
    workspace = dir;
    // Loaded with the first job: the transfers (archives, globs, caches) are not needed to connect.
    const { runJobWithTransfers } = await import("./job/transfer-phases.ts");
    const ran = await runJobWithTransfers({
      job,
      workspace: dir,
      config,
      deadline: deadlinePlan(config),
      port: channel,
      caches: await cacheStoreFor(config, options, logger),
      ...(options.killNow ? { killNow: options.killNow } : {}),
      logger,
      runSteps: (cacheEnv, diskLimitBytes) =>
        runJob({
          job,
          workspace: dir,
          agentName: config.name,
          baseEnv: { ...config.baseEnv, ...cacheEnv },
          graceMs: config.graceMs,
          drainMs: config.drainMs,
          frameMaxBytes: config.frameMaxBytes,
          frameFlushMs: config.frameFlushMs,
          deadline: deadlinePlan(config),
          disk: {
            path: config.workDir,
            limitBytes: diskLimitBytes,
            headroomBytes: config.diskHeadroomBytes,
            // The spool is the agent's, not the job's: acknowledged-but-not-yet-removed bytes included.
            ownBytes: () => channel.spoolDiskBytes,
          },
          monitorIntervalMs: config.monitorIntervalMs,
          mask: both,
          sink: tee,
          logger,
          signal: channel.jobSignal,
          ...(options.killNow ? { killNow: options.killNow } : {}),
          pipes,
        }),
    });
    ({ outcome, ...extras } = ran);
  } catch (error) {
    logger.error("the job could not run", { error });
    outcome = {
      status: "failed",
      reason: "error",
      message: maskText((error as Error).message, both),
      durationMs: 0,
      steps: [],
      agentPeakRssBytes: process.memoryUsage.rss(),
      diskUsedBytes: null,
    };
  } finally {
    interrupt?.removeEventListener("abort", onInterrupt);
  }
  const ioError = channel.ioError;
  if (ioError !== undefined && outcome.status === "failed" && outcome.message === undefined) {
    outcome = { ...outcome, message: ioError.message };
  }
  tee.jobEnd(outcome);
  return { outcome, workspace, extras };
}

/** The wrapper's cache store when it is the one for this work dir; otherwise one for this run alone. */
async function cacheStoreFor(
  config: AgentConfig,
  options: RunAgentOptions,
  logger: Logger,
): Promise<CacheStore> {
  const root = join(config.workDir, "caches");
  if (options.caches?.root === root) return options.caches;
  if (options.caches !== undefined) {
    logger.warn("the cache store given is for another work dir; caches are kept for this run only", {
      given: options.caches.root,
      workDir: config.workDir,
    });
  }
  const { CacheStore } = await import("./workspace/caches.ts");
  return new CacheStore({ root });
}

/** Clean up: the job's workspace goes, whatever became of the job. */
async function cleanUp(workspace: string | undefined, logger: Logger): Promise<void> {
  if (workspace === undefined) return;
  await removeWorkspace(workspace).catch((error: unknown) => logger.warn("workspace not removed", { error }));
}

/** Report: `job-end`, and the exit code from its acknowledgement and the job's outcome. */
async function report(
  job: Job,
  outcome: JobOutcome,
  extras: Omit<TransferPhasesResult, "outcome">,
  channel: JobChannel,
  logger: Logger,
  options: RunAgentOptions,
): Promise<Ending> {
  const reported = await channel.endJob({
    status: outcome.status,
    reason: outcome.reason,
    durationMs: outcome.durationMs,
    agentPeakRssBytes: outcome.agentPeakRssBytes,
    ...(outcome.diskUsedBytes !== null ? { diskUsedBytes: outcome.diskUsedBytes } : {}),
    ...(outcome.failedStepId !== undefined ? { failedStepId: outcome.failedStepId } : {}),
    ...(outcome.message !== undefined ? { message: outcome.message } : {}),
    ...(extras.transfers !== undefined ? { transfers: extras.transfers } : {}),
    ...(extras.caches !== undefined ? { caches: extras.caches } : {}),
  });
  if (!reported.acked) {
    return {
      // A job the signal interrupted (ECS stop, Spot) exits as interrupted: that is what the
      // orchestrator asked about; the error says that the report did not get through. A job that
      // ended otherwise (Lambda's backstop fires only after it) is a controller failure.
      exitCode:
        outcome.reason === "interrupted" && options.signal?.aborted
          ? interruptCode(options.signal)
          : ExitCode.controllerFailure,
      summary: reported.error.message,
      error: reported.error,
      job: outcome,
    };
  }
  if (reported.reconnects > 0) {
    logger.info("the job's session was resumed after connection drops", { reconnects: reported.reconnects });
  }
  const error = channel.ioError;
  return {
    exitCode: exitCodeFor(outcome, options.signal),
    summary: summarize(job, outcome),
    job: outcome,
    ...(error !== undefined ? { error } : {}),
  };
}

function deadlinePlan(config: AgentConfig): DeadlinePlan {
  return {
    deadlineAt: config.deadlineAt,
    graceMs: config.graceMs,
    stepStartMinMs: config.deadlineStepStartMinMs,
    runtime: config.runtime,
  };
}

/** The disk budget announced in `hello`: null when the work dir's filesystem cannot be measured. */
async function measureBudget(config: AgentConfig, logger: Logger): Promise<number | null> {
  try {
    await mkdir(config.workDir, { recursive: true });
    return diskBudgetBytes(config.workDir, config.diskBudgetBytes, config.diskHeadroomBytes);
  } catch (error) {
    logger.warn("cannot measure the work dir's filesystem; the disk budget is not enforced", { error });
    return null;
  }
}

function helloFor(config: AgentConfig, diskBudget: number | null): Hello {
  return {
    v: 1,
    type: "hello",
    agent: {
      name: config.name,
      labels: config.labels,
      runtime: config.runtime,
      version: AGENT_VERSION,
      platform: platform(),
      arch: arch(),
      node: process.version,
    },
    limits: { deadlineAt: config.deadlineAt, diskBudgetBytes: diskBudget },
    capabilities: CAPABILITIES,
  };
}

function closedBeforeJob(info: SessionClose): Ending {
  if (info.code === CloseCode.normal && info.error === undefined) {
    return {
      exitCode: ExitCode.ok,
      summary: `the controller released the agent without a job (${info.reason || "no reason given"})`,
    };
  }
  const error =
    info.error ??
    new AgentError(
      "AGENT_ERR_CONNECTION_LOST",
      `the controller closed the connection before a job (code ${info.code}${info.reason ? `: ${info.reason}` : ""})`,
    );
  return { exitCode: ExitCode.controllerFailure, summary: error.message, error };
}

function exitCodeFor(outcome: JobOutcome, interrupt: AbortSignal | undefined): ExitCodeValue {
  if (outcome.status === "succeeded") return ExitCode.ok;
  switch (outcome.reason) {
    case "deadline":
      return ExitCode.deadline;
    case "disk":
      return ExitCode.disk;
    case "interrupted":
      return interrupt ? interruptCode(interrupt) : ExitCode.sigterm;
    default:
      return ExitCode.jobFailed;
  }
}

function summarize(job: Job, outcome: JobOutcome): string {
  if (outcome.status === "succeeded") return `job ${job.id} succeeded (${outcome.steps.length} steps)`;
  const step = outcome.failedStepId !== undefined ? ` at step ${outcome.failedStepId}` : "";
  return `job ${job.id} failed${step} (${outcome.reason})${outcome.message ? `: ${outcome.message}` : ""}`;
}

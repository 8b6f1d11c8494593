import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { arch, platform } from "node:os";
import { join } from "node:path";
import type WebSocket from "ws";
import type { AgentConfig } from "./config/config.ts";
import { AgentError, ControllerRefusedError, ProtocolError } from "./errors.ts";
import { ExitCode, type ExitCodeValue } from "./exit-codes.ts";
import { type JobOutcome, type JobSink, runJob } from "./job/run-job.ts";
import { type DeadlinePlan, msUntilStop } from "./limits/deadline.ts";
import { diskBudgetBytes } from "./limits/disk-budget.ts";
import type { Logger } from "./logger.ts";
import type { CloudWatchSettings } from "./logs/cloudwatch/settings.ts";
import type { CloudWatchSinkSummary, CreateCloudWatchSinkOptions } from "./logs/cloudwatch/sink.ts";
import { type JobLogCopy, type JobLogLocation, openJobLogCopy } from "./logs/job-log.ts";
import type { JobLogLines } from "./logs/job-log-lines.ts";
import { buildMaskSet, maskText } from "./logs/masker.ts";
import { CloseCode, isResumableClose } from "./protocol/close-codes.ts";
import type { ControllerMessage, Hello, Job, StepReason } from "./protocol/messages.ts";
import { connectToController } from "./session/connect.ts";
import { Outbox } from "./session/outbox.ts";
import { AgentSession, type SessionClose } from "./session/session.ts";
import { AGENT_VERSION } from "./version.ts";
import { createWorkspace, removeWorkspace } from "./workspace/workspace.ts";

export interface RunAgentOptions {
  logger: Logger;
  /**
   * Aborting interrupts the agent (the wrapper does it on SIGTERM/SIGINT): the running step is
   * stopped and reported `interrupted`. `signal.reason` names the signal ("SIGINT" or "SIGTERM").
   */
  signal?: AbortSignal;
  /** Aborting after `signal` kills the running step at once, without the grace period (a second signal). */
  killNow?: AbortSignal;
  /** Where to copy the job's log (read by the wrapper from the environment: cloudWatchSettings). */
  cloudWatch?: { settings: CloudWatchSettings; clientConfig?: CreateCloudWatchSinkOptions["clientConfig"] };
  /** How long the log copy may take to flush at the end (bounded by the platform's margin). */
  logFlushTimeoutMs?: number;
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

const CAPABILITIES = ["output-binary-v1", "cancel", "step-timeout", "job-timeout", "continue-on-error"];

/**
 * Runs the agent once: connect, say hello, take one job, run it, report it, clean up.
 * Never throws for expected failures; the outcome carries the exit code.
 *
 * @example
 * const outcome = await runAgent(parseAgentConfig(input), { logger, signal });
 * process.exitCode = outcome.exitCode;
 */
export async function runAgent(config: AgentConfig, options: RunAgentOptions): Promise<AgentOutcome> {
  // The agent's secret is masked in every diagnostic from the start.
  const agentMask = buildMaskSet([config.secret], options.logger);
  const logger = options.logger.redacting((line) => maskText(line, agentMask));
  // The log copy's SDK loads while the agent connects.
  const copy = options.cloudWatch
    ? openJobLogCopy(options.cloudWatch.settings, logger, options.cloudWatch.clientConfig)
    : undefined;
  const outcome = await runAgentOnce(config, { ...options, logger }, copy);
  if (copy === undefined) return outcome;
  const summary = await copy.close(options.logFlushTimeoutMs ?? 5_000);
  return { ...outcome, logs: { ...copy.location, summary } };
}

async function runAgentOnce(
  config: AgentConfig,
  options: RunAgentOptions,
  copy: JobLogCopy | undefined,
): Promise<AgentOutcome> {
  const { logger } = options;
  const timings: AgentTimings = { startedAt: Date.now() };
  const end = (outcome: Omit<AgentOutcome, "timings">): AgentOutcome => {
    timings.endedAt = Date.now();
    const result = { ...outcome, timings };
    const level = result.exitCode === 0 ? "info" : "error";
    logger[level]("agent finished", {
      exitCode: result.exitCode,
      summary: result.summary,
      code: result.error?.code,
    });
    return result;
  };

  let session: AgentSession;
  const outbox = new Outbox({
    maxMemoryBytes: config.maxUnackedBytes,
    maxSpoolBytes: config.maxSpoolBytes,
    spoolPath: join(
      config.workDir,
      `spool-${config.name.replace(/[^A-Za-z0-9._-]/g, "_")}-${randomBytes(4).toString("hex")}.bin`,
    ),
  });
  try {
    const socket = await connectToController(config, logger, options.signal);
    session = new AgentSession(socket, outbox, logger, config);
    timings.connectedAt = Date.now();
  } catch (error) {
    if (options.signal?.aborted)
      return end({ exitCode: interruptCode(options.signal), summary: "interrupted while connecting" });
    if (error instanceof ControllerRefusedError) {
      return end({ exitCode: ExitCode.refused, summary: error.message, error });
    }
    const agentError =
      error instanceof AgentError
        ? error
        : new AgentError("AGENT_ERR_INTERNAL", (error as Error).message, { cause: error });
    return end({ exitCode: ExitCode.controllerFailure, summary: agentError.message, error: agentError });
  }

  session.sendHello({
    ...helloFor(config, await measureBudget(config, logger)),
    ...(copy ? { logs: copy.location } : {}),
  });
  const untilStop = msUntilStop(deadlinePlan(config));
  const waitMs =
    untilStop === null ? config.idleTimeoutMs : Math.max(0, Math.min(config.idleTimeoutMs, untilStop));
  const first = await waitForJob(session, waitMs, options.signal);
  switch (first.kind) {
    case "job":
      break;
    case "closed":
      return end(closedBeforeJob(first.info));
    case "idle":
      if (waitMs < config.idleTimeoutMs) {
        await session.close(CloseCode.normal, "deadline reached before a job arrived");
        return end({
          exitCode: ExitCode.deadline,
          summary: `the deadline came before a job arrived (after ${waitMs} ms)`,
        });
      }
      await session.close(CloseCode.normal, "idle timeout: no job arrived");
      return end({
        exitCode: ExitCode.idle,
        summary: `no job arrived within ${config.idleTimeoutMs} ms`,
        error: new AgentError("AGENT_ERR_IDLE_TIMEOUT", `no job arrived within ${config.idleTimeoutMs} ms`),
      });
    case "aborted":
      await session.close(CloseCode.goingAway, "agent interrupted");
      return end({ exitCode: interruptCode(options.signal!), summary: "interrupted before a job arrived" });
  }

  const job = first.job;
  timings.jobStartedAt = Date.now();
  const result = await runJobOverSession(
    job,
    session,
    outbox,
    config,
    logger.child({ job: job.id }),
    options,
    copy?.lines,
  ).finally(() => outbox.close());
  timings.jobEndedAt = Date.now();
  return end({ ...result, jobId: job.id });
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

type FirstEvent =
  | { kind: "job"; job: Job }
  | { kind: "closed"; info: SessionClose }
  | { kind: "idle" }
  | { kind: "aborted" };

function waitForJob(session: AgentSession, idleTimeoutMs: number, signal?: AbortSignal): Promise<FirstEvent> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish({ kind: "idle" }), idleTimeoutMs);
    const onAbort = () => finish({ kind: "aborted" });
    signal?.addEventListener("abort", onAbort, { once: true });
    let done = false;
    function finish(event: FirstEvent) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      session.onMessage = () => {};
      resolve(event);
    }
    session.onMessage = (message) => {
      if (message.type === "job") finish({ kind: "job", job: message.job });
      else if (message.type !== "ack") {
        session.protocolError(
          new ProtocolError(CloseCode.outOfOrder, `the controller sent "${message.type}" before any job`),
        );
      }
    };
    session.closed.then((info) => finish({ kind: "closed", info }));
    if (signal?.aborted) onAbort();
  });
}

function closedBeforeJob(info: SessionClose): Omit<AgentOutcome, "timings"> {
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

async function runJobOverSession(
  job: Job,
  first: AgentSession,
  outbox: Outbox,
  config: AgentConfig,
  logger: Logger,
  options: RunAgentOptions,
  lines: JobLogLines | undefined,
): Promise<Omit<AgentOutcome, "timings">> {
  const interrupt = options.signal;
  logger.info("job received", { steps: job.steps.length, name: job.name });
  // The agent's own secret and the job's secrets never reach a sink: output, messages, diagnostics.
  // One set, built once (a set of 1,000 secrets takes tens of megabytes).
  const both = buildMaskSet([config.secret, ...job.mask], logger);
  logger = logger.redacting((line) => maskText(line, both));
  const abort = new AbortController();
  const onInterrupt = () => abort.abort("interrupted" satisfies StepReason);
  interrupt?.addEventListener("abort", onInterrupt, { once: true });
  if (interrupt?.aborted) onInterrupt();

  // The current connection; replaced when the session is resumed after a drop.
  let session = first;
  let lost: SessionClose | undefined;
  let finished = false;
  let reconnects = 0;
  const onMessage = (current: AgentSession) => (message: ControllerMessage) => {
    if (message.type === "cancel" && message.jobId === job.id) {
      logger.info("job cancelled by the controller", { reason: message.reason });
      abort.abort("cancelled" satisfies StepReason);
    } else if (message.type !== "ack") {
      const what = message.type === "cancel" ? `"cancel" for job ${message.jobId}` : `"${message.type}"`;
      current.protocolError(
        new ProtocolError(CloseCode.outOfOrder, `the controller sent ${what} while job ${job.id} runs`),
      );
    }
  };
  const giveUp = (info: SessionClose, why: string) => {
    lost = info;
    logger.error(why, { code: info.code, reason: info.reason });
    abort.abort("error" satisfies StepReason);
    outbox.release();
  };
  const watch = (current: AgentSession) => {
    current.onMessage = onMessage(current);
    void current.closed.then(async (info) => {
      if (finished) return;
      if (info.error !== undefined || !isResumableClose(info.code))
        return giveUp(info, "the controller session ended during the job; stopping it");
      logger.warn("connection to the controller lost during the job; resuming", {
        code: info.code,
        reason: info.reason,
      });
      const resumed = await resumeSession(job.id, outbox, config, logger, abort.signal);
      if (finished) {
        if (typeof resumed !== "string") resumed.terminate();
        return;
      }
      if (typeof resumed === "string") return giveUp(info, `${resumed}; stopping the job`);
      reconnects++;
      session = resumed;
      watch(resumed);
    });
  };
  watch(first);

  const position = (stepId: string) => {
    const index = job.steps.findIndex((s) => s.id === stepId);
    return `[${index + 1}/${job.steps.length}] ${job.steps[index]?.name ?? `step ${stepId}`}`;
  };
  lines?.line(`=== job ${job.id}${job.name ? ` (${job.name})` : ""} on agent ${config.name}`);
  const sink: JobSink = {
    stepStart: (stepId, startedAt) => {
      lines?.stepStart(`==> ${position(stepId)}`);
      session.send({ v: 1, type: "step-start", jobId: job.id, stepId, startedAt });
    },
    output: (stepId, stream, offset, data) => {
      lines?.output(stream, data);
      session.sendOutput(stepId, stream, offset, data);
    },
    stepEnd: (stepId, r) => {
      const how =
        r.reason === "exit" ? `exit ${r.exitCode}` : `${r.reason}${r.signal ? ` (${r.signal})` : ""}`;
      lines?.stepEnd(
        `<== ${position(stepId)}: ${how} in ${r.durationMs} ms${r.message ? ` - ${r.message}` : ""}`,
      );
      session.send({
        v: 1,
        type: "step-end",
        jobId: job.id,
        stepId,
        exitCode: r.exitCode,
        signal: r.signal,
        durationMs: r.durationMs,
        reason: r.reason,
        stdoutBytes: r.stdoutBytes,
        stderrBytes: r.stderrBytes,
        peakRssBytes: r.peakRssBytes,
        ...(r.message !== undefined ? { message: r.message.slice(0, 4000) } : {}),
      });
    },
    hasRoom: () => outbox.hasRoom || lost !== undefined,
    waitForRoom: () => outbox.waitForRoom(),
  };

  let workspace: string | undefined;
  let outcome: JobOutcome;
  try {
    workspace = await createWorkspace(config.workDir, job.id);
    outcome = await runJob({
      job,
      workspace,
      agentName: config.name,
      baseEnv: config.baseEnv,
      graceMs: config.graceMs,
      drainMs: config.drainMs,
      frameMaxBytes: config.frameMaxBytes,
      frameFlushMs: config.frameFlushMs,
      deadline: deadlinePlan(config),
      disk: {
        path: config.workDir,
        limitBytes: config.diskBudgetBytes,
        headroomBytes: config.diskHeadroomBytes,
        ownBytes: () => outbox.spoolBytes,
      },
      monitorIntervalMs: config.monitorIntervalMs,
      mask: both,
      sink,
      logger,
      signal: abort.signal,
      ...(options.killNow ? { killNow: options.killNow } : {}),
    });
  } catch (error) {
    logger.error("the job could not run", { error });
    outcome = {
      status: "failed",
      reason: "error",
      message: (error as Error).message,
      durationMs: 0,
      steps: [],
      agentPeakRssBytes: process.memoryUsage.rss(),
      diskUsedBytes: null,
    };
  } finally {
    interrupt?.removeEventListener("abort", onInterrupt);
  }

  lines?.line(
    `=== job ${outcome.status} (${outcome.reason}) in ${outcome.durationMs} ms${outcome.message ? `: ${outcome.message}` : ""}`,
  );
  try {
    if (lost !== undefined) {
      const error =
        lost.error ??
        new AgentError(
          "AGENT_ERR_CONNECTION_LOST",
          `connection to the controller lost during job ${job.id} (code ${lost.code}${lost.reason ? `: ${lost.reason}` : ""})`,
        );
      return { exitCode: ExitCode.controllerFailure, summary: error.message, error, job: outcome };
    }
    const seq = session.send({
      v: 1,
      type: "job-end",
      jobId: job.id,
      status: outcome.status,
      reason: outcome.reason,
      durationMs: outcome.durationMs,
      agentPeakRssBytes: outcome.agentPeakRssBytes,
      ...(outcome.diskUsedBytes !== null ? { diskUsedBytes: outcome.diskUsedBytes } : {}),
      ...(outcome.failedStepId !== undefined ? { failedStepId: outcome.failedStepId } : {}),
      ...(outcome.message !== undefined ? { message: outcome.message.slice(0, 4000) } : {}),
    });
    // A resume may be under way: allow for it, and for the wait that follows.
    const acked = await outbox.waitForAck(
      seq,
      config.ackTimeoutMs + (session.isOpen ? 0 : config.reconnectTimeoutMs),
    );
    finished = true;
    if (!acked) {
      const error =
        (lost as SessionClose | undefined)?.error ??
        new AgentError(
          "AGENT_ERR_ACK_TIMEOUT",
          `the controller did not acknowledge the end of job ${job.id} within ${config.ackTimeoutMs} ms`,
        );
      await session.close(CloseCode.ackTimeout, error.message);
      return { exitCode: ExitCode.controllerFailure, summary: error.message, error, job: outcome };
    }
    await session.close(CloseCode.normal, "job done");
    if (reconnects > 0) logger.info("the job's session was resumed after connection drops", { reconnects });
    return { exitCode: exitCodeFor(outcome, interrupt), summary: summarize(job, outcome), job: outcome };
  } finally {
    finished = true;
    if (workspace !== undefined) {
      await removeWorkspace(workspace).catch((error: unknown) =>
        logger.warn("workspace not removed", { error }),
      );
    }
  }
}

/**
 * Reconnects and resumes the job's session: a new WebSocket (with the resume header), a hello
 * naming the job, and the controller's `resume` telling the last seq it has. Retries with
 * backoff until `reconnectTimeoutMs`. Resolves with the resumed session, or why it could not be.
 */
async function resumeSession(
  jobId: string,
  outbox: Outbox,
  config: AgentConfig,
  logger: Logger,
  signal: AbortSignal,
): Promise<AgentSession | string> {
  const giveUpAt = Date.now() + config.reconnectTimeoutMs;
  let pauseMs = 250;
  for (let attempt = 1; Date.now() < giveUpAt; attempt++) {
    if (attempt > 1) {
      // Connected but not resumed (closed before the answer): back off before the next try.
      await new Promise((resolve) =>
        setTimeout(resolve, Math.min(pauseMs, Math.max(0, giveUpAt - Date.now()))),
      );
      pauseMs = Math.min(pauseMs * 2, 5_000);
    }
    let socket: WebSocket;
    try {
      socket = await connectToController(config, logger, signal, {
        resumeJobId: jobId,
        timeoutMs: giveUpAt - Date.now(),
      });
    } catch (error) {
      return `could not reconnect to the controller: ${(error as Error).message}`;
    }
    const session = new AgentSession(socket, outbox, logger, config);
    session.sendHello({ ...helloFor(config, null), resume: { jobId } });
    const seq = await new Promise<number | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), config.handshakeTimeoutMs);
      session.onMessage = (message) => {
        clearTimeout(timer);
        if (message.type === "resume" && message.jobId === jobId) resolve(message.seq);
        else {
          session.protocolError(
            new ProtocolError(
              CloseCode.outOfOrder,
              `expected "resume" for job ${jobId}, got "${message.type}"`,
            ),
          );
          resolve(undefined);
        }
      };
      void session.closed.then(() => {
        clearTimeout(timer);
        resolve(undefined);
      });
    });
    if (seq !== undefined) {
      session.resumeFrom(seq);
      logger.info("session resumed", { resumedAtSeq: seq, resending: outbox.seq - seq });
      return session;
    }
    const info = await session.close(CloseCode.normal, "resume failed");
    if (info.code === CloseCode.resumeRefused || info.error !== undefined) {
      return `the controller refused to resume the job (code ${info.code}: ${info.reason})`;
    }
  }
  return `the controller did not come back within ${config.reconnectTimeoutMs} ms`;
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

function interruptCode(signal: AbortSignal): ExitCodeValue {
  return signal.reason === "SIGINT" ? ExitCode.sigint : ExitCode.sigterm;
}

function summarize(job: Job, outcome: JobOutcome): string {
  if (outcome.status === "succeeded") return `job ${job.id} succeeded (${outcome.steps.length} steps)`;
  const step = outcome.failedStepId !== undefined ? ` at step ${outcome.failedStepId}` : "";
  return `job ${job.id} failed${step} (${outcome.reason})${outcome.message ? `: ${outcome.message}` : ""}`;
}

import { performance } from "node:perf_hooks";
import type { Logger } from "../logger.ts";
import { OutputFramer } from "../logs/framer.ts";
import type { OutputStream } from "../protocol/frames.ts";
import type { Job, Step, StepReason } from "../protocol/messages.ts";
import { abortReason, type Command, reapGroups, runStep, type StepResult } from "../runner/run-step.ts";
import { resolveInWorkspace } from "../workspace/workspace.ts";

/** Where a job's events go: the session, or anything else (tests, a local run). */
export interface JobSink {
  stepStart(stepId: string, startedAt: number): void;
  output(stepId: string, stream: OutputStream, offset: number, data: Buffer): void;
  stepEnd(stepId: string, result: StepOutcome): void;
  /** False when the sink is full; the runner pauses the step's pipes until `waitForRoom` resolves. */
  hasRoom(): boolean;
  waitForRoom(): Promise<void>;
}

export interface StepOutcome extends Omit<StepResult, "pgid"> {
  stdoutBytes: number;
  stderrBytes: number;
}

export interface JobOutcome {
  status: "succeeded" | "failed";
  reason: StepReason;
  failedStepId?: string;
  message?: string;
  durationMs: number;
  steps: { id: string; outcome: StepOutcome }[];
}

export interface RunJobOptions {
  job: Job;
  workspace: string;
  agentName: string;
  baseEnv: Record<string, string>;
  graceMs: number;
  drainMs: number;
  frameMaxBytes: number;
  frameFlushMs: number;
  sink: JobSink;
  logger: Logger;
  /** Aborting stops the job; `reason` is the StepReason to report (cancelled, interrupted, deadline...). */
  signal: AbortSignal;
}

/**
 * Runs a job's steps in order. A step that fails stops the job unless it has `continueOnError`;
 * an abort stops the running step (SIGTERM, grace, SIGKILL) and skips the rest. When the job
 * ends, whatever its steps left running is stopped too.
 */
export async function runJob(options: RunJobOptions): Promise<JobOutcome> {
  const { job, logger } = options;
  const started = performance.now();
  const steps: JobOutcome["steps"] = [];
  const groups = new Set<number>();
  const jobAbort = new AbortController();
  const forward = () => jobAbort.abort(options.signal.reason);
  options.signal.addEventListener("abort", forward, { once: true });
  const jobTimer =
    job.timeoutMs === undefined
      ? undefined
      : setTimeout(() => jobAbort.abort("timeout"), job.timeoutMs).unref();

  let failure: { reason: StepReason; stepId: string; message?: string } | undefined;
  try {
    for (const step of job.steps) {
      if (jobAbort.signal.aborted) break;
      const outcome = await runOneStep(step, options, jobAbort.signal, groups);
      steps.push({ id: step.id, outcome });
      const ok = outcome.reason === "exit" && outcome.exitCode === 0;
      logger.info("step ended", {
        step: step.id,
        reason: outcome.reason,
        exitCode: outcome.exitCode,
        durationMs: outcome.durationMs,
      });
      const tolerated = step.continueOnError && (outcome.reason === "exit" || outcome.reason === "timeout");
      if (!ok && !tolerated) {
        failure = { reason: outcome.reason, stepId: step.id };
        if (outcome.message !== undefined) failure.message = outcome.message;
        break;
      }
    }
  } finally {
    clearTimeout(jobTimer);
    options.signal.removeEventListener("abort", forward);
    await reapGroups(groups, Math.min(options.graceMs, 2_000));
  }

  const durationMs = Math.round(performance.now() - started);
  if (failure === undefined && jobAbort.signal.aborted) {
    // Aborted between steps: nothing was running, but the job did not run to its end.
    const reason = abortReason(jobAbort.signal);
    return {
      status: "failed",
      reason,
      durationMs,
      steps,
      message: `the job was stopped (${reason}) between steps`,
    };
  }
  if (failure === undefined) return { status: "succeeded", reason: "exit", durationMs, steps };
  const outcome: JobOutcome = {
    status: "failed",
    reason: failure.reason,
    failedStepId: failure.stepId,
    durationMs,
    steps,
  };
  if (failure.message !== undefined) outcome.message = failure.message;
  return outcome;
}

async function runOneStep(
  step: Step,
  options: RunJobOptions,
  signal: AbortSignal,
  groups: Set<number>,
): Promise<StepOutcome> {
  const { sink, job } = options;
  sink.stepStart(step.id, Date.now());
  const framer = new OutputFramer({
    maxBytes: options.frameMaxBytes,
    flushMs: options.frameFlushMs,
    emit: (frame) => sink.output(step.id, frame.stream, frame.offset, frame.data),
  });

  let result: StepResult;
  try {
    const cwd = resolveInWorkspace(options.workspace, step.workingDir);
    const env = {
      ...options.baseEnv,
      CI: "true",
      AGENT_NAME: options.agentName,
      AGENT_JOB_ID: job.id,
      AGENT_WORKSPACE: options.workspace,
      ...job.env,
      ...step.env,
      AGENT_STEP_ID: step.id,
    };
    const command: Command =
      step.argv !== undefined
        ? { argv: step.argv }
        : { run: step.run!, ...(step.shell ? { shell: step.shell } : {}) };
    result = await runStep({
      command,
      cwd,
      env,
      ...(step.timeoutMs !== undefined ? { timeoutMs: step.timeoutMs } : {}),
      graceMs: options.graceMs,
      drainMs: options.drainMs,
      signal,
      onStart: (pgid) => groups.add(pgid),
      onOutput: (stream, chunk) => {
        framer.write(stream, chunk);
        return sink.hasRoom();
      },
      waitForDrain: () => sink.waitForRoom(),
    });
  } catch (error) {
    result = {
      exitCode: null,
      signal: null,
      durationMs: 0,
      reason: "error",
      message: (error as Error).message,
      pgid: null,
    };
  }
  framer.end();
  const { pgid: _pgid, ...rest } = result;
  const outcome: StepOutcome = {
    ...rest,
    stdoutBytes: framer.bytes.stdout,
    stderrBytes: framer.bytes.stderr,
  };
  sink.stepEnd(step.id, outcome);
  return outcome;
}

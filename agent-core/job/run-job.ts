import { performance } from "node:perf_hooks";
import { type DeadlinePlan, deadlineMessage, mayStartStep, msUntilStop } from "../limits/deadline.ts";
import { DiskWatcher, diskMessage, largestDirectories } from "../limits/disk-budget.ts";
import { GroupRssSampler } from "../limits/memory.ts";
import type { Logger } from "../logger.ts";
import { OutputFramer } from "../logs/framer.ts";
import { type MaskSet, maskText, StreamMasker } from "../logs/masker.ts";
import { setLongTimeout } from "../long-timer.ts";
import { type OutputStream, outputFrameData } from "../protocol/frames.ts";
import type { Job, Step, StepReason } from "../protocol/messages.ts";
import { newTrackingId, stopTrackedProcesses, TRACKING_VARIABLE } from "../runner/job-processes.ts";
import { abortReason, type Command, reapGroups, runStep, type StepResult } from "../runner/run-step.ts";
import { StepPipes } from "../runner/step-pipes.ts";
import { resolveInWorkspace } from "../workspace/workspace.ts";

/** Backpressure: while `hasRoom()` is false the runner pauses the step's pipes until `waitForRoom` resolves. */
export interface OutputFlow {
  hasRoom(): boolean;
  waitForRoom(): Promise<void>;
}

/** Where a job's events go: the output tee (controller stream and log copy), or anything else (tests, a local run). */
export interface JobSink {
  stepStart(stepId: string, startedAt: number): void;
  output(stepId: string, stream: OutputStream, offset: number, data: Buffer): void;
  stepEnd(stepId: string, result: StepOutcome): void;
  /** The sink's backpressure. */
  readonly flow: OutputFlow;
}

export interface StepOutcome extends Omit<StepResult, "pgid"> {
  stdoutBytes: number;
  stderrBytes: number;
  /** Peak resident memory of the step's process group (null where it cannot be measured). */
  peakRssBytes: number | null;
}

export interface JobOutcome {
  status: "succeeded" | "failed";
  reason: StepReason;
  failedStepId?: string;
  message?: string;
  durationMs: number;
  steps: { id: string; outcome: StepOutcome }[];
  /** Peak resident memory of the agent process while the job ran. */
  agentPeakRssBytes: number;
  /** Peak bytes the job used on the work dir's filesystem (null without a disk watcher). */
  diskUsedBytes: number | null;
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
  deadline: DeadlinePlan;
  /** The disk budget to enforce; null turns the watcher off. */
  disk: { path: string; limitBytes: number | null; headroomBytes: number; ownBytes?: () => number } | null;
  monitorIntervalMs: number;
  /** Values masked in every byte of output before it reaches the sink, and in step messages. */
  mask: MaskSet;
  sink: JobSink;
  logger: Logger;
  /** Aborting stops the job; `reason` is the StepReason to report (cancelled, interrupted, deadline...). */
  signal: AbortSignal;
  /** Aborting kills the running step at once (SIGKILL, no grace): a second SIGTERM. */
  killNow?: AbortSignal;
  /**
   * The steps' FIFOs, made ahead by the caller (the native agent starts them while it waits for
   * its job, so that no step waits for `mkfifo`); the caller closes them. Without, the job makes
   * its own and closes them when it ends.
   */
  pipes?: StepPipes;
}

interface Failure {
  reason: StepReason;
  stepId: string;
  message?: string;
}

/**
 * Runs a job's steps in order. A step that fails stops the job unless it has `continueOnError`;
 * an abort stops the running step (SIGTERM, grace, SIGKILL) and skips the rest. The platform's
 * deadline and the disk budget end the job the same way, with reasons `deadline` and `disk`.
 * When the job ends, every process its steps started is stopped too (SIGTERM, grace, SIGKILL),
 * also those that left their step's process group: each step's environment carries
 * {@link TRACKING_VARIABLE} (see job-processes.ts). Before the first step, leftovers of jobs whose
 * agent died without cleaning up are stopped the same way.
 */
export async function runJob(options: RunJobOptions): Promise<JobOutcome> {
  const { job, logger } = options;
  const started = performance.now();
  const steps: JobOutcome["steps"] = [];
  const groups = new Set<number>();
  // Without FIFOs made ahead, the first are made while the job gets ready (the sweep, the disk headroom).
  const ownPipes = options.pipes === undefined ? new StepPipes({ logger }) : undefined;
  const pipes = options.pipes ?? ownPipes!;
  // Beside the first step, not before it: a step never matches (its agent is alive).
  const sweeping = stopTrackedProcesses({ orphaned: true }, 0).then((leftovers) => {
    if (leftovers.length > 0) {
      logger.warn("killed processes left behind by an agent that died during its job", { pids: leftovers });
    }
  });
  const jobAbort = new AbortController();
  const forward = () => jobAbort.abort(options.signal.reason);
  options.signal.addEventListener("abort", forward, { once: true });
  if (options.signal.aborted) forward();
  // Any length: a `timeout: 720h` or a month-long deadline is scheduled in hops.
  const timers = [];
  if (job.timeoutMs !== undefined) {
    timers.push(setLongTimeout(() => jobAbort.abort("timeout" satisfies StepReason), job.timeoutMs));
  }
  const stopIn = msUntilStop(options.deadline);
  if (stopIn !== null) {
    timers.push(setLongTimeout(() => jobAbort.abort("deadline" satisfies StepReason), Math.max(0, stopIn)));
  }
  const trackingId = newTrackingId();
  const disk = watchDisk(options);
  // Held before the first step: a step writing gigabytes per second fills a disk in milliseconds.
  await disk?.reserving;
  const agentRss = { peak: process.memoryUsage.rss() };

  let failure: Failure | undefined;
  try {
    for (const step of job.steps) {
      if (jobAbort.signal.aborted) break;
      const may = mayStartStep(options.deadline);
      if (!may.ok) {
        failure = {
          reason: "deadline",
          stepId: step.id,
          message: deadlineMessage(options.deadline, {
            stepId: step.id,
            started: false,
            remainingMs: may.remainingMs,
          }),
        };
        logger.warn("not enough time left before the deadline to start a step", {
          step: step.id,
          remainingMs: may.remainingMs,
        });
        break;
      }
      const outcome = await runOneStep(
        step,
        options,
        jobAbort.signal,
        { groups, trackingId, pipes },
        disk?.watcher ?? null,
        agentRss,
      );
      steps.push({ id: step.id, outcome });
      logger.info("step ended", {
        step: step.id,
        reason: outcome.reason,
        exitCode: outcome.exitCode,
        durationMs: outcome.durationMs,
        peakRssBytes: outcome.peakRssBytes,
      });
      const ok = outcome.reason === "exit" && outcome.exitCode === 0;
      // continueOnError covers the step's own failure, not the job being stopped (job timeout, cancel...).
      const tolerated =
        step.continueOnError &&
        !jobAbort.signal.aborted &&
        (outcome.reason === "exit" || outcome.reason === "timeout");
      if (!ok && !tolerated) {
        failure = { reason: outcome.reason, stepId: step.id };
        if (outcome.message !== undefined) failure.message = outcome.message;
        break;
      }
    }
  } finally {
    for (const timer of timers) timer.clear();
    options.signal.removeEventListener("abort", forward);
    await sweeping;
    await disk?.reserving;
    disk?.watcher.releaseHeadroom();
    const graceMs = Math.min(options.graceMs, 2_000);
    const [, stray] = await Promise.all([
      reapGroups(groups, graceMs),
      stopTrackedProcesses({ id: trackingId }, graceMs),
    ]);
    if (stray.length > 0) logger.info("stopped processes the job left running", { pids: stray });
    await ownPipes?.close();
  }

  const base = {
    durationMs: Math.round(performance.now() - started),
    steps,
    agentPeakRssBytes: agentRss.peak,
    diskUsedBytes: disk?.watcher.peakUsedBytes ?? null,
  };
  if (failure === undefined && steps.length < job.steps.length) {
    // Stopped between steps: nothing was running, but the job did not run to its end.
    const reason = abortReason(jobAbort.signal);
    return { ...base, status: "failed", reason, message: `the job was stopped (${reason}) between steps` };
  }
  if (failure === undefined) return { ...base, status: "succeeded", reason: "exit" };
  return {
    ...base,
    status: "failed",
    reason: failure.reason,
    failedStepId: failure.stepId,
    ...(failure.message !== undefined ? { message: failure.message } : {}),
  };
}

/**
 * The job's disk watcher, its headroom being written to a file beside the workspace (removed
 * with it); null (with a warning) when the work dir's filesystem cannot be measured.
 */
function watchDisk(options: RunJobOptions): { watcher: DiskWatcher; reserving: Promise<void> } | null {
  if (options.disk === null) return null;
  const { path, limitBytes, headroomBytes, ownBytes } = options.disk;
  let watcher: DiskWatcher;
  try {
    watcher = new DiskWatcher(path, limitBytes, headroomBytes, ownBytes);
  } catch (error) {
    options.logger.warn("cannot measure the work dir's filesystem; the disk budget is not enforced", {
      error,
    });
    return null;
  }
  const reserving = watcher.reserveHeadroom(`${options.workspace}.headroom`).then((reserved) => {
    if (reserved < Math.floor(headroomBytes / 2)) {
      options.logger.warn("the disk headroom could not be reserved in full", { reserved, headroomBytes });
    }
  });
  return { watcher, reserving };
}

async function runOneStep(
  step: Step,
  options: RunJobOptions,
  jobSignal: AbortSignal,
  /** What the job's steps share: their process groups, the tracking marker, the FIFOs. */
  shared: { groups: Set<number>; trackingId: string; pipes: StepPipes },
  disk: DiskWatcher | null,
  agentRss: { peak: number },
): Promise<StepOutcome> {
  const { sink, job } = options;
  sink.stepStart(step.id, Date.now());
  const framer = new OutputFramer({
    maxBytes: options.frameMaxBytes,
    flushMs: options.frameFlushMs,
    // Frames assembled from several reads get room for the controller frame's header: one copy.
    allocate: (length) => outputFrameData(step.id, length),
    emit: (frame) => sink.output(step.id, frame.stream, frame.offset, frame.data),
  });
  // Secrets are masked before anything leaves the runner, also when split across reads.
  const maskers = { stdout: new StreamMasker(options.mask), stderr: new StreamMasker(options.mask) };
  // The step stops on the job's abort, or on its own disk-budget abort.
  const stepAbort = new AbortController();
  const forward = () => stepAbort.abort(jobSignal.reason);
  jobSignal.addEventListener("abort", forward, { once: true });
  if (jobSignal.aborted) forward();

  let memory: GroupRssSampler | null = null;
  let peakRssBytes: number | null = null;
  let diskExceeded = disk?.check() ?? null;
  const sample = () => {
    agentRss.peak = Math.max(agentRss.peak, process.memoryUsage.rss());
    if (memory !== null) {
      const rss = memory.sample();
      // Zero means nothing was seen (a step too quick to sample): "not measured", not "0 bytes".
      if (rss !== null && rss > 0) peakRssBytes = Math.max(peakRssBytes ?? 0, rss);
    }
  };
  const monitor = setInterval(sample, options.monitorIntervalMs);
  monitor.unref();
  // The disk is checked faster as the budget runs out, and on while a stopped step exits (to see
  // whether the filesystem filled up before it was gone).
  let diskTimer: NodeJS.Timeout | undefined;
  const checkDisk = () => {
    if (disk === null) return;
    const exceeded = disk.check();
    if (exceeded !== null && diskExceeded === null) {
      diskExceeded = exceeded;
      stepAbort.abort("disk" satisfies StepReason);
    }
    diskTimer = setTimeout(checkDisk, disk.nextCheckInMs(options.monitorIntervalMs)).unref();
  };
  if (disk !== null) diskTimer = setTimeout(checkDisk, disk.nextCheckInMs(options.monitorIntervalMs)).unref();

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
      // Last, so that no job can unset it: how the job's processes are found when it ends.
      [TRACKING_VARIABLE]: shared.trackingId,
    };
    const command: Command =
      step.argv !== undefined
        ? { argv: step.argv }
        : { run: step.run!, ...(step.shell ? { shell: step.shell } : {}) };
    // A budget already used up (by an earlier step that finished just past it) stops the job here.
    result =
      diskExceeded !== null
        ? { exitCode: null, signal: null, durationMs: 0, reason: "disk", pgid: null }
        : await runStep({
            command,
            cwd,
            env,
            ...(step.timeoutMs !== undefined ? { timeoutMs: step.timeoutMs } : {}),
            graceMs: options.graceMs,
            drainMs: options.drainMs,
            signal: stepAbort.signal,
            ...(options.killNow ? { killNow: options.killNow } : {}),
            onStart: (id) => {
              memory = new GroupRssSampler(id);
              shared.groups.add(id);
            },
            onOutput: (stream, chunk) => {
              framer.write(stream, maskers[stream].write(chunk));
              return sink.flow.hasRoom();
            },
            waitForDrain: () => sink.flow.waitForRoom(),
            pipes: shared.pipes,
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
  } finally {
    clearInterval(monitor);
    clearTimeout(diskTimer);
    jobSignal.removeEventListener("abort", forward);
  }
  if (disk !== null) {
    const exceeded = disk.check();
    diskExceeded ??= exceeded;
  }
  for (const stream of ["stdout", "stderr"] as const) framer.write(stream, maskers[stream].end());
  framer.end();

  const { pgid: _pgid, ...rest } = result;
  const outcome: StepOutcome = {
    ...rest,
    stdoutBytes: framer.bytes.stdout,
    stderrBytes: framer.bytes.stderr,
    peakRssBytes,
  };
  if (diskExceeded !== null && disk !== null && (outcome.reason === "disk" || outcome.reason === "exit")) {
    // Over budget, whether the step was stopped for it or finished just past it.
    outcome.reason = "disk";
    // The job ends here: the agent needs the room for what it still has to write and report.
    disk.releaseHeadroom();
    outcome.message = diskMessage(disk.path, diskExceeded, await largestDirectories(options.workspace), {
      filledUp: disk.filledUp,
      minFreeBytes: disk.minFreeBytes,
    });
  } else if (outcome.reason === "deadline") {
    outcome.message = deadlineMessage(options.deadline, { stepId: step.id, started: true });
  }
  if (outcome.message !== undefined) outcome.message = maskText(outcome.message, options.mask);
  sink.stepEnd(step.id, outcome);
  return outcome;
}

import { type JobSink, runJob } from "../job/run-job.ts";
import type { DeadlinePlan } from "../limits/deadline.ts";
import type { Logger } from "../logger.ts";
import type { MaskSet } from "../logs/masker.ts";
import type { StepReason } from "../protocol/messages.ts";

/** One long-running process under the agent's limits: what the supervisor needs from a runner. */
export interface LimitedRunOptions {
  argv: string[];
  cwd: string;
  /** The process's whole environment (nothing is inherited). */
  env: Record<string, string>;
  graceMs: number;
  drainMs: number;
  deadline: DeadlinePlan;
  /** The disk budget on the work dir's filesystem; null turns it off. */
  disk: { path: string; limitBytes: number | null; headroomBytes: number } | null;
  monitorIntervalMs: number;
  /** Masked out of the output before `onOutput` sees it, also when split across reads. */
  mask: MaskSet;
  logger: Logger;
  /** Aborting stops the process (SIGTERM, grace, SIGKILL); `reason` is the StepReason reported. */
  signal: AbortSignal;
  /** Aborting kills it at once (a second signal). */
  killNow?: AbortSignal;
  /** Called when the process has been started. */
  onStart?: () => void;
  /** The process's output, masked, in order. */
  onOutput: (stream: "stdout" | "stderr", data: Buffer) => void;
}

export interface LimitedRunResult {
  reason: StepReason;
  exitCode: number | null;
  signal: string | null;
  message?: string;
  durationMs: number;
  /** False when the deadline left too little time to start it. */
  started: boolean;
  peakRssBytes: number | null;
  diskUsedBytes: number | null;
}

export type RunLimited = (options: LimitedRunOptions) => Promise<LimitedRunResult>;

const STEP_ID = "remoting";

/**
 * The default runner: the job runner with a one-step job, so that remoting gets exactly what a
 * job's step gets: the deadline (SIGTERM at `deadlineAt - graceMs`, SIGKILL at `deadlineAt`; not
 * started at all when too little time is left), the disk budget, masking, peak memory, and the
 * job runner's process tracking: remoting and everything the build starts carry the job's
 * `AGENT_TRACKING_ID` (runner/job-processes.ts), so that every process left behind, in
 * remoting's process group or one of its own (`setsid`, a daemonized build tool), is stopped
 * afterwards, and the leftovers of an agent that died mid-build are stopped before remoting starts.
 */
export const runLimited: RunLimited = async (options) => {
  const sink: JobSink = {
    stepStart: () => options.onStart?.(),
    output: (_stepId, stream, _offset, data) => options.onOutput(stream, data),
    stepEnd: () => {},
    // remoting's output goes to the diagnostics and the log copy, which never push back.
    flow: { hasRoom: () => true, waitForRoom: () => Promise.resolve() },
  };
  const outcome = await runJob({
    job: {
      id: STEP_ID,
      env: {},
      mask: [],
      steps: [{ id: STEP_ID, argv: options.argv, env: {}, continueOnError: false }],
    },
    workspace: options.cwd,
    agentName: STEP_ID,
    baseEnv: options.env,
    graceMs: options.graceMs,
    drainMs: options.drainMs,
    frameMaxBytes: 65_536,
    frameFlushMs: 0,
    deadline: options.deadline,
    disk: options.disk,
    monitorIntervalMs: options.monitorIntervalMs,
    mask: options.mask,
    sink,
    logger: options.logger,
    signal: options.signal,
    ...(options.killNow ? { killNow: options.killNow } : {}),
  });
  const step = outcome.steps[0]?.outcome;
  return {
    reason: step?.reason ?? outcome.reason,
    exitCode: step?.exitCode ?? null,
    signal: step?.signal ?? null,
    ...((step?.message ?? outcome.message) !== undefined
      ? { message: step?.message ?? outcome.message }
      : {}),
    durationMs: step?.durationMs ?? 0,
    started: step !== undefined,
    peakRssBytes: step?.peakRssBytes ?? null,
    diskUsedBytes: outcome.diskUsedBytes,
  };
};

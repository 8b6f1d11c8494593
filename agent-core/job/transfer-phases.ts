import type { AgentConfig } from "../config/config.ts";
import { type DeadlinePlan, msUntilStop } from "../limits/deadline.ts";
import { diskBudgetBytes, filesystemSpace } from "../limits/disk-budget.ts";
import type { Logger } from "../logger.ts";
import { setLongTimeout } from "../long-timer.ts";
import type { Job, StepReason, TransferResult } from "../protocol/messages.ts";
import type { CacheReport, CacheStore, PreparedCaches } from "../workspace/caches.ts";
import type { WorkspaceDownload } from "../workspace/download.ts";
import type { JobOutcome } from "./run-job.ts";
import {
  type ArtifactChannel,
  cacheRequestFor,
  seedFailureOutcome,
  seedWorkspace,
  uploadArtifacts,
  withArtifactsResult,
} from "./transfers.ts";

/** Bytes of the seed asked for at once (two requests are kept outstanding: 2 MiB buffered at most). */
export const SEED_WINDOW_BYTES = 1_048_576;
/** Bytes of an `artifact` frame: with its header it fits the controller's 1 MiB `maxPayload`. */
export const ARTIFACT_FRAME_BYTES = 262_144;

/** What the phases need of the job's channel. */
export interface TransferPort {
  /** Aborted (with a StepReason) when the job must stop. */
  readonly jobSignal: AbortSignal;
  downloadWorkspace(spec: NonNullable<Job["workspace"]>, windowBytes: number): WorkspaceDownload;
  readonly artifacts: ArtifactChannel;
}

export interface TransferPhasesOptions {
  job: Job;
  workspace: string;
  config: AgentConfig;
  deadline: DeadlinePlan;
  port: TransferPort;
  /** The agent process's warm caches. */
  caches: CacheStore;
  /** A second signal: the artifacts' upload stops too. */
  killNow?: AbortSignal;
  logger: Logger;
  /**
   * Runs the steps with the caches' variables added to the base environment, and the disk cap
   * left once the seed is on disk (null: the free space alone).
   */
  runSteps(cacheEnv: Record<string, string>, diskLimitBytes: number | null): Promise<JobOutcome>;
}

export interface TransferPhasesResult {
  outcome: JobOutcome;
  /** For `job-end`: how the seed and the artifacts went (absent when the job has neither). */
  transfers?: { workspace?: TransferResult; artifacts?: TransferResult };
  caches?: CacheReport;
}

/**
 * A job's life around its steps: warm caches made ready (evictions, hits, misses), the workspace
 * seeded from the controller's archive, the steps run, the artifacts sent back when `when`
 * matches, and the caches released for the next job. A seed that is refused ends the job before
 * its first step; artifacts that fail fail a job whose steps succeeded. Throws only what
 * preparing the caches throws (a WorkspaceError), which the caller reports like a workspace that
 * could not be created.
 */
export async function runJobWithTransfers(options: TransferPhasesOptions): Promise<TransferPhasesResult> {
  const { job, config, port, logger } = options;
  const request = cacheRequestFor(job, config);
  let prepared: PreparedCaches | undefined;
  if (request !== undefined) {
    prepared = await options.caches.prepare(request);
    logger.info("caches ready", {
      hits: prepared.report.hits,
      misses: prepared.report.misses,
      evictions: prepared.report.evictions.length,
    });
  }
  const stop = stopAtDeadline(options.deadline, [port.jobSignal]);
  try {
    const transfers: NonNullable<TransferPhasesResult["transfers"]> = {};
    let diskLimitBytes = config.diskBudgetBytes;
    if (job.workspace !== undefined) {
      const freeBefore = freeBytes(config.workDir);
      transfers.workspace = await seedWorkspace({
        workspace: options.workspace,
        spec: job.workspace,
        source: port.downloadWorkspace(job.workspace, SEED_WINDOW_BYTES),
        maxBytes: seedBudget(config),
        maxEntries: config.maxArchiveEntries,
        signal: stop.signal,
        logger,
      });
      if (transfers.workspace.status === "failed") {
        const stopReason = stop.signal.aborted ? (stop.signal.reason as StepReason) : undefined;
        return {
          outcome: {
            ...seedFailureOutcome(transfers.workspace, stopReason),
            durationMs: 0,
            steps: [],
            agentPeakRssBytes: process.memoryUsage.rss(),
            diskUsedBytes: null,
          },
          transfers: { ...transfers, ...(job.artifacts ? { artifacts: notSeeded() } : {}) },
          ...(prepared ? { caches: prepared.report } : {}),
        };
      }
      // The seed counts against a configured cap; against the free space it counts by itself.
      const seeded = Math.max(0, freeBefore - freeBytes(config.workDir));
      if (diskLimitBytes !== null) diskLimitBytes = Math.max(0, diskLimitBytes - seeded);
    }
    let outcome = await options.runSteps(prepared?.env ?? {}, diskLimitBytes);
    if (job.artifacts !== undefined) {
      const upload = stopAtDeadline(options.deadline, options.killNow ? [options.killNow] : []);
      try {
        transfers.artifacts = await uploadArtifacts({
          workspace: options.workspace,
          spec: job.artifacts,
          outcome,
          channel: port.artifacts,
          frameBytes: ARTIFACT_FRAME_BYTES,
          maxEntries: config.maxArchiveEntries,
          signal: upload.signal,
          logger,
        });
      } finally {
        upload.dispose();
      }
      outcome = withArtifactsResult(outcome, transfers.artifacts);
    }
    return {
      outcome,
      ...(job.workspace !== undefined || job.artifacts !== undefined ? { transfers } : {}),
      ...(prepared ? { caches: prepared.report } : {}),
    };
  } finally {
    stop.dispose();
    if (prepared !== undefined) options.caches.release(prepared);
  }
}

function notSeeded(): TransferResult {
  return { status: "skipped", message: "the workspace was not seeded, so no step ran" };
}

/** The job's disk budget now (after the caches' evictions): what the seed's contents may take. */
function seedBudget(config: AgentConfig): number {
  try {
    return diskBudgetBytes(config.workDir, config.diskBudgetBytes, config.diskHeadroomBytes);
  } catch {
    return config.diskBudgetBytes ?? Number.MAX_SAFE_INTEGER;
  }
}

function freeBytes(path: string): number {
  try {
    return filesystemSpace(path).freeBytes;
  } catch {
    return 0;
  }
}

/** An abort signal that follows `signals` and fires `deadline` at the deadline's stop; dispose it after use. */
function stopAtDeadline(
  plan: DeadlinePlan,
  signals: AbortSignal[],
): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const forwards = signals.map((signal) => {
    const forward = () => controller.abort(signal.reason);
    signal.addEventListener("abort", forward, { once: true });
    if (signal.aborted) forward();
    return () => signal.removeEventListener("abort", forward);
  });
  const stopIn = msUntilStop(plan);
  // A deadline may be months away (AGENT_MAX_DURATION_MS): past setTimeout's reach, in hops.
  const timer =
    stopIn === null
      ? undefined
      : setLongTimeout(() => controller.abort("deadline" satisfies StepReason), Math.max(0, stopIn), {
          unref: true,
        });
  return {
    signal: controller.signal,
    dispose: () => {
      timer?.clear();
      for (const remove of forwards) remove();
    },
  };
}

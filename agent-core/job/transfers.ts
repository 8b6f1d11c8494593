import { createHash } from "node:crypto";
import { ArchiveError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import {
  type ArtifactsEnd,
  type ArtifactsSpec,
  type Job,
  SKIPPED_LISTED,
  type StepReason,
  type TransferResult,
} from "../protocol/messages.ts";
import { extractArchive } from "../workspace/extract.ts";
import { packSelection } from "../workspace/pack.ts";
import { selectPaths } from "../workspace/select.ts";
import { type ArtifactSink, sendArchive } from "../workspace/upload.ts";
import type { JobOutcome } from "./run-job.ts";

/** The SHA-256 of no bytes: the digest of an artifact set that selected nothing. */
const EMPTY_SHA256 = createHash("sha256").digest("hex");

export interface SeedOptions {
  /** The job's fresh workspace. */
  workspace: string;
  /** `job.workspace`: the archive's length and digest, checked at the end. */
  spec: NonNullable<Job["workspace"]>;
  /** The archive's bytes, in order (a `WorkspaceDownload`). */
  source: AsyncIterable<Uint8Array>;
  /** The job's disk budget: the archive's contents may not exceed it. */
  maxBytes: number;
  maxEntries: number;
  /** Aborting stops the seed (the job was cancelled, interrupted, or its deadline came). */
  signal: AbortSignal;
  logger: Logger;
}

/**
 * Extracts the job's workspace archive before its first step. Resolves with the transfer's
 * result: `done` (digest checked), or `failed` naming the rule, the entry and why (an unsafe
 * entry, over the budget, damaged, a digest that differs, stopped). Never throws.
 */
export async function seedWorkspace(options: SeedOptions): Promise<TransferResult> {
  const { spec, logger } = options;
  try {
    const summary = await extractArchive(options.source, {
      dir: options.workspace,
      maxBytes: options.maxBytes,
      maxEntries: options.maxEntries,
      expected: spec,
      signal: options.signal,
    });
    logger.info("workspace seeded", {
      bytes: spec.bytes,
      entries: summary.entries,
      contentBytes: summary.contentBytes,
    });
    return {
      status: "done",
      bytes: summary.digest.bytes,
      sha256: summary.digest.sha256,
      entries: summary.entries,
    };
  } catch (error) {
    const failure = asTransferFailure(error, options.signal);
    logger.warn("the workspace archive was refused", { code: failure.code, entry: failure.entry });
    return failure;
  }
}

/** Where the artifacts go: their frames, then `artifacts-end` (both sequenced job messages). */
export interface ArtifactChannel extends ArtifactSink {
  end(fields: Omit<ArtifactsEnd, "v" | "type" | "seq" | "jobId">): void;
}

export interface ArtifactOptions {
  workspace: string;
  spec: ArtifactsSpec;
  /** The job's outcome, for `when`. */
  outcome: Pick<JobOutcome, "status" | "reason">;
  channel: ArtifactChannel;
  frameBytes: number;
  maxEntries: number;
  /** Aborting stops the upload (interrupt, deadline): `artifacts-end` then carries the error. */
  signal: AbortSignal;
  logger: Logger;
}

/** Whether artifacts are due after this outcome: `on-failure` does not cover a cancelled job. */
export function artifactsDue(spec: ArtifactsSpec, outcome: Pick<JobOutcome, "status" | "reason">): boolean {
  switch (spec.when) {
    case "always":
      return true;
    case "on-success":
      return outcome.status === "succeeded";
    case "on-failure":
      return outcome.status === "failed" && outcome.reason !== "cancelled";
  }
}

/**
 * After the steps: selects the artifacts, packs them and streams them to the controller under
 * flow control, then sends `artifacts-end` with the stream's length and SHA-256 (or the error
 * that stopped it, after which the controller drops what it got). Resolves with the result for
 * `job-end`; never throws.
 */
export async function uploadArtifacts(options: ArtifactOptions): Promise<TransferResult> {
  const { spec, outcome, channel, logger } = options;
  if (!artifactsDue(spec, outcome)) {
    return {
      status: "skipped",
      message: `the job ${outcome.status === "succeeded" ? "succeeded" : `failed (${outcome.reason})`}; artifacts are kept ${spec.when}`,
    };
  }
  let selection: Awaited<ReturnType<typeof selectPaths>> | undefined;
  try {
    selection = await selectPaths(options.workspace, {
      paths: spec.paths,
      exclude: spec.exclude,
      maxEntries: options.maxEntries,
    });
    const listed = {
      entries: selection.entries.length,
      skipped: selection.skipped.slice(0, SKIPPED_LISTED),
      skippedCount: selection.skipped.length,
      unmatched: selection.unmatched,
    };
    if (selection.unmatched.length > 0)
      logger.warn("artifact patterns matched nothing", { patterns: selection.unmatched });
    if (selection.entries.length === 0) {
      channel.end({ ...listed, bytes: 0, sha256: EMPTY_SHA256 });
      return { status: "done", bytes: 0, sha256: EMPTY_SHA256, entries: 0 };
    }
    const packed = await packSelection(options.workspace, selection);
    await sendArchive(packed.stream, channel, options.frameBytes, options.signal);
    const digest = await packed.done;
    channel.end({ ...listed, bytes: digest.bytes, sha256: digest.sha256 });
    logger.info("artifacts sent", { entries: listed.entries, bytes: digest.bytes });
    return { status: "done", bytes: digest.bytes, sha256: digest.sha256, entries: listed.entries };
  } catch (error) {
    const failure = asTransferFailure(error, options.signal);
    logger.warn("the artifacts could not be sent", { code: failure.code, entry: failure.entry });
    channel.end({
      entries: selection?.entries.length ?? 0,
      skipped: selection?.skipped.slice(0, SKIPPED_LISTED) ?? [],
      skippedCount: selection?.skipped.length ?? 0,
      unmatched: selection?.unmatched ?? [],
      error: { code: failure.code, message: failure.message, entry: failure.entry },
    });
    return failure;
  }
}

/** An error as a `failed` transfer result: an ArchiveError's code and entry, an abort as ABORTED. */
function asTransferFailure(
  error: unknown,
  signal: AbortSignal,
): Extract<TransferResult, { status: "failed" }> {
  if (error instanceof ArchiveError) {
    return { status: "failed", code: error.code, message: error.message.slice(0, 4000), entry: error.entry };
  }
  if (signal.aborted) {
    return {
      status: "failed",
      code: "AGENT_ERR_ARCHIVE_ABORTED",
      message: `the transfer was stopped before its end (${String(signal.reason)})`,
      entry: null,
    };
  }
  return {
    status: "failed",
    code: "AGENT_ERR_ARCHIVE_IO",
    message: `the transfer failed: ${(error as Error).message}`.slice(0, 4000),
    entry: null,
  };
}

/**
 * How a seed that did not arrive ends the job: before its first step, `failed` with reason `disk`
 * for contents over the budget and `error` otherwise, the message naming the rule and the entry.
 * A seed stopped by the job's own stop (cancel, interrupt, deadline) ends with that reason.
 */
export function seedFailureOutcome(
  result: Extract<TransferResult, { status: "failed" }>,
  stopReason: StepReason | undefined,
): { status: "failed"; reason: StepReason; message: string } {
  if (result.code === "AGENT_ERR_ARCHIVE_ABORTED" && stopReason !== undefined) {
    return {
      status: "failed",
      reason: stopReason,
      message: `the job was stopped (${stopReason}) while its workspace was seeded`,
    };
  }
  return {
    status: "failed",
    reason: result.code === "AGENT_ERR_ARCHIVE_TOO_LARGE" ? "disk" : "error",
    message: `the workspace archive was refused: ${result.message}`,
  };
}

/** Failed artifacts fail a job whose steps succeeded (reason `error`); any other outcome stays. */
export function withArtifactsResult<T extends Pick<JobOutcome, "status" | "reason" | "message">>(
  outcome: T,
  result: TransferResult,
): T {
  if (result.status !== "failed" || outcome.status !== "succeeded") return outcome;
  return {
    ...outcome,
    status: "failed",
    reason: "error",
    message: `the artifacts could not be kept: ${result.message}`,
  };
}

/** The cache store's request for a job: its need is `diskNeedBytes`, else the configured budget cap, else 0, plus the headroom. */
export function cacheRequestFor(
  job: Job,
  config: { diskBudgetBytes: number | null; diskHeadroomBytes: number },
): { trust: string; names: string[]; needBytes: number } | undefined {
  if (job.caches === undefined) return undefined;
  const need = job.diskNeedBytes ?? config.diskBudgetBytes ?? 0;
  return { trust: job.caches.trust, names: job.caches.names, needBytes: need + config.diskHeadroomBytes };
}

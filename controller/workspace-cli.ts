import { createReadStream, statSync } from "node:fs";
import { resolve } from "node:path";
import {
  type ExtractSummary,
  extractArchive,
  type Logger,
  packSelection,
  selectPaths,
} from "../agent-core/index.ts";
import type { ControllerClient, WorkspaceUploadInfo } from "./client.ts";
import { ControllerApiError } from "./errors.ts";

/** Most entries the CLI packs from a directory, and accepts when it extracts artifacts. */
export const CLI_MAX_ENTRIES = 1_000_000;

/**
 * Packs a directory for a workspace seed and uploads it, streaming: selects everything but
 * `exclude` without following links (a link pointing out of the directory is left out, with a
 * warning), packs it, and sends it as it is packed. Throws ControllerApiError 400
 * (CONTROLLER_ERR_JOB_FILE) for a directory that does not exist.
 */
export async function uploadDirectory(
  client: ControllerClient,
  dir: string,
  exclude: readonly string[],
  logger: Logger,
): Promise<WorkspaceUploadInfo> {
  const root = resolve(dir);
  if (!statSync(root, { throwIfNoEntry: false })?.isDirectory()) {
    throw new ControllerApiError(
      400,
      "CONTROLLER_ERR_JOB_FILE",
      `the workspace directory ${root} does not exist`,
    );
  }
  const selection = await selectPaths(root, { paths: ["**"], exclude, maxEntries: CLI_MAX_ENTRIES });
  for (const skipped of selection.skipped) {
    logger.warn("left out of the workspace", { path: skipped.path, reason: skipped.reason });
  }
  const packed = await packSelection(root, selection);
  const [upload] = await Promise.all([client.uploadWorkspace(packed.stream), packed.done]);
  return upload;
}

/** Uploads an archive file as it is (tar, or compressed tar). */
export function uploadArchive(client: ControllerClient, path: string): Promise<WorkspaceUploadInfo> {
  if (!statSync(path, { throwIfNoEntry: false })?.isFile()) {
    throw new ControllerApiError(
      400,
      "CONTROLLER_ERR_JOB_FILE",
      `the workspace archive ${path} does not exist`,
    );
  }
  return client.uploadWorkspace(createReadStream(path));
}

/**
 * Fetches a job's artifacts into `outDir` with the agent's safe extraction (nothing lands outside
 * `outDir`; links may not leave it), checking the digest the controller stored them with.
 */
export async function fetchArtifacts(
  client: ControllerClient,
  jobId: string,
  outDir: string,
): Promise<ExtractSummary> {
  const artifacts = await client.artifacts(jobId);
  return extractArchive(artifacts.stream, {
    dir: resolve(outDir),
    maxBytes: Number.MAX_SAFE_INTEGER,
    maxEntries: CLI_MAX_ENTRIES,
    expected: { bytes: artifacts.bytes, sha256: artifacts.sha256 },
  });
}

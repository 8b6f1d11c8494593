import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { isAbsolute, join, relative, resolve } from "node:path";
import { WorkspaceError } from "../errors.ts";

/** Creates a fresh, empty workspace for a job: `<workDir>/workspace/<jobId>-<random>`. */
export async function createWorkspace(workDir: string, jobId: string): Promise<string> {
  const dir = join(workDir, "workspace", `${jobId}-${randomBytes(4).toString("hex")}`);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new WorkspaceError(`cannot create the workspace ${dir}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return dir;
}

/** Removes a workspace and everything in it. */
export async function removeWorkspace(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
  } catch (error) {
    throw new WorkspaceError(`cannot remove the workspace ${dir}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/**
 * Resolves a step's working directory inside the workspace. Throws WorkspaceError when the
 * path would leave it (absolute paths, `..`).
 */
export function resolveInWorkspace(workspace: string, path: string | undefined): string {
  if (path === undefined || path === "" || path === ".") return workspace;
  const target = resolve(workspace, path);
  const rel = relative(workspace, target);
  if (isAbsolute(path) || rel.startsWith("..") || isAbsolute(rel)) {
    throw new WorkspaceError(`working directory ${JSON.stringify(path)} is outside the workspace`);
  }
  if (!existsSync(target)) {
    throw new WorkspaceError(`working directory ${JSON.stringify(path)} does not exist in the workspace`);
  }
  return target;
}

import { randomBytes } from "node:crypto";
import { realpathSync, statSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
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
 * Resolves a step's working directory inside the workspace, by real path: a symbolic link that
 * leads out of the workspace (`ln -s / link`, then `workingDir: link/etc`) is refused like `..`.
 * Returns the real path (the directory the step will run in). Throws WorkspaceError naming the
 * directory when the path leaves the workspace, does not exist, is not a directory, or when the
 * workspace itself is gone (removed by an earlier step).
 */
export function resolveInWorkspace(workspace: string, path: string | undefined): string {
  let root: string;
  try {
    root = realpathSync(workspace);
  } catch (error) {
    throw new WorkspaceError(
      `the job's workspace ${workspace} no longer exists (was it removed by an earlier step?)`,
      { cause: error },
    );
  }
  if (path === undefined || path === "" || path === ".") return root;
  const shown = JSON.stringify(path);
  if (isAbsolute(path) || leaves(relative(workspace, resolve(workspace, path)))) {
    throw new WorkspaceError(`working directory ${shown} is outside the workspace`);
  }
  let target: string;
  try {
    target = realpathSync(resolve(root, path));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new WorkspaceError(
      code === "ENOTDIR"
        ? `working directory ${shown}: a component of it is not a directory`
        : `working directory ${shown} does not exist in the workspace ${workspace}`,
      { cause: error },
    );
  }
  if (leaves(relative(root, target))) {
    throw new WorkspaceError(
      `working directory ${shown} resolves to ${target}, outside the workspace (through a symbolic link)`,
    );
  }
  if (!statSync(target).isDirectory()) {
    throw new WorkspaceError(`working directory ${shown} is not a directory`);
  }
  return target;
}

/** Whether a path relative to the workspace leads out of it. */
function leaves(rel: string): boolean {
  return rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel);
}

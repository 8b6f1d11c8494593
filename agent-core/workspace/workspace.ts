import { randomBytes } from "node:crypto";
import { lstatSync, realpathSync, statSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { clip } from "../clip.ts";
import { WorkspaceError } from "../errors.ts";
import { NAME_MAX, PATH_MAX } from "../runner/spawn-errors.ts";

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
    // The workspace itself, not what a link put in its place (`rm -rf $AGENT_WORKSPACE;
    // ln -s / $AGENT_WORKSPACE` would otherwise move every later step to /).
    if (!lstatSync(workspace).isDirectory()) {
      throw new WorkspaceError(
        `the job's workspace ${workspace} is no longer a directory (an earlier step replaced it${lstatSync(workspace).isSymbolicLink() ? " with a symbolic link" : ""})`,
      );
    }
    root = realpathSync(workspace);
  } catch (error) {
    if (error instanceof WorkspaceError) throw error;
    throw new WorkspaceError(
      `the job's workspace ${workspace} no longer exists (was it removed by an earlier step?)`,
      { cause: error },
    );
  }
  if (path === undefined || path === "" || path === ".") return root;
  const shown = JSON.stringify(clip(path, 120));
  if (path.includes("\0")) {
    throw new WorkspaceError(
      `working directory ${shown} contains a NUL byte (at character ${path.indexOf("\0")}), which no path can hold`,
    );
  }
  const tooLong = pathTooLong(resolve(root, path));
  if (tooLong !== undefined) throw new WorkspaceError(`working directory ${shown}: ${tooLong}`);
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
        : code === "ELOOP"
          ? `working directory ${shown}: too many levels of symbolic links (ELOOP)`
          : `working directory ${shown} does not exist in the workspace ${workspace}`,
      { cause: error },
    );
  }
  if (leaves(relative(root, target))) {
    throw new WorkspaceError(
      `working directory ${shown} resolves to ${clip(target, 120)}, outside the workspace (through a symbolic link)`,
    );
  }
  if (!statSync(target).isDirectory()) {
    throw new WorkspaceError(`working directory ${shown} is not a directory`);
  }
  return target;
}

/** Why Linux cannot use `path` (over PATH_MAX, or a component over NAME_MAX), or undefined. */
function pathTooLong(path: string): string | undefined {
  const bytes = Buffer.byteLength(path, "utf8");
  if (bytes >= PATH_MAX) {
    return `its path is ${bytes.toLocaleString("en-US")} bytes, over Linux's limit of ${PATH_MAX.toLocaleString("en-US")} bytes for a path (PATH_MAX)`;
  }
  const longest = Math.max(...path.split(sep).map((part) => Buffer.byteLength(part, "utf8")));
  if (longest > NAME_MAX) {
    return `a component of it is ${longest.toLocaleString("en-US")} bytes, over Linux's limit of ${NAME_MAX} bytes for a file name (NAME_MAX)`;
  }
  return undefined;
}

/** Whether a path relative to the workspace leads out of it. */
function leaves(rel: string): boolean {
  return rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel);
}

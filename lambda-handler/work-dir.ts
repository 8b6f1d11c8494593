import { existsSync, readdirSync } from "node:fs";
import { chmod, mkdir, readdir, rm, rmdir } from "node:fs/promises";
import { isAbsolute, join, relative } from "node:path";
import { WorkspaceError } from "../agent-core/start.ts";

/**
 * The agent's files under the function's /tmp. /tmp survives between warm invocations, so every
 * invocation starts from empty HOME, TMPDIR and workspace dirs and removes them when it ends:
 * nothing a job writes (credentials in ~/.git-credentials, caches, temp files) reaches the next.
 */
export interface WorkDirLayout {
  root: string;
  /** HOME of the job's steps. */
  home: string;
  /** TMPDIR of the job's steps. */
  tmp: string;
  /** Parent of the job's workspace (the agent core creates `<root>/workspace/<job>-<random>`). */
  workspaces: string;
}

export function layoutOf(root: string): WorkDirLayout {
  return {
    root,
    home: join(root, "home"),
    tmp: join(root, "tmp"),
    workspaces: join(root, "workspace"),
  };
}

/**
 * Makes the work dir ready for one invocation: removes what an earlier invocation left behind
 * (one stopped by the platform at its timeout never cleaned up), then creates empty HOME and
 * TMPDIR. Returns the leftovers it removed, for a diagnostic.
 */
export async function prepareWorkDir(layout: WorkDirLayout): Promise<string[]> {
  const leftovers = owned(layout).filter((dir) => existsSync(dir) && readdirSync(dir).length > 0);
  try {
    await removeOwned(layout);
    await mkdir(layout.home, { recursive: true, mode: 0o700 });
    await mkdir(layout.tmp, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new WorkspaceError(`cannot prepare the work dir ${layout.root}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return leftovers;
}

/** Removes everything the invocation created under the work dir, and the work dir when it is left empty. */
export async function cleanWorkDir(layout: WorkDirLayout): Promise<void> {
  try {
    await removeOwned(layout);
    await rmdir(layout.root);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // The root holds something this invocation did not create (or is already gone): keep it.
    if (code === "ENOTEMPTY" || code === "EEXIST" || code === "ENOENT") return;
    throw new WorkspaceError(`cannot clean the work dir ${layout.root}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

function owned(layout: WorkDirLayout): string[] {
  return [layout.workspaces, layout.home, layout.tmp];
}

async function removeOwned(layout: WorkDirLayout): Promise<void> {
  for (const dir of owned(layout)) await removeTree(dir);
}

/** `rm -rf`, also through directories a job made read-only (Go's module cache does). */
async function removeTree(dir: string): Promise<void> {
  const remove = () => rm(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
  try {
    await remove();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EACCES" && code !== "EPERM") throw error;
    await makeWritable(dir);
    await remove();
  }
}

async function makeWritable(dir: string): Promise<void> {
  await chmod(dir, 0o700);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) await makeWritable(join(dir, entry.name));
  }
}

/** The names in `dir` now (empty when it cannot be read). */
export function snapshotEntries(dir: string): Set<string> {
  try {
    return new Set(readdirSync(dir));
  } catch {
    return new Set();
  }
}

/**
 * Removes what appeared in `dir` since `before` (a Jenkins build's workspace under the node's
 * remote FS root), except `keep` and anything holding it. Returns the names removed; one that
 * cannot be removed is skipped (the next invocation's budget shows it).
 */
export async function removeNewEntries(
  dir: string,
  before: ReadonlySet<string>,
  keep: string[],
): Promise<string[]> {
  const removed: string[] = [];
  for (const name of snapshotEntries(dir)) {
    if (before.has(name)) continue;
    const path = join(dir, name);
    const holdsKept = keep.some((kept) => {
      const rel = relative(path, kept);
      return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
    });
    if (holdsKept) continue;
    try {
      await removeTree(path);
      removed.push(name);
    } catch {
      // In use or not ours: left for the next invocation's leftovers check.
    }
  }
  return removed;
}

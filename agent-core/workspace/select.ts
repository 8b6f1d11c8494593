import type { Dirent, Stats } from "node:fs";
import { lstat, readdir, readlink } from "node:fs/promises";
import { join, posix } from "node:path";
import picomatch from "picomatch";
import { ArchiveError } from "../errors.ts";
import { linkTargetRefusal, patternRefusal } from "./entry-rules.ts";

export type SelectedKind = "file" | "directory" | "symlink";

/** Why a matched path is left out of an archive. */
export type SkipReason =
  /** A symbolic link whose target leaves the root (or would be refused on extraction). */
  | "link-outside-workspace"
  /** A FIFO, socket or device. */
  | "special-file";

export interface Selection {
  /** What to pack, in path order (a directory before what it holds); paths relative, `/`-separated. */
  entries: { path: string; kind: SelectedKind }[];
  skipped: { path: string; reason: SkipReason }[];
  /** The `paths` patterns that matched nothing. */
  unmatched: string[];
}

export interface SelectOptions {
  /**
   * Glob patterns (picomatch: `*`, `**`, `?`, `[...]`, `{a,b}`), relative to the root. A matched
   * directory brings everything below it; `dist` and `dist/**` select the same tree. Dot files
   * match like any other.
   */
  paths: readonly string[];
  /** Patterns of paths to leave out (a directory left out takes everything below it along). */
  exclude?: readonly string[];
  /** Most entries selected; one more rejects with AGENT_ERR_ARCHIVE_TOO_MANY_ENTRIES. */
  maxEntries: number;
}

/**
 * Finds what artifact patterns select under `root`, without ever following a symbolic link:
 * a link is selected as a link when its target stays inside `root` (by the same rule extraction
 * applies), and skipped with a reason when it does not; a pattern whose fixed part goes through a
 * link matches nothing below it. FIFOs, sockets and devices are skipped. Throws
 * {@link ArchiveError} `AGENT_ERR_ARCHIVE_BAD_PATH` for a pattern that is absolute or has `..`,
 * and `AGENT_ERR_ARCHIVE_TOO_MANY_ENTRIES` past `maxEntries`.
 *
 * @example
 * const selection = await selectPaths(workspace, { paths: ["dist/**", "reports/*.xml"], maxEntries: 100_000 });
 */
export async function selectPaths(root: string, options: SelectOptions): Promise<Selection> {
  const patterns = options.paths.map(checkedPattern);
  const excluded = (options.exclude ?? []).map(checkedPattern);
  const isExcluded = excluded.length > 0 ? picomatch(excluded, { dot: true }) : () => false;
  const matchers = patterns.map((pattern) => picomatch(pattern, { dot: true }));
  const matched = new Set<number>();
  const chosen = new Map<string, SelectedKind>();
  const skipped = new Map<string, SkipReason>();

  const choose = (path: string, kind: SelectedKind) => {
    if (chosen.has(path)) return;
    if (chosen.size >= options.maxEntries) {
      throw new ArchiveError(
        "AGENT_ERR_ARCHIVE_TOO_MANY_ENTRIES",
        path,
        `the artifact patterns select more than ${options.maxEntries} entries (at ${JSON.stringify(path)})`,
      );
    }
    chosen.set(path, kind);
  };
  /** Adds one path found on disk (its lstat known), and for a directory everything below it. */
  const take = async (path: string, stats: Pick<Stats, "isFile" | "isDirectory" | "isSymbolicLink">) => {
    if (isExcluded(path)) return;
    if (stats.isSymbolicLink()) {
      const target = await readlink(join(root, path));
      if (linkTargetRefusal(path, target) === null) choose(path, "symlink");
      else skipped.set(path, "link-outside-workspace");
    } else if (stats.isDirectory()) {
      choose(path, "directory");
      for (const entry of await listDir(root, path)) await take(posix.join(path, entry.name), entry);
    } else if (stats.isFile()) choose(path, "file");
    else skipped.set(path, "special-file");
  };
  /** Walks below `dir`, taking what a pattern matches. */
  const walk = async (dir: string) => {
    for (const entry of await listDir(root, dir)) {
      const path = dir === "" ? entry.name : `${dir}/${entry.name}`;
      if (isExcluded(path)) continue;
      let hit = false;
      matchers.forEach((match, index) => {
        if (match(path)) {
          matched.add(index);
          hit = true;
        }
      });
      if (hit) await take(path, entry);
      else if (entry.isDirectory()) await walk(path);
    }
  };

  const walked = new Set<string>();
  for (const [index, pattern] of patterns.entries()) {
    const scan = picomatch.scan(pattern);
    if (!scan.isGlob && !pattern.includes("\\")) {
      // A plain path: look it up instead of walking.
      const stats = await lstatBelow(root, pattern);
      if (stats === undefined) continue;
      matched.add(index);
      await take(pattern, stats);
      continue;
    }
    const base = scan.base;
    if (walked.has(base)) continue;
    walked.add(base);
    if (base !== "" && !(await lstatBelow(root, base))?.isDirectory()) continue;
    await walk(base);
  }

  return {
    entries: [...chosen]
      .map(([path, kind]) => ({ path, kind }))
      .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)),
    skipped: [...skipped].map(([path, reason]) => ({ path, reason })),
    unmatched: patterns.filter((_, index) => !matched.has(index)),
  };
}

/** The pattern in normal form (`./a/` -> `a`); throws for one that could leave the root. */
function checkedPattern(pattern: string): string {
  const why = patternRefusal(pattern);
  if (why !== null) {
    throw new ArchiveError(
      "AGENT_ERR_ARCHIVE_BAD_PATH",
      pattern,
      `artifact pattern ${JSON.stringify(pattern)} ${why}`,
    );
  }
  const normal = pattern.replace(/^(\.\/)+/, "").replace(/\/+$/, "");
  return normal === "" || normal === "." ? "**" : normal;
}

/**
 * The lstat of `root/path` when every directory on the way is a real directory (no symbolic
 * link), else undefined (as for a missing path).
 */
async function lstatBelow(root: string, path: string): Promise<Stats | undefined> {
  const parts = path.split("/").filter((part) => part !== "" && part !== ".");
  let current = root;
  for (const [index, part] of parts.entries()) {
    current = join(current, part);
    const stats = await lstat(current).catch(() => undefined);
    if (stats === undefined) return undefined;
    if (index === parts.length - 1) return stats;
    if (!stats.isDirectory()) return undefined;
  }
  return lstat(root).catch(() => undefined);
}

async function listDir(root: string, dir: string): Promise<Dirent[]> {
  try {
    return await readdir(join(root, dir), { withFileTypes: true });
  } catch (error) {
    throw new ArchiveError(
      "AGENT_ERR_ARCHIVE_IO",
      dir || ".",
      `cannot list ${JSON.stringify(dir || ".")}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}

import { posix } from "node:path";
import type { ArchiveErrorCode } from "../errors.ts";

/**
 * The pure path rules of safe extraction and packing, on archive paths (always `/`-separated,
 * relative to the workspace). No I/O: the extractor and the packer apply them to each entry.
 */

/** Longest path accepted, in UTF-8 bytes (Linux's PATH_MAX less the terminating NUL). */
export const MAX_PATH_BYTES = 4095;
/** Longest path component accepted, in UTF-8 bytes (NAME_MAX). */
export const MAX_NAME_BYTES = 255;
/** Deepest path accepted, in components (node-tar's own default). */
export const MAX_PATH_DEPTH = 1024;

/** Why a path or link target breaks a rule: the code to raise and the words for the message. */
export interface PathRefusal {
  code: ArchiveErrorCode;
  why: string;
}

/**
 * The normal form of an entry's path (`./a//b/` -> `a/b`; the workspace root itself -> `""`),
 * or why the entry may not be written: an absolute path, a `..` component, a path too long or
 * too deep.
 *
 * @example
 * normalizeEntryPath("./src/main.c"); // { path: "src/main.c" }
 * normalizeEntryPath("../etc/passwd"); // { refusal: { code: "AGENT_ERR_ARCHIVE_PARENT_PATH", ... } }
 */
export function normalizeEntryPath(raw: string): { path: string } | { refusal: PathRefusal } {
  if (raw.includes("\0"))
    return { refusal: { code: "AGENT_ERR_ARCHIVE_BAD_PATH", why: "contains a NUL byte" } };
  if (isAbsoluteAnywhere(raw)) {
    return { refusal: { code: "AGENT_ERR_ARCHIVE_ABSOLUTE_PATH", why: "is an absolute path" } };
  }
  const parts = raw.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.includes("..")) {
    return { refusal: { code: "AGENT_ERR_ARCHIVE_PARENT_PATH", why: "has a `..` component" } };
  }
  const path = parts.join("/");
  const tooLong = tooLongWhy(path, parts);
  if (tooLong !== null) return { refusal: { code: "AGENT_ERR_ARCHIVE_BAD_PATH", why: tooLong } };
  return { path };
}

/**
 * Checks a symbolic link's target against the rules that keep every link inside the workspace:
 * the target is relative, its `..` components come only at its start, and resolved from the
 * link's directory it stays inside the workspace (it may name the workspace root itself).
 * `..` only at the start is what makes the lexical check sound: every directory a link lies in
 * is a real directory (nothing is written below a link), so climbing from it is what it looks
 * like; a `..` after a component could climb out of a directory reached through another link.
 * Returns null when the target is safe.
 *
 * @param linkPath the link's own path, normalized ({@link normalizeEntryPath})
 * @param target the link's target as stored
 */
export function linkTargetRefusal(linkPath: string, target: string): PathRefusal | null {
  const code = "AGENT_ERR_ARCHIVE_LINK_ESCAPE";
  if (target === "") return { code, why: "has an empty link target" };
  if (target.includes("\0")) return { code, why: "has a link target with a NUL byte" };
  if (isAbsoluteAnywhere(target))
    return { code, why: `links to the absolute path ${JSON.stringify(target)}` };
  const parts = target.split("/").filter((part) => part !== "" && part !== ".");
  const ups = parts.findIndex((part) => part !== "..");
  const leading = ups === -1 ? parts.length : ups;
  if (parts.slice(leading).includes("..")) {
    return { code, why: `links to ${JSON.stringify(target)}, which uses \`..\` after its start` };
  }
  const depth = posix.dirname(linkPath) === "." ? 0 : posix.dirname(linkPath).split("/").length;
  if (leading > depth) {
    return { code, why: `links to ${JSON.stringify(target)}, outside the workspace` };
  }
  return null;
}

/** The first of `links` (normalized paths of symbolic links) that `path` lies strictly below, if any. */
export function linkAbove(path: string, links: ReadonlySet<string>): string | undefined {
  if (links.size === 0) return undefined;
  let end = path.indexOf("/");
  while (end !== -1) {
    const prefix = path.slice(0, end);
    if (links.has(prefix)) return prefix;
    end = path.indexOf("/", end + 1);
  }
  return undefined;
}

/**
 * Whether a glob pattern (artifact `paths`/`exclude`, relative to the workspace) is acceptable:
 * not empty, relative, with no `..` component. Returns why not, or null.
 */
export function patternRefusal(pattern: string): string | null {
  if (pattern.trim() === "") return "must not be empty";
  if (pattern.includes("\0")) return "must not contain a NUL byte";
  if (isAbsoluteAnywhere(pattern)) return "must be relative to the workspace";
  if (pattern.split("/").includes("..")) return "must not have a `..` component";
  return null;
}

/** `/x`, `\\x` and `C:\x` / `C:/x`: absolute on POSIX or on Windows (an archive may come from either). */
function isAbsoluteAnywhere(path: string): boolean {
  return path.startsWith("/") || path.startsWith("\\") || /^[A-Za-z]:[\\/]/.test(path);
}

function tooLongWhy(path: string, parts: string[]): string | null {
  const bytes = Buffer.byteLength(path, "utf8");
  if (bytes > MAX_PATH_BYTES) return `is ${bytes} bytes long (at most ${MAX_PATH_BYTES})`;
  if (parts.length > MAX_PATH_DEPTH) return `is ${parts.length} levels deep (at most ${MAX_PATH_DEPTH})`;
  const long = parts.find((part) => Buffer.byteLength(part, "utf8") > MAX_NAME_BYTES);
  if (long !== undefined)
    return `has a component of ${Buffer.byteLength(long, "utf8")} bytes (at most ${MAX_NAME_BYTES})`;
  return null;
}

import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { link, lstat, mkdir, rmdir, symlink, unlink, utimes } from "node:fs/promises";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { ReadEntry } from "tar";
import { ArchiveError, type ArchiveErrorCode } from "../errors.ts";
import { Digester, type StreamDigest } from "./digest.ts";
import { linkAbove, linkTargetRefusal, normalizeEntryPath } from "./entry-rules.ts";

export interface ExtractOptions {
  /** The directory to extract into (created when missing); nothing is written outside it. */
  dir: string;
  /** Budget for the entries' contents, in bytes: the sum of file sizes may not exceed it. */
  maxBytes: number;
  /** Most entries accepted (files, directories, links). */
  maxEntries: number;
  /** When given, the stream's digest must match it, else AGENT_ERR_ARCHIVE_CHECKSUM. */
  expected?: StreamDigest;
  /** Aborting stops the extraction after the entry being written (rejects with the signal's reason). */
  signal?: AbortSignal;
  /**
   * Check every rule and read the whole stream, but write nothing (`dir` is not touched): what a
   * controller does to refuse a bad upload before any agent sees it.
   */
  dryRun?: boolean;
}

export interface ExtractSummary {
  /** Entries written (the archive's entry for the root directory itself, if any, is not counted). */
  entries: number;
  files: number;
  directories: number;
  symlinks: number;
  hardlinks: number;
  /** Sum of the files' sizes. */
  contentBytes: number;
  /** Length and SHA-256 of the stream as received (compressed, if it was). */
  digest: StreamDigest;
}

const FILE_TYPES = new Set(["File", "OldFile", "ContiguousFile"]);

/**
 * Extracts a tar stream (plain, gzip, brotli or zstd: node-tar's parser sniffs which) into `dir`,
 * refusing anything unsafe before it is written: absolute paths, `..` components, symbolic links
 * whose target leaves `dir`, hard links to anything but a file of the same archive, entries below
 * a symbolic link, devices, FIFOs and other special files, more than `maxEntries` entries, file
 * sizes adding up to more than `maxBytes` (counted from the headers, before the bodies are
 * written). Owners are not restored; setuid/setgid bits are dropped; files stay readable and
 * writable by their owner; modification times are kept.
 *
 * Entries are written one at a time, in archive order, and the stream is read only as fast as
 * they are written: memory does not grow with the archive. The first refusal or failure stops the
 * extraction: every entry before it is on disk, nothing after it is, and nothing is written once
 * the promise has settled. It rejects with an {@link ArchiveError} whose `code` names the rule and
 * whose `entry` names the entry; a damaged stream is `AGENT_ERR_ARCHIVE_CORRUPT`, a filesystem
 * failure `AGENT_ERR_ARCHIVE_IO`, a digest mismatch `AGENT_ERR_ARCHIVE_CHECKSUM`. An error of the
 * source itself (a dropped connection) and an abort reject with that error.
 *
 * @example
 * const summary = await extractArchive(createReadStream("src.tar"), { dir, maxBytes: 1 << 30, maxEntries: 100_000 });
 */
export async function extractArchive(
  source: AsyncIterable<Uint8Array>,
  options: ExtractOptions,
): Promise<ExtractSummary> {
  const { Parser } = await import("tar");
  if (options.dryRun !== true) await mkdir(options.dir, { recursive: true });
  const writer = new EntryWriter(options);
  const digester = new Digester();
  /** The first failure, final: a refusal or archive error, the source's error, or the abort reason. */
  let failure: unknown;
  /** node-tar found no entry at all (an empty stream, or one of only end-of-archive blocks). */
  let unrecognized = false;
  let wake: () => void = () => {};
  const fail = (error: unknown) => {
    failure ??= error;
    wake();
  };

  const parser = new Parser({ strict: true });
  let chain = Promise.resolve();
  parser.on("entry", (entry: ReadEntry) => {
    chain = chain.then(async () => {
      if (failure !== undefined) return;
      await writer.write(entry).catch(fail);
    });
  });
  parser.on("error", (error: Error & { tarCode?: string }) => {
    if (failure === undefined && error.tarCode === "TAR_BAD_ARCHIVE" && writer.counts.entries === 0)
      unrecognized = true;
    fail(fromTarError(error));
  });
  const parsed = once(parser, "end");
  parsed.catch(() => {}); // failures arrive through `fail`

  const onAbort = () =>
    fail(options.signal?.reason ?? new DOMException("This operation was aborted", "AbortError"));
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) onAbort();
  try {
    for await (const chunk of source) {
      if (failure !== undefined) break;
      const buffer = Buffer.isBuffer(chunk)
        ? chunk
        : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      digester.update(buffer);
      if (!parser.write(buffer) && failure === undefined) {
        // Wait until the entry being written wants more, or something failed.
        await new Promise<void>((resolve) => {
          wake = resolve;
          parser.once("drain", resolve);
        });
        wake = () => {};
      }
    }
    if (failure === undefined) {
      parser.end();
      await Promise.race([parsed, new Promise<void>((resolve) => (wake = resolve))]);
    }
  } catch (error) {
    fail(error); // the source failed (a dropped connection, a read error)
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
  }
  // Let the entry being written finish: nothing is written after this function settles.
  await chain;
  const digest = digester.digest();
  // An archive of nothing but end-of-archive blocks is valid and empty (node-tar calls it unrecognized).
  const empty = unrecognized && digest.bytes >= 1024 && digester.allZero;
  if (failure !== undefined && !empty) throw failure;
  if (
    options.expected !== undefined &&
    (options.expected.bytes !== digest.bytes || options.expected.sha256 !== digest.sha256)
  ) {
    throw new ArchiveError(
      "AGENT_ERR_ARCHIVE_CHECKSUM",
      null,
      `the archive received (${digest.bytes} bytes, sha256 ${digest.sha256}) is not the one sent (${options.expected.bytes} bytes, sha256 ${options.expected.sha256})`,
    );
  }
  await writer.finish();
  return { ...writer.counts, digest };
}

/**
 * Writes admitted entries under the root, one at a time. Keeps what the rules need to know about
 * what this archive wrote: which paths are symbolic links (nothing goes below them), which are
 * files (hard links may point at them), and directories whose times are set at the end.
 */
class EntryWriter {
  readonly #root: string;
  readonly #options: ExtractOptions;
  readonly counts = { entries: 0, files: 0, directories: 0, symlinks: 0, hardlinks: 0, contentBytes: 0 };
  readonly #links = new Set<string>();
  readonly #files = new Set<string>();
  /** Directories known to be real directories (created or checked), relative; "" is the root. */
  readonly #dirs = new Set<string>([""]);
  readonly #dirTimes: { path: string; mtime: Date }[] = [];

  constructor(options: ExtractOptions) {
    this.#root = options.dir;
    this.#options = options;
  }

  async write(entry: ReadEntry): Promise<void> {
    const path = this.#admit(entry);
    if (path === null || this.#options.dryRun === true) {
      if (path !== null) this.#remember(path, entry.type);
      entry.resume();
      return;
    }
    const abs = join(this.#root, path);
    try {
      await this.#ensureParents(path, entry.path);
      const mode = (entry.mode ?? 0o644) & 0o1777;
      switch (entry.type) {
        case "Directory":
          entry.resume();
          await this.#clear(abs, "Directory");
          await mkdir(abs, { mode: mode | 0o700 }).catch((error: NodeJS.ErrnoException) => {
            if (error.code !== "EEXIST") throw error;
          });
          this.#dirs.add(path);
          if (entry.mtime) this.#dirTimes.push({ path: abs, mtime: entry.mtime });
          return;
        case "SymbolicLink":
          entry.resume();
          await this.#clear(abs, entry.type);
          await symlink(entry.linkpath!, abs);
          this.#links.add(path);
          return;
        case "Link":
          entry.resume();
          await this.#clear(abs, entry.type);
          await link(join(this.#root, entry.linkpath!), abs);
          return;
        default: {
          await this.#clear(abs, entry.type);
          // "wx": created here, never opened through whatever might be at the path.
          await pipeline(entry, createWriteStream(abs, { flags: "wx", mode: mode | 0o600 }));
          if (entry.mtime) await utimes(abs, entry.atime ?? entry.mtime, entry.mtime);
          this.#files.add(path);
        }
      }
    } catch (error) {
      if (error instanceof ArchiveError) throw error;
      const e = error as NodeJS.ErrnoException;
      throw new ArchiveError(
        "AGENT_ERR_ARCHIVE_IO",
        entry.path,
        `cannot write archive entry ${JSON.stringify(entry.path)}: ${e.code ?? e.name}: ${e.message}`,
        { cause: error },
      );
    }
  }

  /** What a dry run knows of an entry it did not write: the rules after it depend on it. */
  #remember(path: string, type: string): void {
    this.#links.delete(path);
    this.#files.delete(path);
    if (type === "SymbolicLink") this.#links.add(path);
    else if (type === "Directory") this.#dirs.add(path);
    else if (type !== "Link") this.#files.add(path);
  }

  /** Directories get their times last (writing into a directory changes its time). */
  async finish(): Promise<void> {
    for (const { path, mtime } of this.#dirTimes.reverse())
      await utimes(path, mtime, mtime).catch(() => undefined);
  }

  /** The entry's normal path once it passed every rule (null for the root's own entry); throws the refusal. */
  #admit(entry: ReadEntry): string | null {
    const raw = entry.path;
    const refuse = (code: ArchiveErrorCode, why: string) =>
      new ArchiveError(code, raw, `archive entry ${JSON.stringify(raw)} ${why}`);
    const normal = normalizeEntryPath(raw);
    if ("refusal" in normal) throw refuse(normal.refusal.code, normal.refusal.why);
    const { path } = normal;
    const type = entry.type;
    if (path === "") {
      // `./`: the workspace itself. It cannot become anything else; its own mode is left alone.
      if (type === "Directory") return null;
      throw refuse("AGENT_ERR_ARCHIVE_BAD_PATH", `is a ${type} in place of the workspace itself`);
    }
    if (type === "CharacterDevice" || type === "BlockDevice") {
      throw refuse("AGENT_ERR_ARCHIVE_DEVICE", `is a device file (${type}); devices are never extracted`);
    }
    if (type === "FIFO")
      throw refuse("AGENT_ERR_ARCHIVE_FIFO", "is a named pipe (FIFO); FIFOs are never extracted");
    if (!FILE_TYPES.has(type) && type !== "Directory" && type !== "SymbolicLink" && type !== "Link") {
      throw refuse("AGENT_ERR_ARCHIVE_UNSUPPORTED_TYPE", `has the unsupported type ${type}`);
    }
    const above = linkAbove(path, this.#links);
    if (above !== undefined) {
      throw refuse(
        "AGENT_ERR_ARCHIVE_THROUGH_LINK",
        `would be written through the symbolic link ${JSON.stringify(above)}`,
      );
    }
    if (this.counts.entries + 1 > this.#options.maxEntries) {
      throw refuse(
        "AGENT_ERR_ARCHIVE_TOO_MANY_ENTRIES",
        `is one entry more than the ${this.#options.maxEntries} allowed`,
      );
    }
    if (type === "SymbolicLink") {
      const bad = linkTargetRefusal(path, entry.linkpath ?? "");
      if (bad !== null) throw refuse(bad.code, bad.why);
    } else if (type === "Link") {
      const target = normalizeEntryPath(entry.linkpath ?? "");
      if ("refusal" in target || !this.#files.has(target.path)) {
        throw refuse(
          "AGENT_ERR_ARCHIVE_HARDLINK",
          `is a hard link to ${JSON.stringify(entry.linkpath)}, which is not a file written earlier by this archive`,
        );
      }
      entry.linkpath = target.path;
    } else if (FILE_TYPES.has(type)) {
      const size = entry.size ?? 0;
      const total = this.counts.contentBytes + size;
      if (total > this.#options.maxBytes) {
        throw refuse(
          "AGENT_ERR_ARCHIVE_TOO_LARGE",
          `(${size} bytes) would bring the archive's contents to ${total} bytes, over the budget of ${this.#options.maxBytes} bytes`,
        );
      }
      this.counts.contentBytes = total;
    }
    const kind =
      type === "Directory"
        ? "directories"
        : type === "SymbolicLink"
          ? "symlinks"
          : type === "Link"
            ? "hardlinks"
            : "files";
    this.counts[kind]++;
    this.counts.entries++;
    return path;
  }

  /** Creates the entry's missing parent directories; a parent that is anything but a real directory is refused. */
  async #ensureParents(path: string, raw: string): Promise<void> {
    const parent = dirname(path) === "." ? "" : dirname(path);
    if (this.#dirs.has(parent)) return;
    let current = "";
    for (const part of parent.split("/")) {
      current = current === "" ? part : `${current}/${part}`;
      if (this.#dirs.has(current)) continue;
      const abs = join(this.#root, current);
      const stats = await lstat(abs).catch(() => undefined);
      if (stats === undefined) await mkdir(abs, { mode: 0o755 });
      else if (stats.isSymbolicLink()) {
        throw new ArchiveError(
          "AGENT_ERR_ARCHIVE_THROUGH_LINK",
          raw,
          `archive entry ${JSON.stringify(raw)} would be written through the symbolic link ${JSON.stringify(current)}`,
        );
      } else if (!stats.isDirectory()) {
        throw new ArchiveError(
          "AGENT_ERR_ARCHIVE_IO",
          raw,
          `archive entry ${JSON.stringify(raw)} needs ${JSON.stringify(current)} to be a directory, and it is a file`,
        );
      }
      this.#dirs.add(current);
    }
  }

  /** Makes room at `abs` for an entry of `type`: an existing directory stays for a directory, anything else goes. */
  async #clear(abs: string, type: string): Promise<void> {
    const stats = await lstat(abs).catch(() => undefined);
    if (stats === undefined) return;
    const rel = abs.slice(this.#root.length + 1);
    this.#links.delete(rel);
    this.#files.delete(rel);
    if (stats.isDirectory()) {
      if (type === "Directory") return;
      await rmdir(abs); // a directory that is not empty cannot be replaced: ENOTEMPTY
      this.#dirs.delete(rel);
    } else await unlink(abs);
  }
}

/** node-tar's parse errors (and those of its decompressors) as AGENT_ERR_ARCHIVE_CORRUPT, naming the entry when there is one. */
function fromTarError(error: unknown): ArchiveError {
  const e = error as Error & { entry?: { path?: string }; header?: { path?: string } };
  const path = e.entry?.path ?? e.header?.path;
  const entry = typeof path === "string" ? path : null;
  const where = entry !== null ? ` (at entry ${JSON.stringify(entry)})` : "";
  return new ArchiveError(
    "AGENT_ERR_ARCHIVE_CORRUPT",
    entry,
    `the archive is damaged or not a tar stream${where}: ${e.message}`,
    {
      cause: error,
    },
  );
}

import type { Stats } from "node:fs";
import { pipeline } from "node:stream/promises";
import { ArchiveError } from "../errors.ts";
import { DigestStream, type StreamDigest } from "./digest.ts";
import type { SelectedKind, Selection } from "./select.ts";

/**
 * Bytes node-tar reads from a file at once. Its default (16 MiB) times the entries it prepares in
 * parallel costs some 100 MB of memory per transfer; 256 KiB reads measured as fast (bench/).
 */
const READ_BYTES = 256 * 1024;

export interface PackedArchive {
  /** The tar stream: read it (or pipe it) at the pace of the consumer; nothing is buffered ahead. */
  stream: DigestStream;
  /** Entries the archive will hold. */
  entries: number;
  /**
   * Resolves with the stream's length and SHA-256 once it has been read to its end; rejects with
   * an {@link ArchiveError} (`AGENT_ERR_ARCHIVE_IO`, naming the path) when a file cannot be read.
   */
  done: Promise<StreamDigest>;
}

/**
 * Packs the entries of a {@link Selection} under `root` into a tar stream (POSIX pax format, no
 * owner names or ids, modification times kept). Symbolic links are stored as links, never
 * followed; a path that changed kind since it was selected (a file become a link) is left out, as
 * are FIFOs, sockets and devices. Files are read as the stream is consumed, so memory does not
 * grow with their size.
 *
 * @example
 * const packed = await packSelection(workspace, await selectPaths(workspace, { paths: ["dist"], maxEntries }));
 * await pipeline(packed.stream, createWriteStream("dist.tar"));
 * const { bytes, sha256 } = await packed.done;
 */
export async function packSelection(root: string, selection: Selection): Promise<PackedArchive> {
  const { Pack } = await import("tar");
  const kinds = new Map<string, SelectedKind>(selection.entries.map((e) => [e.path, e.kind]));
  const pack = new Pack({
    cwd: root,
    portable: true,
    noDirRecurse: true,
    follow: false,
    maxReadSize: READ_BYTES,
    filter: (path, stats) => {
      const expected = kinds.get(path.replace(/\/$/, ""));
      return expected === undefined || sameKind(expected, stats as Stats);
    },
  });
  // `add`, not `tar.c()`: create() reads a path starting with `@` as an archive to copy from.
  for (const entry of selection.entries) pack.add(entry.path);
  pack.end();
  const stream = new DigestStream();
  const done = new Promise<StreamDigest>((resolve, reject) => {
    stream.once("end", () => resolve(stream.digest));
    pipeline(pack, stream).catch((error: unknown) => reject(fromPackError(error)));
  });
  // A consumer that only reads the stream (and never awaits `done`) must not see an unhandled rejection.
  done.catch(() => {});
  return { stream, entries: selection.entries.length, done };
}

function sameKind(kind: SelectedKind, stats: Stats): boolean {
  if (kind === "symlink") return stats.isSymbolicLink();
  if (kind === "directory") return stats.isDirectory();
  return stats.isFile();
}

function fromPackError(error: unknown): ArchiveError {
  if (error instanceof ArchiveError) return error;
  const e = error as Error & { path?: string };
  const path = typeof e.path === "string" ? e.path : null;
  return new ArchiveError(
    "AGENT_ERR_ARCHIVE_IO",
    path,
    `cannot pack ${path !== null ? JSON.stringify(path) : "the archive"}: ${e.message}`,
    {
      cause: error,
    },
  );
}

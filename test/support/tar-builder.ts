import { Header, Pax } from "tar";

/** One entry of a hand-made archive: anything a tar header can say, safe or not. */
export interface RawEntry {
  path: string;
  type?:
    | "File"
    | "Directory"
    | "SymbolicLink"
    | "Link"
    | "CharacterDevice"
    | "BlockDevice"
    | "FIFO"
    | "GNUDumpDir";
  body?: Buffer | string;
  linkpath?: string;
  mode?: number;
  /** Header size to claim (default: the body's length). */
  size?: number;
}

/**
 * Writes a tar stream byte by byte from raw entries, with node-tar's own header encoder, so tests
 * can hand the extractor what no well-behaved packer would make: absolute paths, `..`, links out
 * of the tree, devices, FIFOs, lying sizes. Long paths get a pax header, as real packers do.
 */
export function rawTar(entries: RawEntry[], options: { end?: boolean } = {}): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const body = typeof entry.body === "string" ? Buffer.from(entry.body) : (entry.body ?? Buffer.alloc(0));
    const type = entry.type ?? "File";
    const header = new Header({
      path: entry.path,
      type,
      mode: entry.mode ?? (type === "Directory" ? 0o755 : 0o644),
      size: entry.size ?? (type === "File" ? body.length : 0),
      mtime: new Date(1_700_000_000_000),
      uid: 0,
      gid: 0,
      ...(entry.linkpath !== undefined ? { linkpath: entry.linkpath } : {}),
    });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    if (header.needPax) {
      blocks.push(
        new Pax({
          path: entry.path,
          ...(entry.linkpath !== undefined ? { linkpath: entry.linkpath } : {}),
          mtime: new Date(1_700_000_000_000),
        }).encode(),
      );
    }
    blocks.push(block, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  if (options.end !== false) blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

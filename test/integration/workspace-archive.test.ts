import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join, resolve as resolvePath } from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ArchiveError,
  extractArchive,
  packSelection,
  type Selection,
  selectPaths,
} from "../../agent-core/index.ts";
import { tempDir } from "../support/harness.ts";
import { type RawEntry, rawTar } from "../support/tar-builder.ts";

let dir: ReturnType<typeof tempDir>;
beforeEach(() => {
  dir = tempDir("archive-");
});
afterEach(() => dir.remove());

const LIMITS = { maxBytes: 1 << 30, maxEntries: 10_000 };

/** Every path under `root` with what it is: file contents' hash and mode, link targets, dirs. */
function describeTree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const path = rel === "" ? name : `${rel}/${name}`;
      const stats = lstatSync(join(root, path));
      if (stats.isSymbolicLink()) out[path] = `link -> ${readlinkSync(join(root, path))}`;
      else if (stats.isDirectory()) {
        out[path] = "dir";
        walk(path);
      } else {
        const hash = createHash("sha256")
          .update(readFileSync(join(root, path)))
          .digest("hex");
        out[path] = `file ${(stats.mode & 0o777).toString(8)} ${stats.size} ${hash}`;
      }
    }
  };
  walk("");
  return out;
}

async function packAll(
  root: string,
  paths = ["**"],
): Promise<{ tar: Buffer; selection: Selection; sha256: string }> {
  const selection = await selectPaths(root, { paths, maxEntries: 10_000 });
  const packed = await packSelection(root, selection);
  const chunks: Buffer[] = [];
  for await (const chunk of packed.stream) chunks.push(chunk as Buffer);
  const digest = await packed.done;
  const tar = Buffer.concat(chunks);
  expect(digest.bytes).toBe(tar.length);
  return { tar, selection, sha256: digest.sha256 };
}

async function refusal(entries: RawEntry[] | Buffer, limits = LIMITS): Promise<ArchiveError> {
  const tar = Buffer.isBuffer(entries) ? entries : rawTar(entries);
  const error = await extractArchive(Readable.from([tar]), { dir: join(dir.path, "ws"), ...limits }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ArchiveError);
  return error as ArchiveError;
}

describe("a tree goes out and comes back the same", () => {
  it("binary files, modes, symlinks inside the tree, hard links, empty dirs, unicode and long names", async () => {
    const src = join(dir.path, "src");
    mkdirSync(join(src, "bin"), { recursive: true });
    mkdirSync(join(src, "empty/nested-empty"), { recursive: true });
    mkdirSync(join(src, "ünïcødé/日本語"), { recursive: true });
    const long = `${"long-name-".repeat(12)}end`;
    mkdirSync(join(src, long), { recursive: true });
    writeFileSync(
      join(src, "bin/all-bytes.bin"),
      Buffer.from(Array.from({ length: 256 * 64 }, (_, i) => i % 256)),
    );
    writeFileSync(join(src, "bin/random.bin"), randomBytes(3 * 1024 * 1024 + 7));
    writeFileSync(join(src, "bin/tool.sh"), "#!/bin/sh\necho hi\n");
    chmodSync(join(src, "bin/tool.sh"), 0o755);
    writeFileSync(join(src, "ünïcødé/日本語/файл 🎉.txt"), "unicode body ✓\n");
    writeFileSync(join(src, `${long}/${long}.txt`), "deep and long\n");
    writeFileSync(join(src, ".hidden"), "dot file\n");
    writeFileSync(join(src, "empty.txt"), "");
    linkSync(join(src, "bin/tool.sh"), join(src, "bin/tool-hardlink.sh"));
    symlinkSync("bin/tool.sh", join(src, "tool-link"));
    symlinkSync("../bin", join(src, "ünïcødé/bin-dir-link"));
    symlinkSync("..", join(src, "bin/up-to-root"));
    symlinkSync("does-not-exist", join(src, "dangling"));

    const { tar, sha256 } = await packAll(src);
    const out = join(dir.path, "out");
    const summary = await extractArchive(Readable.from([tar]), {
      dir: out,
      ...LIMITS,
      expected: { bytes: tar.length, sha256 },
    });

    expect(describeTree(out)).toEqual(describeTree(src));
    expect(summary).toMatchObject({ symlinks: 4, hardlinks: 1, digest: { bytes: tar.length, sha256 } });
    expect(summary.directories).toBe(6);
    expect(statSync(join(out, "bin/tool-hardlink.sh")).ino).toBe(statSync(join(out, "bin/tool.sh")).ino);
  });

  it("accepts an archive made by the tar command, gzip-compressed", async () => {
    const src = join(dir.path, "src");
    mkdirSync(join(src, "a/empty"), { recursive: true });
    writeFileSync(join(src, "a/x.bin"), randomBytes(100_000));
    symlinkSync("x.bin", join(src, "a/x-link"));
    const tgz = execFileSync("tar", ["-czf", "-", "-C", src, "."]);
    const out = join(dir.path, "out");
    await extractArchive(Readable.from([tgz]), { dir: out, ...LIMITS });
    expect(describeTree(out)).toEqual(describeTree(src));
  });

  it("accepts an archive of no entries (only the end-of-archive blocks)", async () => {
    const empty = join(dir.path, "empty");
    mkdirSync(empty);
    const { tar } = await packAll(empty);
    const summary = await extractArchive(Readable.from([tar]), { dir: join(dir.path, "out"), ...LIMITS });
    expect(summary).toMatchObject({ entries: 0, contentBytes: 0, digest: { bytes: tar.length } });
  });

  it("reads the stream in chunks of any size", async () => {
    const src = join(dir.path, "src");
    mkdirSync(src);
    writeFileSync(join(src, "f.bin"), randomBytes(200_000));
    const { tar } = await packAll(src);
    const chunks: Buffer[] = [];
    for (let i = 0; i < tar.length; i += 777) chunks.push(tar.subarray(i, i + 777));
    await extractArchive(Readable.from(chunks), { dir: join(dir.path, "out"), ...LIMITS });
    expect(readFileSync(join(dir.path, "out/f.bin")).equals(readFileSync(join(src, "f.bin")))).toBe(true);
  });
});

describe("every unsafe entry is refused with a code naming it, and nothing lands outside", () => {
  const cases: [string, RawEntry[], string, string][] = [
    [
      "an absolute path",
      [{ path: "/tmp/escape-abs.txt", body: "x" }],
      "AGENT_ERR_ARCHIVE_ABSOLUTE_PATH",
      "/tmp/escape-abs.txt",
    ],
    [
      "a Windows absolute path",
      [{ path: "C:/escape.txt", body: "x" }],
      "AGENT_ERR_ARCHIVE_ABSOLUTE_PATH",
      "C:/escape.txt",
    ],
    ["a `..` path", [{ path: "../escape.txt", body: "x" }], "AGENT_ERR_ARCHIVE_PARENT_PATH", "../escape.txt"],
    [
      "a `..` inside a path",
      [{ path: "a/../../escape.txt", body: "x" }],
      "AGENT_ERR_ARCHIVE_PARENT_PATH",
      "a/../../escape.txt",
    ],
    [
      "a symlink to an absolute path",
      [{ path: "etc", type: "SymbolicLink", linkpath: "/etc" }],
      "AGENT_ERR_ARCHIVE_LINK_ESCAPE",
      "etc",
    ],
    [
      "a symlink climbing out",
      [{ path: "a/up", type: "SymbolicLink", linkpath: "../../outside" }],
      "AGENT_ERR_ARCHIVE_LINK_ESCAPE",
      "a/up",
    ],
    [
      "a symlink that climbs out through another link",
      [
        { path: "d/", type: "Directory" },
        { path: "d/s", type: "SymbolicLink", linkpath: ".." },
        { path: "a", type: "SymbolicLink", linkpath: "d/s/.." },
      ],
      "AGENT_ERR_ARCHIVE_LINK_ESCAPE",
      "a",
    ],
    [
      "a hard link to an absolute path",
      [{ path: "passwd", type: "Link", linkpath: "/etc/passwd" }],
      "AGENT_ERR_ARCHIVE_HARDLINK",
      "passwd",
    ],
    [
      "a hard link climbing out",
      [{ path: "h", type: "Link", linkpath: "../outside/secret" }],
      "AGENT_ERR_ARCHIVE_HARDLINK",
      "h",
    ],
    [
      "a hard link to a file the archive did not write",
      [{ path: "h", type: "Link", linkpath: "not-here" }],
      "AGENT_ERR_ARCHIVE_HARDLINK",
      "h",
    ],
    [
      "a hard link through a symlink",
      [
        { path: "out", type: "SymbolicLink", linkpath: "." },
        { path: "f", body: "x" },
        { path: "h", type: "Link", linkpath: "out/f" },
      ],
      "AGENT_ERR_ARCHIVE_HARDLINK",
      "h",
    ],
    [
      "a file written through a symlink",
      [
        { path: "sub/", type: "Directory" },
        { path: "lnk", type: "SymbolicLink", linkpath: "sub" },
        { path: "lnk/file", body: "x" },
      ],
      "AGENT_ERR_ARCHIVE_THROUGH_LINK",
      "lnk/file",
    ],
    ["a character device", [{ path: "null", type: "CharacterDevice" }], "AGENT_ERR_ARCHIVE_DEVICE", "null"],
    ["a block device", [{ path: "sda", type: "BlockDevice" }], "AGENT_ERR_ARCHIVE_DEVICE", "sda"],
    ["a FIFO", [{ path: "pipe", type: "FIFO" }], "AGENT_ERR_ARCHIVE_FIFO", "pipe"],
    [
      "another entry type",
      [{ path: "dump/", type: "GNUDumpDir" }],
      "AGENT_ERR_ARCHIVE_UNSUPPORTED_TYPE",
      "dump/",
    ],
    [
      "a file in place of the workspace",
      [{ path: "./", type: "SymbolicLink", linkpath: "/" }],
      "AGENT_ERR_ARCHIVE_BAD_PATH",
      "./",
    ],
  ];

  it.each(cases)("%s", async (_what, entries, code, entry) => {
    const outside = join(dir.path, "outside");
    mkdirSync(outside);
    writeFileSync(join(outside, "secret"), "keep");
    // A good entry first: what came before the refusal stays where it was written.
    const error = await refusal([{ path: "before.txt", body: "kept" }, ...entries]);
    expect(error.code).toBe(code);
    expect(error.entry).toBe(entry);
    expect(error.message).toContain(JSON.stringify(entry));
    expect(readFileSync(join(dir.path, "ws/before.txt"), "utf8")).toBe("kept");
    expect(readdirSync(dir.path).sort()).toEqual(["outside", "ws"]);
    expect(readdirSync(outside)).toEqual(["secret"]);
    expect(readFileSync(join(outside, "secret"), "utf8")).toBe("keep");
    expect(existsSync("/tmp/escape-abs.txt")).toBe(false);
  });

  it.each(cases)("%s, in a dry run too, which writes nothing", async (_what, entries, code, entry) => {
    const tar = rawTar([{ path: "before.txt", body: "kept" }, ...entries]);
    const error = await extractArchive(Readable.from([tar]), {
      dir: join(dir.path, "ws"),
      ...LIMITS,
      dryRun: true,
    }).catch((e: unknown) => e as ArchiveError);
    expect(error).toMatchObject({ code, entry });
    expect(readdirSync(dir.path)).toEqual([]);
  });

  it("a dry run of a good archive reads it all and counts what it would write", async () => {
    const src = join(dir.path, "src");
    mkdirSync(join(src, "a/b"), { recursive: true });
    writeFileSync(join(src, "a/b/f"), randomBytes(70_000));
    symlinkSync("b/f", join(src, "a/link"));
    const { tar, sha256 } = await packAll(src);
    const summary = await extractArchive(Readable.from([tar]), {
      dir: join(dir.path, "none"),
      ...LIMITS,
      dryRun: true,
    });
    expect(summary).toMatchObject({
      entries: 4,
      files: 1,
      symlinks: 1,
      directories: 2,
      contentBytes: 70_000,
      digest: { sha256 },
    });
    expect(existsSync(join(dir.path, "none"))).toBe(false);
  });

  it("refuses the entry that would go over the byte budget before writing it", async () => {
    const error = await refusal(
      [
        { path: "a.bin", body: Buffer.alloc(600) },
        { path: "b.bin", body: Buffer.alloc(600) },
      ],
      { maxBytes: 1000, maxEntries: 10 },
    );
    expect(error).toMatchObject({ code: "AGENT_ERR_ARCHIVE_TOO_LARGE", entry: "b.bin" });
    expect(error.message).toMatch(/1200 bytes, over the budget of 1000 bytes/);
    expect(existsSync(join(dir.path, "ws/b.bin"))).toBe(false);
  });

  it("counts sizes as the headers declare them, before any byte of the body is written", async () => {
    // A header claiming 5 GiB: refused at once, without reading (or needing) the body.
    const tar = rawTar([{ path: "huge.bin", size: 5 * 1024 ** 3 }], { end: false });
    const error = await refusal(tar, { maxBytes: 1024 ** 3, maxEntries: 10 });
    expect(error).toMatchObject({ code: "AGENT_ERR_ARCHIVE_TOO_LARGE", entry: "huge.bin" });
  });

  it("refuses the entry past the entry count", async () => {
    const entries = Array.from({ length: 6 }, (_, i) => ({ path: `f${i}`, body: "x" }));
    const error = await refusal(entries, { maxBytes: 1000, maxEntries: 5 });
    expect(error).toMatchObject({ code: "AGENT_ERR_ARCHIVE_TOO_MANY_ENTRIES", entry: "f5" });
    expect(readdirSync(join(dir.path, "ws")).sort()).toEqual(["f0", "f1", "f2", "f3", "f4"]);
  });

  it("drops setuid and setgid bits and owner ids", async () => {
    const out = join(dir.path, "ws");
    await extractArchive(
      Readable.from([
        rawTar([
          { path: "suid", body: "x", mode: 0o6755 },
          { path: "locked", body: "y", mode: 0o000 },
        ]),
      ]),
      {
        dir: out,
        ...LIMITS,
      },
    );
    expect(statSync(join(out, "suid")).mode & 0o7777).toBe(0o755);
    expect(statSync(join(out, "locked")).mode & 0o600).toBe(0o600);
    expect(statSync(join(out, "suid")).uid).toBe(process.getuid?.());
  });
});

describe("damaged or mismatched streams", () => {
  it.each([
    [
      "a damaged header",
      () => {
        const tar = rawTar([{ path: "a.txt", body: "hello" }]);
        tar[100] = tar[100]! ^ 0xff;
        return tar;
      },
    ],
    ["a truncated stream", () => rawTar([{ path: "a.bin", body: randomBytes(5000) }]).subarray(0, 2048)],
    ["bytes that are not a tar stream", () => Buffer.from("this is not an archive\n".repeat(100))],
    ["an empty stream", () => Buffer.alloc(0)],
    [
      "a broken gzip layer",
      () => gzipSync(rawTar([{ path: "a", body: "x".repeat(10_000) }])).subarray(0, 60),
    ],
  ])("%s is AGENT_ERR_ARCHIVE_CORRUPT", async (_what, make) => {
    const error = await refusal(make());
    expect(error.code).toBe("AGENT_ERR_ARCHIVE_CORRUPT");
  });

  it("a digest that differs from the sender's is AGENT_ERR_ARCHIVE_CHECKSUM", async () => {
    const tar = rawTar([{ path: "a.txt", body: "hello" }]);
    const error = await extractArchive(Readable.from([tar]), {
      dir: join(dir.path, "ws"),
      ...LIMITS,
      expected: { bytes: tar.length, sha256: "0".repeat(64) },
    }).catch((e: unknown) => e as ArchiveError);
    expect(error).toMatchObject({ code: "AGENT_ERR_ARCHIVE_CHECKSUM", entry: null });
  });

  it("stops when aborted", async () => {
    const controller = new AbortController();
    async function* slow() {
      yield rawTar([{ path: "a.txt", body: "hello" }], { end: false });
      controller.abort();
      await new Promise((resolve) => setTimeout(resolve, 50));
      yield Buffer.alloc(1024);
    }
    const error = await extractArchive(slow(), {
      dir: join(dir.path, "ws"),
      ...LIMITS,
      signal: controller.signal,
    }).catch((e: unknown) => e as Error);
    expect((error as Error).name).toBe("AbortError");
  });
});

describe("selecting artifacts", () => {
  let ws: string;
  beforeEach(() => {
    ws = join(dir.path, "ws");
    mkdirSync(join(ws, "dist/sub"), { recursive: true });
    mkdirSync(join(ws, "dist/empty"), { recursive: true });
    mkdirSync(join(ws, "reports"), { recursive: true });
    mkdirSync(join(ws, "node_modules/pkg"), { recursive: true });
    writeFileSync(join(ws, "dist/app.js"), "app");
    writeFileSync(join(ws, "dist/app.js.map"), "map");
    writeFileSync(join(ws, "dist/sub/.hidden"), "h");
    writeFileSync(join(ws, "reports/a.xml"), "<a/>");
    writeFileSync(join(ws, "reports/b.xml"), "<b/>");
    writeFileSync(join(ws, "reports/notes.txt"), "n");
    writeFileSync(join(ws, "node_modules/pkg/index.js"), "x");
    symlinkSync("/etc", join(ws, "etc-link"));
    symlinkSync("../../../outside", join(ws, "dist/escape"));
    symlinkSync("app.js", join(ws, "dist/app-link.js"));
    execFileSync("mkfifo", [join(ws, "dist/pipe")]);
  });

  it("a directory brings its tree; links are kept as links or skipped; FIFOs skipped", async () => {
    const selection = await selectPaths(ws, { paths: ["dist"], maxEntries: 100 });
    expect(selection.entries).toEqual([
      { path: "dist", kind: "directory" },
      { path: "dist/app-link.js", kind: "symlink" },
      { path: "dist/app.js", kind: "file" },
      { path: "dist/app.js.map", kind: "file" },
      { path: "dist/empty", kind: "directory" },
      { path: "dist/sub", kind: "directory" },
      { path: "dist/sub/.hidden", kind: "file" },
    ]);
    expect(selection.skipped).toEqual(
      expect.arrayContaining([
        { path: "dist/escape", reason: "link-outside-workspace" },
        { path: "dist/pipe", reason: "special-file" },
      ]),
    );
    expect(selection.unmatched).toEqual([]);
  });

  it("globs, excludes and patterns that match nothing", async () => {
    const selection = await selectPaths(ws, {
      paths: ["reports/*.xml", "dist/**/*.js", "coverage/**", "./reports/notes.txt"],
      exclude: ["**/b.xml"],
      maxEntries: 100,
    });
    expect(selection.entries.map((e) => e.path)).toEqual([
      "dist/app-link.js",
      "dist/app.js",
      "reports/a.xml",
      "reports/notes.txt",
    ]);
    expect(selection.unmatched).toEqual(["coverage/**"]);
  });

  it("never walks through a symbolic link, whatever the pattern says", async () => {
    const selection = await selectPaths(ws, {
      paths: ["etc-link/**", "etc-link/passwd", "etc-link"],
      maxEntries: 100,
    });
    expect(selection.entries).toEqual([]);
    expect(selection.skipped).toEqual([{ path: "etc-link", reason: "link-outside-workspace" }]);
  });

  it("refuses a pattern that leaves the workspace, and too many entries", async () => {
    await expect(selectPaths(ws, { paths: ["../**"], maxEntries: 100 })).rejects.toMatchObject({
      code: "AGENT_ERR_ARCHIVE_BAD_PATH",
      entry: "../**",
    });
    await expect(selectPaths(ws, { paths: ["/etc/passwd"], maxEntries: 100 })).rejects.toMatchObject({
      code: "AGENT_ERR_ARCHIVE_BAD_PATH",
    });
    await expect(selectPaths(ws, { paths: ["**"], maxEntries: 5 })).rejects.toMatchObject({
      code: "AGENT_ERR_ARCHIVE_TOO_MANY_ENTRIES",
    });
  });

  it("what is packed extracts to the selected tree", async () => {
    const { tar } = await packAll(ws, ["dist", "reports/a.xml"]);
    const out = join(dir.path, "out");
    await extractArchive(Readable.from([tar]), { dir: out, ...LIMITS });
    expect(Object.keys(describeTree(out)).sort()).toEqual([
      "dist",
      "dist/app-link.js",
      "dist/app.js",
      "dist/app.js.map",
      "dist/empty",
      "dist/sub",
      "dist/sub/.hidden",
      "reports",
      "reports/a.xml",
    ]);
  });

  it("a file that cannot be read fails the pack with AGENT_ERR_ARCHIVE_IO naming it", async () => {
    const selection = await selectPaths(ws, { paths: ["reports/a.xml"], maxEntries: 10 });
    selection.entries.push({ path: "reports/vanished.xml", kind: "file" });
    const packed = await packSelection(ws, selection);
    packed.stream.resume();
    await expect(packed.done).rejects.toMatchObject({ code: "AGENT_ERR_ARCHIVE_IO" });
  });
});

describe("whatever the archive says, nothing is written outside the workspace", () => {
  /** Every path under `root`, not following links. */
  const listAll = (root: string): string[] =>
    existsSync(root) ? readdirSync(root, { recursive: true }).map(String).sort() : [];

  it("holds for random archives of files, directories, links and hard links", async () => {
    const name = fc.constantFrom("a", "b", "..", ".", "", "/", "c/..", "d");
    const path = fc.array(name, { minLength: 1, maxLength: 4 }).map((parts) => parts.join("/"));
    const entry = fc.oneof(
      fc.record({ path, type: fc.constant("File" as const), body: fc.constant("x") }),
      fc.record({ path, type: fc.constant("Directory" as const) }),
      fc.record({ path, type: fc.constant("SymbolicLink" as const), linkpath: path }),
      fc.record({ path, type: fc.constant("Link" as const), linkpath: path }),
    );
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(entry, { minLength: 1, maxLength: 8 }), async (entries) => {
        const box = join(dir.path, `box-${run++}`);
        const ws = join(box, "ws");
        mkdirSync(join(box, "outside"), { recursive: true });
        writeFileSync(join(box, "outside", "keep"), "keep");
        // Every write lands in ws (or is refused): what else is in the box stays as it was.
        const tar = rawTar(entries.map((e) => (e.path === "" ? { ...e, path: "x" } : e)));
        await extractArchive(Readable.from([tar]), { dir: ws, ...LIMITS }).catch((error: unknown) => {
          if (!(error instanceof ArchiveError)) throw error;
        });
        expect(listAll(box).filter((p) => !p.startsWith("ws"))).toEqual(["outside", "outside/keep"]);
        expect(readFileSync(join(box, "outside", "keep"), "utf8")).toBe("keep");
        // Every link that was made resolves inside the workspace (or dangles there).
        for (const rel of listAll(ws)) {
          const abs = join(ws, rel);
          if (!lstatSync(abs).isSymbolicLink()) continue;
          const target = resolvePath(join(abs, ".."), readlinkSync(abs));
          expect(target === ws || target.startsWith(`${ws}/`), `${rel} -> ${readlinkSync(abs)}`).toBe(true);
          const real = realpathOrNull(abs);
          if (real !== null)
            expect(real === realpathSync(ws) || real.startsWith(`${realpathSync(ws)}/`)).toBe(true);
        }
      }),
      { numRuns: 80 },
    );
  });
});

function realpathOrNull(path: string): string | null {
  try {
    return realpathSync(path);
  } catch {
    return null;
  }
}

import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { type BenchContext, byScale, type Measurement } from "../lib/context.ts";
import { type Figure, measured } from "../lib/figures.ts";
import { FIXTURES, ROOT } from "../lib/peers.ts";
import { NODE, timedRun } from "../lib/proc.ts";
import { summarize } from "../lib/stats.ts";

const MB = 1e6;
const MiB = 1024 * 1024;
const TRANSFER = join(FIXTURES, "transfer.ts");
const SMALL_BYTES = 1_024;
/** Memory a bounded transfer may use beyond a plain file copy's. */
const RSS_HEADROOM_MB = 64;

const ROWS = {
  throughput: { id: "transfer-throughput", title: "workspace transfer (pack -> extract)", unit: "MB/s" },
  rss: { id: "transfer-peak-rss", title: "workspace transfer, peak RSS", unit: "MB" },
} as const;

/**
 * (9) A tree of 1 GiB (16 MiB with --quick): large files plus 2,000 (200) small ones in nested
 * directories, packed into a tar stream and extracted from it in one process, as the agent does
 * for a workspace or artifacts (`selectPaths` -> `packSelection` -> `extractArchive`, digests
 * checked). Throughput against `tar -cf - | tar -xf -` on the same tree; the process's peak RSS
 * against a Node process copying the same files with plain file streams: streams, not buffers,
 * so the transfer's memory must not grow with its size.
 */
export const transfer: Measurement = {
  name: "transfer",
  rows: Object.values(ROWS),
  async run(ctx: BenchContext): Promise<Figure[]> {
    const totalBytes = byScale(ctx, { full: 1024 * MiB, quick: 16 * MiB, smoke: 4 * MiB });
    const smallFiles = byScale(ctx, { full: 2_000, quick: 200, smoke: 50 });
    const runs = byScale(ctx, { full: 3, quick: 1, smoke: 1 });
    const src = join(ctx.tmp, "transfer-src");
    ctx.progress(`transfer: writing a ${totalBytes / MiB} MiB tree`);
    const bytes = writeTree(src, totalBytes, smallFiles);
    const agent: Run[] = [];
    const cli: number[] = [];
    const copy: Run[] = [];
    for (let i = 0; i < runs; i++) {
      ctx.progress(`transfer: run ${i + 1}/${runs}`);
      agent.push(await inProcess(ctx, "agent", src));
      cli.push(await tarCli(ctx, src, bytes));
      copy.push(await inProcess(ctx, "copy", src));
    }
    const copyRss = summarize(copy.map((r) => r.maxRssMb));
    const limit = copyRss.median + RSS_HEADROOM_MB;
    const notes = [
      `${(bytes / MB).toFixed(0)} MB of file contents, ${smallFiles} of them small files of ${SMALL_BYTES} bytes`,
    ];
    return [
      measured({
        ...ROWS.throughput,
        samples: agent.map((r) => r.mbPerSecond),
        baseline: { title: "`tar -cf - -C SRC . | tar -xf - -C DST` (GNU tar)", samples: cli },
        target: { text: "ratio >= 0.3", actual: (f) => f.ratio, op: ">=", limit: 0.3 },
        notes: [
          ...notes,
          "wall time of the whole transfer in the process (selection, pack, extract, digests)",
        ],
        details: { bytes },
      }),
      measured({
        ...ROWS.rss,
        samples: agent.map((r) => r.maxRssMb),
        baseline: {
          title: "a Node process copying the same files with file streams",
          samples: copy.map((r) => r.maxRssMb),
        },
        target: {
          text: `max <= plain copy + ${RSS_HEADROOM_MB} MB (${limit.toFixed(0)} MB)`,
          actual: (f) => f.value?.max ?? null,
          op: "<=",
          limit,
        },
        notes: [...notes, "getrusage maxrss of the process; both run with `node --import tsx`"],
        details: { bytes },
      }),
    ];
  },
};

interface Run {
  mbPerSecond: number;
  /** CPU seconds of the whole process per GB of file contents. */
  cpuSecondsPerGb: number;
  maxRssMb: number;
}

/** Large files of 64 MiB (or less, for a small total) and the small files; returns the bytes written. */
function writeTree(root: string, totalBytes: number, smallFiles: number): number {
  const block = randomBytes(MiB);
  const small = smallFiles * SMALL_BYTES;
  const largeBytes = Math.min(64 * MiB, totalBytes / 4);
  let left = totalBytes - small;
  for (let i = 0; left > 0; i++) {
    const dir = join(root, `large-${i % 4}`);
    mkdirSync(dir, { recursive: true });
    const size = Math.min(largeBytes, left);
    const fd = openSync(join(dir, `blob-${i}.bin`), "w");
    for (let written = 0; written < size; written += MiB)
      writeSync(fd, block, 0, Math.min(MiB, size - written));
    closeSync(fd);
    left -= size;
  }
  const payload = randomBytes(SMALL_BYTES);
  for (let i = 0; i < smallFiles; i++) {
    const dir = join(root, "small", `d${i % 50}`, `e${i % 7}`);
    mkdirSync(dir, { recursive: true });
    const fd = openSync(join(dir, `f${i}.txt`), "w");
    writeSync(fd, payload);
    closeSync(fd);
  }
  return totalBytes;
}

async function inProcess(ctx: BenchContext, mode: "agent" | "copy", src: string): Promise<Run> {
  const dst = join(ctx.tmp, `transfer-${mode}`);
  try {
    const { stdout } = await timedRun(NODE, ["--import", "tsx", TRANSFER, mode, src, dst], {
      cwd: ROOT,
      keepStdout: true,
      timeoutMs: 600_000,
    });
    const result = JSON.parse(stdout) as { bytes: number; ms: number; cpuMs: number; maxRssBytes: number };
    return {
      mbPerSecond: result.bytes / MB / (result.ms / 1000),
      cpuSecondsPerGb: result.cpuMs / 1000 / (result.bytes / 1e9),
      maxRssMb: result.maxRssBytes / MB,
    };
  } finally {
    rmSync(dst, { recursive: true, force: true });
  }
}

async function tarCli(ctx: BenchContext, src: string, bytes: number): Promise<number> {
  const dst = join(ctx.tmp, "transfer-tar");
  mkdirSync(dst, { recursive: true });
  try {
    const { ms } = await timedRun("sh", ["-c", 'tar -cf - -C "$1" . | tar -xf - -C "$2"', "sh", src, dst], {
      timeoutMs: 600_000,
    });
    return bytes / MB / (ms / 1000);
  } finally {
    rmSync(dst, { recursive: true, force: true });
  }
}

import { existsSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import type { BenchContext, Measurement, Row } from "../lib/context.ts";
import { type Figure, measured } from "../lib/figures.ts";
import { ROOT } from "../lib/peers.ts";

const PROGRAMS = [
  { id: "lambda", entry: "dist/lambda/handler.js", start: true },
  { id: "entrypoint", entry: "dist/container-entrypoint.mjs", start: true },
  { id: "controller", entry: "dist/controller.mjs", start: false },
] as const;

type Program = (typeof PROGRAMS)[number];

function rowsOf(p: Program): Row[] {
  const rows: Row[] = [];
  if (p.start) {
    rows.push(
      { id: `bundle-${p.id}-start-bytes`, title: `bundle ${p.entry}, loaded at start`, unit: "bytes" },
      { id: `bundle-${p.id}-start-gzip`, title: `bundle ${p.entry}, loaded at start, gzip`, unit: "bytes" },
    );
  }
  rows.push(
    { id: `bundle-${p.id}-total-bytes`, title: `bundle ${p.entry} with all its chunks`, unit: "bytes" },
    { id: `bundle-${p.id}-total-gzip`, title: `bundle ${p.entry} with all its chunks, gzip`, unit: "bytes" },
  );
  return rows;
}

/**
 * (8) Bytes and gzip bytes (level 9, file by file, as a zip stores them) of each program: what a
 * start loads (the entry file and the chunks it imports statically) and everything it can load
 * (dynamic imports too). Source maps are not counted.
 */
export const bundles: Measurement = {
  name: "bundles",
  rows: PROGRAMS.flatMap(rowsOf),
  async run(_ctx: BenchContext): Promise<Figure[]> {
    return PROGRAMS.flatMap((p) => {
      const graph = moduleGraph(join(ROOT, p.entry));
      const [startRows, totalRows] = p.start ? [rowsOf(p).slice(0, 2), rowsOf(p).slice(2)] : [[], rowsOf(p)];
      const figure = (row: Row, files: string[], gzip: boolean) =>
        measured({
          ...row,
          samples: [files.reduce((sum, file) => sum + size(file, gzip), 0)],
          notes: gzip ? [] : [`${files.length} file(s): ${files.map((f) => relative(ROOT, f)).join(", ")}`],
        });
      return [
        ...startRows.map((row, i) => figure(row, graph.start, i === 1)),
        ...totalRows.map((row, i) => figure(row, graph.all, i === 1)),
      ];
    });
  },
};

function size(file: string, gzip: boolean): number {
  const data = readFileSync(file);
  return gzip ? gzipSync(data, { level: 9 }).length : data.length;
}

/** Relative module specifiers in a bundle; `dynamic` when they are the argument of `import()`. */
const SPECIFIER = /(import\(\s*)?["'](\.\.?\/[^"'\s]+\.m?js)["']/g;

/**
 * The files a bundle entry loads: `start` follows static imports only (what a start parses),
 * `all` follows dynamic imports too.
 */
export function moduleGraph(entry: string): { start: string[]; all: string[] } {
  const walk = (withDynamic: boolean) => {
    const seen = new Set<string>();
    const queue = [resolve(entry)];
    while (queue.length > 0) {
      const file = queue.shift()!;
      if (seen.has(file)) continue;
      seen.add(file);
      for (const match of readFileSync(file, "utf8").matchAll(SPECIFIER)) {
        if (match[1] !== undefined && !withDynamic) continue;
        const target = resolve(dirname(file), match[2]!);
        // A string that merely looks like a path (in a message, say) names no file of the bundle.
        if (existsSync(target)) queue.push(target);
      }
    }
    return [...seen];
  };
  return { start: walk(false), all: walk(true) };
}

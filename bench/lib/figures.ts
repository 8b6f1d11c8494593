import { type Summary, summarize } from "./stats.ts";

/** Units of the figures: MB is 10^6 bytes throughout. */
export type Unit = "ms" | "MB/s" | "MB" | "bytes" | "CPU s/GB" | "CPU ms" | "% of a core";

export interface Target {
  /** What is required, e.g. `ratio <= 2.5`. */
  text: string;
  met: boolean;
  /** The number judged (ratio, median, p99, max...; in the figure's unit unless a ratio), null when unmeasured. */
  actual: number | null;
  /** `actual` as printed: `3.12x`, `5.40 CPU s/GB`, or the target's own wording. */
  shown: string | null;
  op: Op;
  limit: number;
}

/** One row of the results: a measured value beside its baseline, and the target it is held to. */
export interface Figure {
  id: string;
  title: string;
  unit: Unit;
  /** Null when the figure could not be measured: `na` says why, `error` when it failed. */
  value: Summary | null;
  na?: string;
  error?: string;
  baseline: { title: string; value: Summary } | null;
  /** value median / baseline median. */
  ratio: number | null;
  target: Target | null;
  notes: string[];
  details: Record<string, unknown>;
}

export type Op = "<=" | "<" | ">=";

export interface TargetSpec {
  text: string;
  /** The number the target is about (ratio, median, p99, max...), taken from the finished figure. */
  actual: (figure: Figure) => number | null;
  op: Op;
  limit: number;
  /** How `actual` is printed; by default `1.23x` for a `ratio ...` target, else a value in the figure's unit. */
  format?: (actual: number) => string;
}

export interface FigureInit {
  id: string;
  title: string;
  unit: Unit;
  samples: readonly number[];
  baseline?: { title: string; samples: readonly number[] };
  target?: TargetSpec;
  notes?: string[];
  details?: Record<string, unknown>;
}

export function compare(actual: number, op: Op, limit: number): boolean {
  switch (op) {
    case "<=":
      return actual <= limit;
    case "<":
      return actual < limit;
    case ">=":
      return actual >= limit;
  }
}

/** Builds a measured figure: summaries, ratio, and the target's verdict. */
export function measured(init: FigureInit): Figure {
  const value = summarize(init.samples);
  const baseline = init.baseline
    ? { title: init.baseline.title, value: summarize(init.baseline.samples) }
    : null;
  const figure: Figure = {
    id: init.id,
    title: init.title,
    unit: init.unit,
    value,
    baseline,
    ratio: baseline && baseline.value.median !== 0 ? value.median / baseline.value.median : null,
    target: null,
    notes: init.notes ?? [],
    details: init.details ?? {},
  };
  if (init.target) {
    const actual = init.target.actual(figure);
    figure.target = {
      text: init.target.text,
      met: actual !== null && compare(actual, init.target.op, init.target.limit),
      actual,
      shown:
        actual === null
          ? null
          : (init.target.format?.(actual) ??
            (init.target.text.startsWith("ratio")
              ? `${actual.toFixed(2)}x`
              : formatValue(actual, init.unit))),
      op: init.target.op,
      limit: init.target.limit,
    };
  }
  return figure;
}

/** A figure that cannot be measured yet (the feature does not exist), with the reason. */
export function notAvailable(id: string, title: string, unit: Unit, why: string): Figure {
  return {
    id,
    title,
    unit,
    value: null,
    na: `n/a (${why})`,
    baseline: null,
    ratio: null,
    target: null,
    notes: [],
    details: {},
  };
}

/** A figure whose measurement failed. */
export function failed(id: string, title: string, unit: Unit, error: unknown): Figure {
  const message = error instanceof Error ? error.message : String(error);
  return {
    id,
    title,
    unit,
    value: null,
    na: "error",
    error: message,
    baseline: null,
    ratio: null,
    target: null,
    notes: [],
    details: {},
  };
}

/** The verdict column: met, MISSED, n/a, ERROR, or a dash when there is no target. */
export function verdict(figure: Figure): string {
  if (figure.error !== undefined) return "ERROR";
  if (figure.value === null) return "n/a";
  if (figure.target === null) return "-";
  return figure.target.met ? "met" : "MISSED";
}

export function formatValue(value: number, unit: Unit): string {
  if (unit === "bytes") return `${Math.round(value).toLocaleString("en-US")} B`;
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${unit}`;
}

function formatRatio(ratio: number | null): string {
  if (ratio === null) return "-";
  return `${ratio >= 10 ? ratio.toFixed(1) : ratio.toFixed(2)}x`;
}

const HEADERS = [
  "measurement",
  "median",
  "p95",
  "baseline median",
  "baseline p95",
  "ratio",
  "target",
  "result",
];

/** The results as a Markdown table (readable in a terminal too), then what each baseline is. */
export function renderTable(figures: readonly Figure[]): string {
  const rows = figures.map((f) => {
    const value = f.value;
    const base = f.baseline?.value;
    return [
      f.title,
      value ? formatValue(value.median, f.unit) : (f.na ?? "n/a"),
      value ? (value.n > 1 ? formatValue(value.p95, f.unit) : "-") : "-",
      base ? formatValue(base.median, f.unit) : "-",
      base ? (base.n > 1 ? formatValue(base.p95, f.unit) : "-") : "-",
      formatRatio(f.ratio),
      f.target?.text ?? "-",
      verdict(f),
    ];
  });
  const widths = HEADERS.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  const out = [line(HEADERS), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)];
  return out.join("\n");
}

/** Lines naming each figure's baseline, notes and errors, printed under the table. */
export function renderNotes(figures: readonly Figure[]): string {
  const out: string[] = [];
  for (const f of figures) {
    const parts: string[] = [];
    if (f.baseline) parts.push(`baseline: ${f.baseline.title}`);
    if (f.value) parts.push(`n=${f.value.n}`);
    else if (f.error === undefined && f.na !== undefined) parts.push(f.na);
    parts.push(...f.notes);
    if (f.error !== undefined) parts.push(`ERROR: ${f.error}`);
    out.push(`- ${f.title}: ${parts.join("; ")}`);
  }
  return out.join("\n");
}

import type { Figure, Unit } from "./figures.ts";

/**
 * How much a run measures: `full` for the figures that count; `quick` for a short look (fewer
 * repetitions, smaller sizes); `smoke` to check that every measurement runs and reports its rows
 * (one small run each: its figures mean nothing; the bench test uses it).
 */
export type BenchScale = "full" | "quick" | "smoke";

export interface BenchContext {
  scale: BenchScale;
  /** Scratch directory of this run, removed at its end. */
  tmp: string;
  /** A progress line on stderr. */
  progress(message: string): void;
}

export interface Row {
  id: string;
  title: string;
  unit: Unit;
}

/** A group of figures measured together; `rows` lists them so that a failure still reports each. */
export interface Measurement {
  name: string;
  rows: readonly Row[];
  run(ctx: BenchContext): Promise<Figure[]>;
}

/** The value for the run's scale: `byScale(ctx, { full: 20, quick: 5, smoke: 1 })`. */
export function byScale<T>(ctx: BenchContext, values: Record<BenchScale, T>): T {
  return values[ctx.scale];
}

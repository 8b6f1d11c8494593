import type { Figure, Unit } from "./figures.ts";

export interface BenchContext {
  /** Fewer repetitions and smaller sizes. */
  quick: boolean;
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

/** A distribution of repeated samples; percentiles interpolate linearly between closest ranks. */
export interface Summary {
  n: number;
  median: number;
  p95: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
  /** The samples themselves, kept when there are at most {@link MAX_KEPT_SAMPLES}. */
  samples?: number[];
}

export const MAX_KEPT_SAMPLES = 100;

/** Summarizes `samples` (at least one). */
export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) throw new RangeError("Expected at least one sample, got none");
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = sorted.reduce((sum, x) => sum + x, 0) / sorted.length;
  const summary: Summary = {
    n: sorted.length,
    median: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
    mean,
  };
  if (samples.length <= MAX_KEPT_SAMPLES) summary.samples = samples.map(round3);
  return summary;
}

/** The `p`th percentile (0-100) of ascending `sorted`, interpolating between closest ranks. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new RangeError("Expected at least one sample, got none");
  const rank = (p / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.ceil(rank);
  const a = sorted[low]!;
  const b = sorted[high]!;
  return a + (b - a) * (rank - low);
}

export function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

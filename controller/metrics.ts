/**
 * Start-latency metrics over recent jobs, from their records (controller clock only):
 * - queue latency: submission -> an agent took the job (`submittedAt` -> `assignedAt`), which
 *   includes launching an agent when none was idle;
 * - start latency: submission -> the first byte of output arrived (`submittedAt` ->
 *   `firstOutputAt`): what a person waits before the log moves.
 * Grouped per label (a job with two labels counts in both; none is `(none)`) and platform (the
 * runtime of the agent that took it; `(none)` until one does). Served as JSON and as Prometheus
 * text by `GET /api/v1/metrics`.
 */
import type { JobRecord, JobStatus } from "./job-record.ts";

/** Percentiles of a set of durations, ms (nearest-rank). */
export interface LatencySummary {
  count: number;
  p50: number;
  p95: number;
  max: number;
  sum: number;
}

export interface MetricsGroup {
  label: string;
  platform: string;
  /** Jobs of the window in this group. */
  jobs: number;
  queueMs: LatencySummary | null;
  startMs: LatencySummary | null;
}

export interface Metrics {
  /** Jobs submitted in the last `windowMs` (at most `MAX_WINDOW_JOBS`, the most recent) are summed up. */
  windowMs: number;
  generatedAt: string;
  /** Jobs in the window. */
  jobs: number;
  /** Every job the controller holds, by status. */
  jobsByStatus: Partial<Record<JobStatus, number>>;
  /** Connected agents by state. */
  agentsByState: Record<string, number>;
  /** Age of the oldest job still queued, ms (0 when none waits). */
  oldestQueuedMs: number;
  groups: MetricsGroup[];
}

export const DEFAULT_WINDOW_MS = 3_600_000;
export const MAX_WINDOW_JOBS = 1_000;
const NONE = "(none)";

/** Nearest-rank percentile summary of `values` (ms), or null when there are none. */
export function summarize(values: number[]): LatencySummary | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
  return {
    count: sorted.length,
    p50: rank(50),
    p95: rank(95),
    max: sorted[sorted.length - 1]!,
    sum: sorted.reduce((total, value) => total + value, 0),
  };
}

const span = (from: string | undefined, to: string | undefined): number | undefined => {
  if (from === undefined || to === undefined) return undefined;
  const ms = Date.parse(to) - Date.parse(from);
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
};

/**
 * The metrics of `jobs` (and `agents`' states) at `now`, over the jobs submitted in the last
 * `windowMs`.
 */
export function computeMetrics(
  jobs: readonly JobRecord[],
  agentStates: readonly string[],
  now: number,
  windowMs = DEFAULT_WINDOW_MS,
): Metrics {
  const jobsByStatus: Partial<Record<JobStatus, number>> = {};
  let oldestQueuedMs = 0;
  for (const job of jobs) {
    jobsByStatus[job.status] = (jobsByStatus[job.status] ?? 0) + 1;
    if (job.status === "queued") oldestQueuedMs = Math.max(oldestQueuedMs, now - Date.parse(job.submittedAt));
  }
  const recent = jobs
    .filter((job) => now - Date.parse(job.submittedAt) <= windowMs)
    .sort((a, b) => Date.parse(b.submittedAt) - Date.parse(a.submittedAt))
    .slice(0, MAX_WINDOW_JOBS);
  const groups = new Map<
    string,
    { label: string; platform: string; jobs: number; queue: number[]; start: number[] }
  >();
  for (const job of recent) {
    const platform = job.agent?.runtime ?? NONE;
    const queue = span(job.submittedAt, job.assignedAt);
    const start = span(job.submittedAt, job.firstOutputAt);
    for (const label of job.labels.length > 0 ? job.labels : [NONE]) {
      const key = JSON.stringify([label, platform]);
      let group = groups.get(key);
      if (group === undefined) {
        group = { label, platform, jobs: 0, queue: [], start: [] };
        groups.set(key, group);
      }
      group.jobs++;
      if (queue !== undefined) group.queue.push(queue);
      if (start !== undefined) group.start.push(start);
    }
  }
  const agentsByState: Record<string, number> = {};
  for (const state of agentStates) agentsByState[state] = (agentsByState[state] ?? 0) + 1;
  return {
    windowMs,
    generatedAt: new Date(now).toISOString(),
    jobs: recent.length,
    jobsByStatus,
    agentsByState,
    oldestQueuedMs,
    groups: [...groups.values()]
      .sort((a, b) => a.label.localeCompare(b.label) || a.platform.localeCompare(b.platform))
      .map((g) => ({
        label: g.label,
        platform: g.platform,
        jobs: g.jobs,
        queueMs: summarize(g.queue),
        startMs: summarize(g.start),
      })),
  };
}

/** A Prometheus label value, escaped (backslash, double quote, newline). */
function labelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

const seconds = (ms: number) => String(ms / 1000);

/** The metrics in the Prometheus text exposition format (version 0.0.4). */
export function prometheusText(metrics: Metrics): string {
  const lines: string[] = [];
  const windowSeconds = metrics.windowMs / 1000;
  const summary = (name: string, help: string, pick: (g: MetricsGroup) => LatencySummary | null) => {
    lines.push(
      `# HELP ${name} ${help} Jobs submitted in the last ${windowSeconds} s.`,
      `# TYPE ${name} summary`,
    );
    for (const group of metrics.groups) {
      const s = pick(group);
      if (s === null) continue;
      const labels = `label="${labelValue(group.label)}",platform="${labelValue(group.platform)}"`;
      lines.push(
        `${name}{${labels},quantile="0.5"} ${seconds(s.p50)}`,
        `${name}{${labels},quantile="0.95"} ${seconds(s.p95)}`,
        `${name}_sum{${labels}} ${seconds(s.sum)}`,
        `${name}_count{${labels}} ${s.count}`,
      );
    }
  };
  summary(
    "controller_job_queue_seconds",
    "Time from a job's submission to an agent taking it.",
    (g) => g.queueMs,
  );
  summary(
    "controller_job_start_seconds",
    "Time from a job's submission to its first output byte.",
    (g) => g.startMs,
  );
  lines.push("# HELP controller_jobs Jobs the controller holds, by status.", "# TYPE controller_jobs gauge");
  for (const [status, count] of Object.entries(metrics.jobsByStatus))
    lines.push(`controller_jobs{status="${labelValue(status)}"} ${count}`);
  lines.push("# HELP controller_agents Connected agents, by state.", "# TYPE controller_agents gauge");
  for (const [state, count] of Object.entries(metrics.agentsByState))
    lines.push(`controller_agents{state="${labelValue(state)}"} ${count}`);
  lines.push(
    "# HELP controller_queue_oldest_seconds Age of the oldest job still waiting for an agent.",
    "# TYPE controller_queue_oldest_seconds gauge",
    `controller_queue_oldest_seconds ${seconds(metrics.oldestQueuedMs)}`,
  );
  return `${lines.join("\n")}\n`;
}

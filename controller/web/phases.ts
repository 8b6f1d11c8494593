/**
 * A job's life as phases on one time axis (queue, launch, connect, steps), from its record. Used by
 * the timeline picture and the jobs list. Times the record lacks (a job still queued, a
 * controller that does not record launches) shorten the list; a phase still going ends at `now`.
 */
import type { JobRecord, StepStatus } from "../job-record.ts";

/** Record fields the view reads when the controller records them (launches, first output). */
export type JobView = JobRecord & {
  launchedAt?: string;
  connectedAt?: string;
  firstOutputAt?: string;
  /** The job this one re-runs (`POST /api/v1/jobs/:id/retry`). */
  retryOf?: string;
  attempts?: { agent?: string; platform?: string; runtime?: string }[];
};

export type PhaseKind = "queue" | "launch" | "start" | "step";

export interface Phase {
  kind: PhaseKind;
  label: string;
  /** Epoch ms. */
  from: number;
  to: number;
  /** Still going (its end is `now`). */
  open: boolean;
  status?: StepStatus;
}

const time = (iso: string | undefined): number | undefined => {
  if (iso === undefined) return undefined;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? undefined : ms;
};

const firstOf = (...values: (number | undefined)[]): number | undefined =>
  values.find((value) => value !== undefined);

/** The job's phases in time order. */
export function jobPhases(record: JobView, now: number): Phase[] {
  const submitted = time(record.submittedAt);
  if (submitted === undefined) return [];
  const launched = time(record.launchedAt);
  const connected = time(record.connectedAt);
  const assigned = time(record.assignedAt);
  const started = time(record.startedAt);
  const ended = time(record.endedAt);
  const phases: Phase[] = [];
  const add = (kind: PhaseKind, label: string, from: number, to: number | undefined, status?: StepStatus) => {
    const end = to ?? ended ?? now;
    phases.push({
      kind,
      label,
      from,
      to: Math.max(from, end),
      open: to === undefined && ended === undefined,
      ...(status ? { status } : {}),
    });
  };
  add("queue", "queued", submitted, firstOf(launched, assigned, started));
  if (launched !== undefined)
    add("launch", "launching agent", launched, firstOf(connected, assigned, started));
  const ready = firstOf(connected, assigned);
  if (ready !== undefined && (started !== undefined || ended === undefined))
    add("start", "agent ready", ready, started);
  for (const step of record.steps) {
    const from = time(step.startedAt);
    if (from === undefined) continue;
    // The step's own duration (measured by the agent) rather than two clocks' difference.
    const to =
      step.durationMs !== undefined
        ? from + step.durationMs
        : (time(step.endedAt) ?? (step.status === "running" ? undefined : from));
    add("step", step.name ?? `step ${step.id}`, from, to, step.status);
  }
  return phases;
}

/** When the first output byte arrived (epoch ms), if it did. */
export function firstOutputMs(record: JobView): number | undefined {
  return time(record.firstOutputAt);
}

/** Milliseconds from submission to the first step, or to now while the job waits; undefined when unknown. */
export function waitMs(record: JobView, now: number): number | undefined {
  const submitted = time(record.submittedAt);
  if (submitted === undefined) return undefined;
  const started = time(record.startedAt);
  if (started !== undefined) return started - submitted;
  const ended = time(record.endedAt);
  return (ended ?? now) - submitted;
}

/** Milliseconds the job ran (first step to end, or to now). */
export function runMs(record: JobView, now: number): number | undefined {
  const started = time(record.startedAt);
  if (started === undefined) return undefined;
  return (time(record.endedAt) ?? now) - started;
}

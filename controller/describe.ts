/**
 * Plain words for a job's figures and outcomes, shared by the terminal renderer and the web view
 * (so this module imports nothing that needs Node: the browser bundle includes it).
 */
import type { FailureCause, JobReason, StepRecord } from "./job-record.ts";

// agent-core's one byte formatter, by its own path: it imports nothing, so the browser bundle can
// take it, where agent-core's index pulls in Node built-ins.
export { formatBytes } from "../agent-core/format.ts";

/** What each reason a job or step ended for means, in words (the closed set of `JobReason`). */
export const REASON_WORDS: Readonly<Record<JobReason, string>> = {
  exit: "a step exited with a non-zero code",
  timeout: "a step ran past its timeout and was stopped",
  cancelled: "the job was cancelled",
  deadline: "the platform's deadline was near (Lambda's time limit), so the agent stopped the job",
  disk: "a step went over the disk budget",
  interrupted: "the agent was stopped by a signal (SIGTERM: scale-in, Spot interruption, shutdown)",
  error: "a step could not be started",
  "agent-lost": "the agent was lost before the job ended",
  "provision-failed": "no agent could be started for the job",
  "log-limit": "the job's log reached the controller's size cap, so the job was stopped",
  "artifact-limit": "the job's artifacts were over the controller's size cap, so they were dropped",
};

/** Who a failure is attributed to, in words. */
export const CAUSE_WORDS: Readonly<Record<FailureCause, string>> = {
  user: "the job's own commands failed; running it again unchanged will fail the same way",
  platform: "the platform failed the job, not its commands; running it again may succeed",
};

/**
 * One line on why a job failed: `reason` and `cause` in words.
 *
 * @example
 * describeFailure("exit", "user")
 * // "a step exited with a non-zero code (exit, user: the job's own commands failed; ...)"
 */
export function describeFailure(reason: JobReason | undefined, cause: FailureCause | undefined): string {
  const what = reason === undefined ? "unknown reason" : (REASON_WORDS[reason] ?? reason);
  const tag = [reason, cause].filter((part) => part !== undefined).join(", ");
  const who = cause === undefined ? "" : `: ${CAUSE_WORDS[cause] ?? cause}`;
  return tag === "" ? what : `${what} (${tag}${who})`;
}

/** How a step ended, short: `exit 0`, `exit 3`, `timeout (SIGTERM)`. */
export function describeStepEnd(step: Pick<StepRecord, "reason" | "exitCode" | "signal">): string {
  if (step.reason === undefined) return "";
  if (step.reason === "exit") return `exit ${step.exitCode ?? "?"}`;
  return `${step.reason}${step.signal ? ` (${step.signal})` : ""}`;
}

/** A duration for people: `850 ms`, `12.3 s`, `4 m 05 s`, `1 h 02 m`. Negative or NaN input gives `-`. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "-";
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  const totalSeconds = Math.round(ms / 1_000);
  if (totalSeconds < 3_600)
    return `${Math.floor(totalSeconds / 60)} m ${String(totalSeconds % 60).padStart(2, "0")} s`;
  const totalMinutes = Math.floor(totalSeconds / 60);
  return `${Math.floor(totalMinutes / 60)} h ${String(totalMinutes % 60).padStart(2, "0")} m`;
}

/** A step's title as the logs show it: its name, else `step <id>`. */
export function stepTitle(step: { id?: string; stepId?: string; name?: string | undefined }): string {
  return step.name ?? `step ${step.id ?? step.stepId ?? "?"}`;
}

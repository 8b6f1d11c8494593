import type { JobOutcome, JobSink, OutputFlow, StepOutcome } from "../job/run-job.ts";
import type { Logger } from "../logger.ts";
import type { OutputStream } from "../protocol/frames.ts";
import type { Job } from "../protocol/messages.ts";
import type { JobLogLines } from "./job-log-lines.ts";

/** A destination of a job's structured events (the controller's stream). */
export interface JobEventTarget {
  stepStart(stepId: string, startedAt: number): void;
  output(stepId: string, stream: OutputStream, offset: number, data: Buffer): void;
  stepEnd(stepId: string, outcome: StepOutcome): void;
}

export interface JobOutputOptions {
  job: Job;
  agentName: string;
  /** Structured destinations, in order (the controller's stream). */
  events: JobEventTarget[];
  /** Line-oriented destinations (the CloudWatch copy): they also get the job's and steps' headers and footers. */
  lines: JobLogLines[];
  /** The backpressure the runner obeys (the controller stream's outbox). */
  flow: OutputFlow;
  logger: Logger;
}

/**
 * The one splitter of a job's output (buildkite's `io.MultiWriter`): every event the runner
 * produces goes to each destination in turn, and the text of the job's and steps' headers and
 * footers is written here and nowhere else. A destination that throws is counted and warned
 * about once; it never stops the others or the job.
 *
 * @example
 * const tee = new JobOutputTee({ job, agentName, events: [channel], lines: [copy.lines], flow: channel.flow, logger });
 * tee.jobStart();
 * const outcome = await runJob({ ...options, sink: tee });
 * tee.jobEnd(outcome);
 */
export class JobOutputTee implements JobSink {
  readonly flow: OutputFlow;
  readonly #options: JobOutputOptions;
  readonly #failures = new Map<object, number>();

  constructor(options: JobOutputOptions) {
    this.#options = options;
    this.flow = options.flow;
  }

  /** How many calls each failing destination threw (for the run's diagnostics). */
  get failures(): number {
    let total = 0;
    for (const count of this.#failures.values()) total += count;
    return total;
  }

  jobStart(): void {
    const { job, agentName } = this.#options;
    this.#toLines((lines) =>
      lines.line(`=== job ${job.id}${job.name ? ` (${job.name})` : ""} on agent ${agentName}`),
    );
  }

  stepStart(stepId: string, startedAt: number): void {
    const header = `==> ${this.#position(stepId)}`;
    this.#toLines((lines) => lines.stepStart(header));
    this.#toEvents((events) => events.stepStart(stepId, startedAt));
  }

  output(stepId: string, stream: OutputStream, offset: number, data: Buffer): void {
    this.#toLines((lines) => lines.output(stream, data));
    this.#toEvents((events) => events.output(stepId, stream, offset, data));
  }

  stepEnd(stepId: string, outcome: StepOutcome): void {
    const how =
      outcome.reason === "exit"
        ? `exit ${outcome.exitCode}`
        : `${outcome.reason}${outcome.signal ? ` (${outcome.signal})` : ""}`;
    const footer = `<== ${this.#position(stepId)}: ${how} in ${outcome.durationMs} ms${outcome.message ? ` - ${outcome.message}` : ""}`;
    this.#toLines((lines) => lines.stepEnd(footer));
    this.#toEvents((events) => events.stepEnd(stepId, outcome));
  }

  /** The job's footer line (the controller learns the end from `job-end`, sent by the channel). */
  jobEnd(outcome: JobOutcome): void {
    const footer = `=== job ${outcome.status} (${outcome.reason}) in ${outcome.durationMs} ms${outcome.message ? `: ${outcome.message}` : ""}`;
    this.#toLines((lines) => lines.line(footer));
  }

  /** `[2/3] build`: the step's place in the job and its name (or id). */
  #position(stepId: string): string {
    const { steps } = this.#options.job;
    const index = steps.findIndex((s) => s.id === stepId);
    return `[${index + 1}/${steps.length}] ${steps[index]?.name ?? `step ${stepId}`}`;
  }

  #toLines(write: (lines: JobLogLines) => void): void {
    for (const lines of this.#options.lines) this.#guard(lines, () => write(lines));
  }

  #toEvents(write: (events: JobEventTarget) => void): void {
    for (const events of this.#options.events) this.#guard(events, () => write(events));
  }

  #guard(target: object, write: () => void): void {
    try {
      write();
    } catch (error) {
      const count = (this.#failures.get(target) ?? 0) + 1;
      this.#failures.set(target, count);
      if (count === 1) {
        this.#options.logger.warn("a destination of the job's output failed; it is skipped for this event", {
          error,
        });
      }
    }
  }
}

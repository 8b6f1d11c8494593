import { styleText } from "node:util";
import { describeFailure, describeStepEnd, formatBytes, formatMs, stepTitle } from "./describe.ts";
import type { JobEvent, JobRecord } from "./job-record.ts";

export interface RenderOptions {
  write: (text: string) => void;
  /** Paint with ANSI colours (decide with `colorEnabled`). */
  color: boolean;
}

type Format = Parameters<typeof styleText>[0];

/**
 * `text` in `format` when `on`, line by line, so every line ends its colour before its newline
 * (a terminal, a pager or a CI log viewer cutting at a newline sees no colour run on).
 * The decision is made once by the caller (`colorEnabled`): styleText does not check the stream.
 */
export function paint(on: boolean, format: Format, text: string): string {
  if (!on) return text;
  return text
    .split("\n")
    .map((line) => (line === "" ? "" : styleText(format, line, { validateStream: false })))
    .join("\n");
}

/** The parts of a writable stream that tell whether it shows colours. */
export interface ColorTarget {
  isTTY?: boolean;
  hasColors?: (env?: object) => boolean;
}

/**
 * Whether to colour what goes to `stream`, by the common conventions, in this order:
 * `FORCE_COLOR` set: on for `""`, `1`, `2`, `3`, `true`, off for anything else (as Node reads it);
 * `NO_COLOR` set and not empty: off (no-color.org); `NODE_DISABLE_COLORS`: off; otherwise on
 * only for a terminal that has colours (`TERM=dumb` has none).
 *
 * @example
 * colorEnabled(process.stdout, process.env) // false when piped, or under NO_COLOR=1
 */
export function colorEnabled(stream: ColorTarget, env: NodeJS.ProcessEnv): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined) return ["", "1", "2", "3", "true"].includes(force);
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  if (env.NODE_DISABLE_COLORS !== undefined) return false;
  if (stream.isTTY !== true) return false;
  return stream.hasColors?.(env) ?? env.TERM !== "dumb";
}

/**
 * Renders a job's events for a terminal: a header per step, its output as it arrives (stderr in
 * red on a colour terminal), and a footer with the exit code and duration.
 */
export function createRenderer(options: RenderOptions): (event: JobEvent) => void {
  const { write, color } = options;
  let atLineStart = true;
  const ensureNewline = () => {
    if (!atLineStart) write("\n");
    atLineStart = true;
  };
  const line = (format: Format, text: string) => write(`${paint(color, format, text)}\n`);
  return (event) => {
    switch (event.type) {
      case "status":
        if (event.status === "assigned") {
          line("dim", `--- job assigned to agent ${event.agent ?? "?"}`);
          if (event.logs) {
            const { region, group, stream, url } = event.logs;
            line(
              "dim",
              `--- agent logs: CloudWatch ${region} ${group} ${stream}${url ? `\n--- ${url}` : ""}`,
            );
          }
        }
        break;
      case "attempt":
        if (event.retryOf === undefined) break;
        ensureNewline();
        line(
          ["bold", "yellow"],
          `--- attempt ${event.attempt} on agent ${event.agent} (${event.platform}${event.template ? `, ${event.template}` : ""}): the previous one ended ${event.retryOf.cause}${event.retryOf.message ? `: ${event.retryOf.message}` : ""}`,
        );
        break;
      case "step-start":
        ensureNewline();
        line(["bold", "cyan"], `==> [${event.index}/${event.total}] ${stepTitle(event)}`);
        break;
      case "output":
        if (event.text === "") break;
        write(event.stream === "stderr" ? paint(color, "red", event.text) : event.text);
        atLineStart = event.text.endsWith("\n");
        break;
      case "step-end": {
        ensureNewline();
        const peak =
          typeof event.peakRssBytes === "number" ? `, peak memory ${formatBytes(event.peakRssBytes)}` : "";
        const extra = `${peak}${event.message ? ` - ${event.message}` : ""}`;
        line(
          event.status === "succeeded" ? "green" : ["bold", "red"],
          `<== [${event.index}/${event.total}] ${describeStepEnd(event)} in ${formatMs(event.durationMs)}${extra}`,
        );
        break;
      }
      case "artifacts": {
        ensureNewline();
        const unmatched =
          event.unmatched.length > 0 ? `; matched nothing: ${event.unmatched.join(", ")}` : "";
        const skipped =
          event.skippedCount > 0
            ? `; ${event.skippedCount} left out (links leaving the workspace, special files)`
            : "";
        if (event.status === "stored") {
          line(
            unmatched === "" ? "dim" : "yellow",
            `--- artifacts: ${event.entries} ${event.entries === 1 ? "entry" : "entries"}, ${formatBytes(event.bytes)}${unmatched}${skipped}`,
          );
        } else {
          line(
            ["bold", "red"],
            `--- artifacts refused: ${event.code}${event.entry !== null ? ` (entry ${event.entry})` : ""}: ${event.message}${unmatched}`,
          );
        }
        break;
      }
      case "job-end": {
        ensureNewline();
        const ok = event.status === "succeeded";
        const why = ok ? "" : `: ${describeFailure(event.reason, event.cause)}`;
        line(
          ok ? ["bold", "green"] : ["bold", "red"],
          `=== job ${event.status} in ${formatMs(event.durationMs ?? 0)}${why}`,
        );
        if (!ok && event.message) line("red", `=== ${event.message}`);
        break;
      }
    }
  };
}

/**
 * What a terminal shows after a job that did not succeed, from its record: the step that failed
 * and the steps that were skipped, one line each. Empty for a job that succeeded.
 */
export function renderOutcome(record: JobRecord, color: boolean): string {
  if (record.status === "succeeded") return "";
  const total = record.steps.length;
  const lines: string[] = [];
  record.steps.forEach((step, i) => {
    const place = `[${i + 1}/${total}] ${stepTitle(step)}`;
    if (step.status === "failed")
      lines.push(paint(color, "red", `=== failed: ${place} (${describeStepEnd(step)})`));
    if (step.status === "skipped") lines.push(paint(color, "dim", `=== skipped: ${place}`));
  });
  return lines.length === 0 ? "" : `${lines.join("\n")}\n`;
}

import { formatBytes } from "../agent-core/index.ts";
import type { JobEvent } from "./job-record.ts";

export interface RenderOptions {
  write: (text: string) => void;
  color: boolean;
}

const paint = (on: boolean, code: string, text: string) => (on ? `\u001b[${code}m${text}\u001b[0m` : text);

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
  return (event) => {
    switch (event.type) {
      case "status":
        if (event.status === "assigned") {
          write(paint(color, "2", `--- job assigned to agent ${event.agent ?? "?"}\n`));
          if (event.logs) {
            const { region, group, stream, url } = event.logs;
            write(
              paint(
                color,
                "2",
                `--- agent logs: CloudWatch ${region} ${group} ${stream}${url ? `\n--- ${url}` : ""}\n`,
              ),
            );
          }
        }
        break;
      case "attempt":
        if (event.retryOf === undefined) break;
        ensureNewline();
        write(
          paint(
            color,
            "1;33",
            `--- attempt ${event.attempt} on agent ${event.agent} (${event.platform}${event.template ? `, ${event.template}` : ""}): the previous one ended ${event.retryOf.cause}${event.retryOf.message ? `: ${event.retryOf.message}` : ""}\n`,
          ),
        );
        break;
      case "step-start":
        ensureNewline();
        write(
          paint(
            color,
            "1;36",
            `==> [${event.index}/${event.total}] ${event.name ?? `step ${event.stepId}`}\n`,
          ),
        );
        break;
      case "output":
        if (event.text === "") break;
        write(event.stream === "stderr" ? paint(color, "31", event.text) : event.text);
        atLineStart = event.text.endsWith("\n");
        break;
      case "step-end": {
        ensureNewline();
        const ok = event.status === "succeeded";
        const how =
          event.reason === "exit"
            ? `exit ${event.exitCode}`
            : `${event.reason}${event.signal ? ` (${event.signal})` : ""}`;
        const peak =
          typeof event.peakRssBytes === "number" ? `, peak memory ${formatBytes(event.peakRssBytes)}` : "";
        const extra = `${peak}${event.message ? ` - ${event.message}` : ""}`;
        write(
          paint(
            color,
            ok ? "32" : "1;31",
            `<== [${event.index}/${event.total}] ${how} in ${formatMs(event.durationMs)}${extra}\n`,
          ),
        );
        break;
      }
      case "job-end": {
        ensureNewline();
        const ok = event.status === "succeeded";
        const why = ok ? "" : ` (${event.reason ?? "unknown"}${event.cause ? `, ${event.cause}` : ""})`;
        const message = event.message ? `: ${event.message}` : "";
        write(
          paint(
            color,
            ok ? "1;32" : "1;31",
            `=== job ${event.status}${why} in ${formatMs(event.durationMs ?? 0)}${message}\n`,
          ),
        );
        break;
      }
    }
  };
}

export function formatMs(ms: number): string {
  return ms < 1_000 ? `${ms} ms` : `${(ms / 1_000).toFixed(1)} s`;
}

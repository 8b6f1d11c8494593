/**
 * The web view's model of one job's log: sections (a "Set up job" section, then one per step)
 * holding lines already turned into HTML, and the mapping from a row of the log view (a section
 * header or a line) to what it shows. Fed with the job's events as they stream; no DOM here, so it
 * is tested in Node.
 *
 * Costs are per event, never per log: a line is converted to HTML once, when it arrives (ansi_up,
 * one converter per section so colours carry across lines as in a terminal); the view renders
 * only the rows on screen. A 50 MB log is about 700k lines: a few arrays of that length.
 *
 * What the page holds is bounded (`LogBudget`): the controller keeps logs up to 1 GiB, and a tab
 * holding such a log line by line would run out of memory. Past the budget the oldest lines are
 * dropped (a row says how many, and links to the raw log, which has them all), as Jenkins shows
 * the end of a long console with a link to the full log.
 */
import { AnsiUp } from "ansi_up";
import { formatBytes, formatMs, stepTitle } from "../describe.ts";
import type { JobEvent, JobStatus, StepRecord, StepStatus } from "../job-record.ts";

/**
 * Longest line kept as one row, in characters: a longer one (minified output, a progress bar
 * without newlines) continues on the next rows, so no row can hold megabytes.
 */
export const MAX_LINE_CHARS = 4096;

/** How much of a log the page holds at most. */
export interface LogBudget {
  /** Lines held. */
  maxLines: number;
  /** Characters of HTML held (the lines as shown, with their colour spans). */
  maxChars: number;
}

/**
 * A 50 MB log of ordinary lines fits whole (about 700k lines, 80 Mi characters with colours);
 * 7M short lines would take half a gigabyte of the tab's memory, so only the last million stay.
 */
export const DEFAULT_LOG_BUDGET: LogBudget = { maxLines: 1_000_000, maxChars: 128 * 1024 * 1024 };

export type SectionStatus = StepStatus | "info";

/** Fields an event may carry beyond the stored shape (receipt times, when the controller adds them). */
type Timed = { at?: string; agentAt?: string };
export type LogEvent = JobEvent & Timed;

export interface Section {
  /** `setup` for the job's own section, else the step id. */
  readonly key: string;
  readonly stepId: string | undefined;
  title: string;
  /** 1-based position among the job's steps (0 for the setup section). */
  index: number;
  total: number;
  status: SectionStatus;
  collapsed: boolean;
  /** Set once the user opened or closed it: automatic collapsing leaves it alone from then on. */
  userToggled: boolean;
  exitCode?: number | null;
  signal?: string | null;
  reason?: string;
  message?: string;
  durationMs?: number;
  peakRssBytes?: number | null;
  startedAt?: number;
  /** Lines dropped from the start of the section to keep the page within its budget. */
  dropped: number;
  /** Each line's HTML (escaped text and colour spans), from line `dropped` on. */
  readonly html: string[];
  /** Each line's receipt time (epoch ms), NaN when unknown. */
  readonly at: number[];
  /** 1 where the line began on stderr. */
  readonly stderr: number[];
  /** 1 where the line continues the previous one (it was longer than MAX_LINE_CHARS). */
  readonly continued: number[];
  /** The last line has not ended yet. */
  open: boolean;
  openChars: number;
  /** A `\r` ended the last piece: a `\n` next makes it CRLF, anything else rewrites the line. */
  pendingCr: boolean;
  readonly ansi: AnsiUp;
}

/**
 * A row of the view: a section's header, the note that some of its lines were dropped, or a line
 * (`line` indexes the section's held arrays; its number in the step is `dropped + line + 1`).
 */
export type LogRow =
  | { kind: "header"; section: Section }
  | { kind: "dropped"; section: Section }
  | { kind: "line"; section: Section; line: number };

function newAnsi(): AnsiUp {
  const ansi = new AnsiUp();
  ansi.use_classes = true;
  return ansi;
}

function newSection(key: string, stepId: string | undefined, title: string, index: number, total: number) {
  const section: Section = {
    key,
    stepId,
    title,
    index,
    total,
    status: stepId === undefined ? "info" : "pending",
    collapsed: stepId !== undefined,
    userToggled: false,
    dropped: 0,
    html: [],
    at: [],
    stderr: [],
    continued: [],
    open: false,
    openChars: 0,
    pendingCr: false,
    ansi: newAnsi(),
  };
  return section;
}

/** The agent's CloudWatch Logs copy, linked when its console URL is an https URL. */
function cloudWatchLine(logs: NonNullable<Extract<LogEvent, { type: "status" }>["logs"]>): string {
  const where = escapeHtml(`${logs.region} ${logs.group} ${logs.stream}`);
  const url = safeUrl(logs.url);
  return url === undefined
    ? `CloudWatch Logs copy: ${where}`
    : `CloudWatch Logs copy: <a class="cloudwatch" href="${escapeHtml(url)}" target="_blank" rel="noopener noreferrer">${where}</a>`;
}

/** The URL when it is https (an agent reports it: nothing else may become a link). */
export function safeUrl(url: string | null | undefined): string | undefined {
  if (!url) return undefined;
  try {
    return new URL(url).protocol === "https:" ? url : undefined;
  } catch {
    return undefined;
  }
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export class LogModel {
  readonly sections: Section[] = [];
  readonly #byStep = new Map<string, Section>();
  readonly #setup: Section;
  /** Grows whenever rows change (lines added, a section toggled): the view re-renders on change. */
  version = 0;
  jobStatus: JobStatus | undefined;
  #starts: number[] = [];
  #startsVersion = -1;
  readonly #budget: LogBudget;
  #heldLines = 0;
  #heldChars = 0;

  constructor(budget: LogBudget = DEFAULT_LOG_BUDGET) {
    this.#budget = budget;
    this.#setup = newSection("setup", undefined, "Set up job", 0, 0);
    this.sections.push(this.#setup);
  }

  /** Declares the job's steps (from its record) so steps not started yet show as pending. */
  setSteps(steps: readonly Pick<StepRecord, "id" | "name" | "status">[]): void {
    steps.forEach((step, i) => {
      const section = this.#section(step.id, step.name, i + 1, steps.length);
      if (section.status === "pending" && step.status !== "pending") section.status = step.status;
    });
    this.version++;
  }

  /** Applies one event of `GET /api/v1/jobs/:id/events`. */
  ingest(event: LogEvent): void {
    const at = event.at !== undefined ? Date.parse(event.at) : Number.NaN;
    switch (event.type) {
      case "status":
        this.jobStatus = event.status;
        this.#systemLine(this.#statusText(event), at);
        if (event.logs !== undefined) this.#systemLine(cloudWatchLine(event.logs), at);
        break;
      case "step-start": {
        const section = this.#section(event.stepId, event.name, event.index, event.total);
        section.status = "running";
        section.startedAt = Date.parse(event.at);
        // Like a terminal that scrolls on: what succeeded before this step folds away, the new
        // step opens. The last step stays open, so a finished job shows its final output.
        for (const other of this.sections)
          if (
            other !== section &&
            !other.userToggled &&
            (other.status === "succeeded" || other === this.#setup)
          )
            other.collapsed = true;
        if (!section.userToggled) section.collapsed = false;
        break;
      }
      case "output": {
        const section = this.#byStep.get(event.stepId) ?? this.#section(event.stepId, undefined, 0, 0);
        this.#append(section, event.text, event.stream === "stderr", at);
        this.#keepWithinBudget();
        break;
      }
      case "step-end": {
        const section = this.#byStep.get(event.stepId) ?? this.#section(event.stepId, undefined, 0, 0);
        Object.assign(section, {
          status: event.status,
          exitCode: event.exitCode,
          signal: event.signal,
          reason: event.reason,
          durationMs: event.durationMs,
          ...(event.peakRssBytes !== undefined ? { peakRssBytes: event.peakRssBytes } : {}),
          ...(event.message !== undefined ? { message: event.message } : {}),
        });
        section.open = false;
        break;
      }
      case "job-end":
        this.jobStatus = event.status;
        for (const section of this.sections) {
          if (section.status === "pending") section.status = "skipped";
          else if (section.status === "running") section.status = "failed";
        }
        this.#systemLine(
          `Job ${escapeHtml(event.status)}${event.durationMs !== undefined ? ` in ${formatMs(event.durationMs)}` : ""}${event.message ? `: ${escapeHtml(event.message)}` : ""}`,
          at,
        );
        break;
    }
    this.version++;
  }

  /** Opens or closes a section (the user's choice sticks). */
  toggle(section: Section, collapsed = !section.collapsed): void {
    section.collapsed = collapsed;
    section.userToggled = true;
    this.version++;
  }

  /** Opens or closes every section. */
  setAllCollapsed(collapsed: boolean): void {
    for (const section of this.sections) this.toggle(section, collapsed);
  }

  /** Lines of the log so far, dropped ones included. */
  get lineCount(): number {
    return this.sections.reduce((sum, s) => sum + s.dropped + s.html.length, 0);
  }

  /** Lines dropped to keep within the budget. */
  get droppedLines(): number {
    return this.sections.reduce((sum, s) => sum + s.dropped, 0);
  }

  /** Rows the view has: one header per section, plus the rows of open sections. */
  get rowCount(): number {
    const starts = this.#rowStarts();
    return starts[starts.length - 1]! + sectionRows(this.sections[this.sections.length - 1]!);
  }

  /** What row `index` shows. */
  row(index: number): LogRow | undefined {
    const starts = this.#rowStarts();
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= index) lo = mid;
      else hi = mid - 1;
    }
    const section = this.sections[lo]!;
    const offset = index - starts[lo]!;
    if (offset === 0) return { kind: "header", section };
    if (section.collapsed || offset >= sectionRows(section) || index < 0) return undefined;
    if (section.dropped > 0 && offset === 1) return { kind: "dropped", section };
    return { kind: "line", section, line: offset - (section.dropped > 0 ? 2 : 1) };
  }

  /** The row of a section's header. */
  headerRow(section: Section): number {
    return this.#rowStarts()[this.sections.indexOf(section)] ?? 0;
  }

  /** A section's summary for its header: duration, how it ended, peak memory. */
  static summary(section: Section): string[] {
    const parts: string[] = [];
    if (section.reason !== undefined)
      parts.push(
        section.reason === "exit"
          ? `exit ${section.exitCode}`
          : `${section.reason}${section.signal ? ` (${section.signal})` : ""}`,
      );
    if (section.durationMs !== undefined) parts.push(formatMs(section.durationMs));
    if (typeof section.peakRssBytes === "number") parts.push(`peak ${formatBytes(section.peakRssBytes)}`);
    return parts;
  }

  #rowStarts(): number[] {
    if (this.#startsVersion === this.version && this.#starts.length === this.sections.length)
      return this.#starts;
    const starts: number[] = [];
    let row = 0;
    for (const section of this.sections) {
      starts.push(row);
      row += sectionRows(section);
    }
    this.#starts = starts;
    this.#startsVersion = this.version;
    return starts;
  }

  #section(stepId: string, name: string | undefined, index: number, total: number): Section {
    let section = this.#byStep.get(stepId);
    if (section === undefined) {
      section = newSection(stepId, stepId, stepTitle({ stepId, name }), index, total);
      this.#byStep.set(stepId, section);
      this.sections.push(section);
      this.sections.sort((a, b) => a.index - b.index);
    } else {
      if (name !== undefined) section.title = name;
      if (index > 0) {
        section.index = index;
        section.total = total;
      }
    }
    return section;
  }

  #statusText(event: Extract<LogEvent, { type: "status" }>): string {
    switch (event.status) {
      case "queued":
        return "Queued: waiting for an agent whose labels match";
      case "assigned":
        return `Assigned to agent ${escapeHtml(event.agent ?? "?")}`;
      case "running":
        return "Running";
      default:
        return `Status: ${escapeHtml(event.status)}`;
    }
  }

  /** A line the controller adds (already HTML), in the setup section. */
  #systemLine(html: string, at: number): void {
    const setup = this.#setup;
    setup.open = false;
    setup.html.push(html);
    this.#heldLines++;
    this.#heldChars += html.length;
    setup.at.push(at);
    setup.stderr.push(0);
    setup.continued.push(0);
  }

  /** Adds a step's text: splits it into lines, converts each piece to HTML once. */
  #append(section: Section, text: string, stderr: boolean, at: number): void {
    let start = 0;
    while (start <= text.length) {
      const newline = text.indexOf("\n", start);
      const end = newline < 0 ? text.length : newline;
      if (end > start || newline >= 0)
        this.#appendPiece(section, text.slice(start, end), newline >= 0, stderr, at);
      if (newline < 0) break;
      start = newline + 1;
    }
  }

  #appendPiece(section: Section, piece: string, endsLine: boolean, stderr: boolean, at: number): void {
    if (!section.open) this.#newLine(section, stderr, at, 0);
    let text = piece;
    if (section.pendingCr) {
      section.pendingCr = false;
      // A `\r` then more text on the same line: the terminal would have rewritten the line.
      if (!(text === "" && endsLine)) this.#rewriteLine(section);
    }
    if (text.endsWith("\r")) {
      text = text.slice(0, -1);
      if (!endsLine) section.pendingCr = true;
    }
    const cr = text.lastIndexOf("\r");
    if (cr >= 0) {
      section.ansi.ansi_to_html(text.slice(0, cr)); // keeps the colour state; the text is overwritten
      this.#rewriteLine(section);
      text = text.slice(cr + 1);
    }
    while (section.openChars + text.length > MAX_LINE_CHARS) {
      const room = MAX_LINE_CHARS - section.openChars;
      this.#addHtml(section, text.slice(0, room));
      text = text.slice(room);
      this.#newLine(section, stderr, at, 1);
    }
    this.#addHtml(section, text);
    if (endsLine) section.open = false;
  }

  #addHtml(section: Section, text: string): void {
    if (text === "") return;
    const last = section.html.length - 1;
    const html = section.ansi.ansi_to_html(text);
    section.html[last] += html;
    this.#heldChars += html.length;
    section.openChars += text.length;
  }

  #rewriteLine(section: Section): void {
    this.#heldChars -= section.html[section.html.length - 1]!.length;
    section.html[section.html.length - 1] = "";
    section.openChars = 0;
  }

  #newLine(section: Section, stderr: boolean, at: number, continued: number): void {
    section.html.push("");
    this.#heldLines++;
    section.at.push(at);
    section.stderr.push(stderr ? 1 : 0);
    section.continued.push(continued);
    section.open = true;
    section.openChars = 0;
  }

  /**
   * Past the budget, drops the oldest lines (the earliest steps' first) down to three quarters of
   * it, so that dropping, which moves the arrays, happens once per quarter of the budget. The
   * setup section's few lines and a line still being written stay.
   */
  #keepWithinBudget(): void {
    const { maxLines, maxChars } = this.#budget;
    if (this.#heldLines <= maxLines && this.#heldChars <= maxChars) return;
    const lineTarget = Math.floor(maxLines * 0.75);
    const charTarget = Math.floor(maxChars * 0.75);
    for (const section of this.sections) {
      if (this.#heldLines <= lineTarget && this.#heldChars <= charTarget) break;
      if (section === this.#setup) continue;
      const droppable = section.html.length - (section.open ? 1 : 0);
      let count = 0;
      while (count < droppable && (this.#heldLines > lineTarget || this.#heldChars > charTarget)) {
        this.#heldChars -= section.html[count]!.length;
        this.#heldLines--;
        count++;
      }
      if (count === 0) continue;
      section.html.splice(0, count);
      section.at.splice(0, count);
      section.stderr.splice(0, count);
      section.continued.splice(0, count);
      section.dropped += count;
    }
  }
}

/** A section's rows: its header, and when open, the dropped-lines note and its lines. */
function sectionRows(section: Section): number {
  if (section.collapsed) return 1;
  return 1 + (section.dropped > 0 ? 1 : 0) + section.html.length;
}

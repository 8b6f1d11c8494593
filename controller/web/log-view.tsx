/**
 * The job log, virtualised: every row (a section header or a line) has the same height, so the
 * rows on screen are two divisions away from the scroll position, and only they are in the DOM.
 * A list taller than browsers can scroll (about 16 million px) is scaled: the scrollbar covers
 * the whole log, a pixel of it standing for more than a pixel of log.
 *
 * (A general virtual-list library keeps a measurement object per row and recomputes them when a
 * step is collapsed: 700k objects for a 50 MB log. Fixed-height rows need neither.)
 */
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { formatClock, formatDateTime } from "./format.ts";
import { LogModel, type LogRow, type Section } from "./log-model.ts";

export const ROW_PX = 20;
/** Tallest scroll area used; beyond it the log is scaled onto it. */
const MAX_SCROLL_PX = 8_000_000;
const OVERSCAN_ROWS = 10;

export interface LogViewProps {
  model: LogModel;
  /** The model's version when last rendered: a new value re-renders. */
  version: number;
  showTimes: boolean;
  follow: boolean;
  onFollowChange: (follow: boolean) => void;
  onToggle: (section: Section) => void;
  /** The job's raw log, linked where lines were dropped. */
  rawLogHref: string;
}

const STATUS_ICON: Record<string, string> = {
  info: "•",
  pending: "○",
  running: "◐",
  succeeded: "✓",
  failed: "✗",
  skipped: "⊘",
};

export function LogView(props: LogViewProps) {
  const { model, showTimes, follow } = props;
  const scroller = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [viewPx, setViewPx] = useState(600);

  useEffect(() => {
    const element = scroller.current;
    if (!element) return;
    const observer = new ResizeObserver(() => setViewPx(element.clientHeight));
    observer.observe(element);
    setViewPx(element.clientHeight);
    return () => observer.disconnect();
  }, []);

  const rows = model.rowCount;
  const totalPx = rows * ROW_PX;
  const scrollPx = Math.max(Math.min(totalPx, MAX_SCROLL_PX), viewPx);
  // Maps the scroll position onto the log: 1 unless the log is scaled.
  const scale = totalPx > scrollPx && scrollPx > viewPx ? (totalPx - viewPx) / (scrollPx - viewPx) : 1;

  useLayoutEffect(() => {
    const element = scroller.current;
    if (follow && element) {
      element.scrollTop = element.scrollHeight;
      setScrollTop(element.scrollTop);
    }
  });

  const onScroll = () => {
    const element = scroller.current;
    if (!element) return;
    setScrollTop(element.scrollTop);
    const atEnd = element.scrollTop + element.clientHeight >= element.scrollHeight - ROW_PX;
    if (atEnd !== follow) props.onFollowChange(atEnd);
  };

  const logTop = Math.min(scrollTop, Math.max(0, scrollPx - viewPx)) * scale;
  const first = Math.max(0, Math.floor(logTop / ROW_PX) - OVERSCAN_ROWS);
  const last = Math.min(rows, Math.ceil((logTop + viewPx) / ROW_PX) + OVERSCAN_ROWS);
  const rendered = [];
  for (let index = first; index < last; index++) {
    const row = model.row(index);
    if (row === undefined) continue;
    rendered.push(
      <Row
        key={rowKey(row)}
        row={row}
        top={index * ROW_PX - logTop}
        showTimes={showTimes}
        onToggle={props.onToggle}
        rawLogHref={props.rawLogHref}
      />,
    );
  }

  return (
    <div class="log" ref={scroller} onScroll={onScroll} data-rows={rows}>
      <div class="log-window" style={{ height: `${viewPx}px` }}>
        {rendered}
      </div>
      <div style={{ height: `${scrollPx - viewPx}px` }} />
    </div>
  );
}

function rowKey(row: LogRow): string {
  if (row.kind === "line") return `l:${row.section.key}:${row.section.dropped + row.line}`;
  return `${row.kind === "header" ? "h" : "d"}:${row.section.key}`;
}

function Row(props: {
  row: LogRow;
  top: number;
  showTimes: boolean;
  onToggle: (s: Section) => void;
  rawLogHref: string;
}) {
  const { row, top, showTimes } = props;
  const style = { transform: `translateY(${top}px)` };
  const section = row.section;
  if (row.kind === "header") {
    const summary = LogModel.summary(section);
    return (
      <button
        type="button"
        class={`row header status-${section.status}${section.collapsed ? " collapsed" : ""}`}
        style={style}
        aria-expanded={!section.collapsed}
        data-step={section.stepId ?? ""}
        onClick={() => props.onToggle(section)}
      >
        <span class="caret">{section.collapsed ? "▸" : "▾"}</span>
        <span class="icon" title={section.status}>
          {STATUS_ICON[section.status] ?? "?"}
        </span>
        <span class="title">
          {section.index > 0 ? <span class="step-index">{`${section.index}/${section.total}`}</span> : null}
          {section.title}
        </span>
        <span class="lines">{lineCountText(section.dropped + section.html.length)}</span>
        <span class="summary">{summary.join(" · ")}</span>
      </button>
    );
  }
  if (row.kind === "dropped") {
    return (
      <div class="row dropped" style={style}>
        {`${section.dropped} earlier line${section.dropped === 1 ? "" : "s"} of this step are not kept in the page: `}
        <a href={props.rawLogHref} target="_blank" rel="noopener">
          the raw log
        </a>{" "}
        has them all.
      </div>
    );
  }
  const at = section.at[row.line]!;
  const continued = section.continued[row.line] === 1;
  return (
    <div class={`row line${section.stderr[row.line] === 1 ? " stderr" : ""}`} style={style}>
      <span class="ln">{continued ? "↳" : section.dropped + row.line + 1}</span>
      {showTimes ? (
        <time class="ts" title={formatDateTime(at)}>
          {formatClock(at)}
        </time>
      ) : null}
      {/* ansi_up escapes the text; the spans it adds carry only colour classes and styles. */}
      <span class="text" dangerouslySetInnerHTML={{ __html: section.html[row.line]! }} />
    </div>
  );
}

function lineCountText(lines: number): string {
  return lines === 0 ? "" : `${lines} line${lines === 1 ? "" : "s"}`;
}

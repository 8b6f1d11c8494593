/** A job's timeline as a picture: one bar per phase (queue, launch, start, each step) on one time axis. */
import { formatMs } from "../describe.ts";
import { formatClock } from "./format.ts";
import { firstOutputMs, type JobView, jobPhases, type Phase } from "./phases.ts";

const LABEL_PX = 190;
const WIDTH_PX = 900;
const BAR_PX = 16;
const GAP_PX = 6;
const AXIS_PX = 22;

/** Round tick spacing for a span: 1, 2 or 5 times a power of ten, in ms, giving at most `maxTicks` ticks. */
function tickStep(spanMs: number, maxTicks: number): number {
  const raw = spanMs / maxTicks;
  const power = 10 ** Math.floor(Math.log10(Math.max(raw, 1)));
  for (const factor of [1, 2, 5, 10]) if (power * factor >= raw) return power * factor;
  return power * 10;
}

export function Timeline(props: { record: JobView; now: number }) {
  const phases = jobPhases(props.record, props.now);
  if (phases.length === 0) return null;
  const firstOutput = firstOutputMs(props.record);
  const start = phases[0]!.from;
  const end = Math.max(...phases.map((p) => p.to), start + 1);
  const span = end - start;
  const plotPx = WIDTH_PX - LABEL_PX - 10;
  const x = (ms: number) => LABEL_PX + ((ms - start) / span) * plotPx;
  const height = AXIS_PX + phases.length * (BAR_PX + GAP_PX);
  const step = tickStep(span, 8);
  const ticks: number[] = [];
  for (let t = 0; t <= span; t += step) ticks.push(t);
  return (
    <figure class="timeline">
      <svg
        viewBox={`0 0 ${WIDTH_PX} ${height}`}
        width="100%"
        role="img"
        aria-label={`Timeline of job ${props.record.id}`}
      >
        {ticks.map((t) => (
          <g key={t} class="tick">
            <line x1={x(start + t)} x2={x(start + t)} y1={AXIS_PX - 4} y2={height} />
            <text x={x(start + t)} y={AXIS_PX - 8} text-anchor="middle">
              {t === 0 ? formatClock(start).slice(0, 8) : `+${formatMs(t)}`}
            </text>
          </g>
        ))}
        {phases.map((phase, i) => (
          <PhaseBar key={`${phase.kind}-${i}`} phase={phase} y={AXIS_PX + i * (BAR_PX + GAP_PX)} x={x} />
        ))}
        {firstOutput !== undefined && firstOutput <= end ? (
          <g class="first-output">
            <title>{`first output after ${formatMs(firstOutput - start)}`}</title>
            <line x1={x(firstOutput)} x2={x(firstOutput)} y1={AXIS_PX - 4} y2={height} />
            <path d={`M ${x(firstOutput) - 4} ${AXIS_PX - 6} h 8 l -4 6 z`} />
          </g>
        ) : null}
      </svg>
    </figure>
  );
}

function PhaseBar(props: { phase: Phase; y: number; x: (ms: number) => number }) {
  const { phase, y, x } = props;
  const left = x(phase.from);
  const width = Math.max(2, x(phase.to) - left);
  const duration = formatMs(phase.to - phase.from);
  const className = `bar ${phase.kind}${phase.status ? ` status-${phase.status}` : ""}${phase.open ? " open" : ""}`;
  return (
    <g class={className}>
      <title>{`${phase.label}: ${duration}${phase.open ? " so far" : ""}`}</title>
      <text class="label" x={LABEL_PX - 8} y={y + BAR_PX - 4} text-anchor="end">
        {phase.label.length > 26 ? `${phase.label.slice(0, 25)}…` : phase.label}
      </text>
      <rect x={left} y={y} width={width} height={BAR_PX} rx={3} />
      {left + width + 64 <= WIDTH_PX ? (
        <text class="duration" x={left + width + 4} y={y + BAR_PX - 4}>
          {duration}
        </text>
      ) : (
        <text class="duration inside" x={left + width - 4} y={y + BAR_PX - 4} text-anchor="end">
          {duration}
        </text>
      )}
    </g>
  );
}

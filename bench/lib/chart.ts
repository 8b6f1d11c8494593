import type { Figure } from "./figures.ts";

const WIDTH = 1180;
const LABEL_WIDTH = 440;
const BAR_WIDTH = 380;
const ROW_HEIGHT = 34;
const TOP = 58;
const MET = "#2e7d32";
const MISSED = "#c62828";

function escapeXml(text: string): string {
  return text.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!);
}

/**
 * Every measured figure that has a target, as an SVG bar chart: one row per figure, its bar the
 * number the target judges (mostly a ratio against the same run's baseline), a vertical line at
 * the target's limit, green when met and red when missed. Each row has its own scale, from 0 to
 * 1.25 times the larger of the bar and the limit, so rows of different units sit together.
 * Returns the SVG text; `caption` goes under the title (the run's mode, revision and date).
 */
export function renderTargetChart(figures: readonly Figure[], caption: string): string {
  const rows = figures.filter(
    (f): f is Figure & { target: NonNullable<Figure["target"]> } =>
      f.target !== null && f.target.actual !== null,
  );
  const height = TOP + rows.length * ROW_HEIGHT + 30;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>Bench targets: ${rows.filter((f) => f.target.met).length} of ${rows.length} met (${escapeXml(caption)})</title>`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="22" font-size="15" font-weight="bold">Bench targets: each figure against its target (line)</text>`,
    `<text x="10" y="42" fill="#555555">${escapeXml(caption)}</text>`,
  ];
  rows.forEach((figure, i) => {
    const { actual, limit, met, text, shown } = figure.target;
    const value = actual as number;
    const scale = BAR_WIDTH / (Math.max(value, limit) * 1.25);
    const y = TOP + i * ROW_HEIGHT;
    const colour = met ? MET : MISSED;
    const limitX = LABEL_WIDTH + limit * scale;
    out.push(
      `<text x="${LABEL_WIDTH - 8}" y="${y + 17}" text-anchor="end">${escapeXml(figure.title)}</text>`,
      `<rect x="${LABEL_WIDTH}" y="${y + 5}" width="${BAR_WIDTH}" height="18" fill="#f2f2f2"/>`,
      `<rect x="${LABEL_WIDTH}" y="${y + 5}" width="${(value * scale).toFixed(1)}" height="18" fill="${colour}"/>`,
      `<line x1="${limitX.toFixed(1)}" y1="${y + 1}" x2="${limitX.toFixed(1)}" y2="${y + 27}" stroke="#000000" stroke-width="2"/>`,
      `<text x="${LABEL_WIDTH + BAR_WIDTH + 8}" y="${y + 17}">${escapeXml(`${shown} (${text}): ${met ? "met" : "MISSED"}`)}</text>`,
    );
  });
  out.push(
    `<text x="10" y="${height - 10}" fill="#555555">Bars: green met, red missed; each row has its own scale from 0. Written by bench/run.ts.</text>`,
    "</svg>",
    "",
  );
  return out.join("\n");
}

/** One line per figure with a target: the number judged, the target, met or MISSED. */
export function renderTargets(figures: readonly Figure[]): string {
  return figures
    .filter((f) => f.target !== null)
    .map((f) => {
      const target = f.target!;
      const actual = target.shown ?? "not measured";
      return `- ${f.title}: ${actual}, target ${target.text}: ${target.met ? "met" : "MISSED"}`;
    })
    .join("\n");
}

// The benchmark harness: `npm run bench` (builds first), or
// `node --import tsx bench/run.ts [--quick | --smoke] [--json PATH] [--chart PATH] [--only NAME...]` (NAME:
// startup, steps, throughput, latency, memory, disk, bundles, shutdown, transfer, images, jenkins, web view,
// packaging, controller scale). Prints the table and every target as met or MISSED, writes the results
// (machine, date, every figure with its samples summary) to bench/results.json or PATH, and the chart
// of every target (SVG) beside it (bench/results.svg) or to the --chart PATH.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { renderTargetChart, renderTargets } from "./lib/chart.ts";
import type { BenchContext, BenchScale, Measurement } from "./lib/context.ts";
import { type Figure, failed, renderNotes, renderTable, verdict } from "./lib/figures.ts";
import {
  busyWarning,
  describeMachine,
  loadAverage1m,
  type MachineInfo,
  machineInfo,
  type Revision,
  revision,
} from "./lib/machine.ts";
import { ROOT, removeTempDirs, tempDir } from "./lib/peers.ts";
import { killStartedChildren } from "./lib/proc.ts";
import { bundles } from "./measurements/bundles.ts";
import { controllerScale } from "./measurements/controller-scale.ts";
import { disk } from "./measurements/disk.ts";
import { images } from "./measurements/images.ts";
import { jenkins } from "./measurements/jenkins.ts";
import { latency } from "./measurements/latency.ts";
import { memory } from "./measurements/memory.ts";
import { packaging } from "./measurements/packaging.ts";
import { shutdown } from "./measurements/shutdown.ts";
import { startup } from "./measurements/startup.ts";
import { steps } from "./measurements/steps.ts";
import { throughput } from "./measurements/throughput.ts";
import { transfer } from "./measurements/transfer.ts";
import { webView } from "./measurements/web-view.ts";

/** Version of the results file's shape. */
export const RESULTS_SCHEMA = 1;

export interface Results {
  schema: typeof RESULTS_SCHEMA;
  date: string;
  mode: BenchScale;
  durationMs: number;
  revision: Revision;
  machine: MachineInfo;
  figures: Figure[];
}

const MEASUREMENTS: readonly Measurement[] = [
  startup,
  steps,
  throughput,
  latency,
  memory,
  disk,
  bundles,
  shutdown,
  transfer,
  images,
  jenkins,
  webView,
  packaging,
  controllerScale,
];
const REQUIRED_BUNDLES = ["dist/container-entrypoint.mjs", "dist/controller.mjs", "dist/lambda/handler.js"];

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      smoke: { type: "boolean", default: false },
      json: { type: "string" },
      chart: { type: "string" },
      only: { type: "string", multiple: true },
    },
    strict: true,
  });
  const missing = REQUIRED_BUNDLES.filter((path) => !existsSync(join(ROOT, path)));
  if (missing.length > 0) {
    process.stderr.write(
      `bench: missing ${missing.join(", ")}; run \`npm run build\` (or \`npm run bench\`)\n`,
    );
    return 2;
  }
  if (values.quick && values.smoke) {
    process.stderr.write("bench: --quick and --smoke exclude each other\n");
    return 2;
  }
  const scale: BenchScale = values.smoke ? "smoke" : values.quick ? "quick" : "full";
  const output = resolve(values.json ?? join(ROOT, "bench/results.json"));
  const chart = resolve(values.chart ?? output.replace(/(\.json)?$/, ".svg"));
  const machine = machineInfo();
  // Taken before measuring: what was built and measured, whatever changes while the run goes on.
  const measuredRevision = revision(ROOT);
  const tmp = tempDir("bench-");
  const ctx: BenchContext = {
    scale,
    tmp: tmp.path,
    progress: (message) => process.stderr.write(`bench: ${message}\n`),
  };
  process.stderr.write(`bench: ${scale} run on ${describeMachine(machine)}\n`);
  const busy = busyWarning(machine);
  if (busy !== null) ctx.progress(`warning: ${busy}`);

  const started = performance.now();
  const figures: Figure[] = [];
  try {
    const only = values.only;
    for (const measurement of MEASUREMENTS.filter((m) => only === undefined || only.includes(m.name))) {
      const measurementStarted = performance.now();
      try {
        figures.push(...(await measurement.run(ctx)));
        ctx.progress(
          `${measurement.name}: done in ${((performance.now() - measurementStarted) / 1000).toFixed(1)} s`,
        );
      } catch (error) {
        ctx.progress(`${measurement.name} failed: ${(error as Error).stack ?? String(error)}`);
        figures.push(...measurement.rows.map((row) => failed(row.id, row.title, row.unit, error)));
      }
    }
  } finally {
    killStartedChildren();
    removeTempDirs();
  }

  machine.loadAverage1mEnd = loadAverage1m();
  const results: Results = {
    schema: RESULTS_SCHEMA,
    date: new Date().toISOString(),
    mode: scale,
    durationMs: Math.round(performance.now() - started),
    revision: measuredRevision,
    machine,
    figures,
  };
  mkdirSync(dirname(output), { recursive: true });
  writeFileSync(output, `${JSON.stringify(results, null, 2)}\n`);
  mkdirSync(dirname(chart), { recursive: true });
  writeFileSync(
    chart,
    renderTargetChart(
      figures,
      `${results.mode} run of ${describeRevision(results.revision)}, ${results.date.slice(0, 16).replace("T", " ")} UTC, ${describeMachine(machine)}; 1-minute load ${machine.loadAverage1m} at the start`,
    ),
  );

  const missed = figures.filter((f) => verdict(f) === "MISSED");
  const errors = figures.filter((f) => verdict(f) === "ERROR");
  process.stdout.write(
    [
      `Benchmarks (${results.mode}, ${(results.durationMs / 1000).toFixed(0)} s) of ${describeRevision(results.revision)} on ${describeMachine(machine)}`,
      "",
      renderTable(figures),
      "",
      renderNotes(figures),
      "",
      "Targets:",
      renderTargets(figures),
      "",
      `${missed.length} target(s) missed${missed.length > 0 ? `: ${missed.map((f) => f.title).join("; ")}` : ""}`,
      `${errors.length} measurement error(s)`,
      ...(busy !== null ? [`warning: ${busy}`] : []),
      `results: ${output}`,
      `chart: ${chart}`,
      "",
    ].join("\n"),
  );
  // Missed targets are results, not failures; a measurement that could not run is.
  return errors.length > 0 ? 1 : 0;
}

function describeRevision(r: Revision): string {
  if (r.commit === null) return "an unknown revision";
  return `${r.commit.slice(0, 12)}${r.dirty ? " with uncommitted changes" : ""}`;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    killStartedChildren();
    removeTempDirs();
    process.exit(signal === "SIGINT" ? 130 : 143);
  });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    killStartedChildren();
    removeTempDirs();
    process.stderr.write(`bench: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  },
);

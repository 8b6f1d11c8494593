import { readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { type BenchContext, byScale, type Measurement } from "../lib/context.ts";
import { type Figure, measured, notAvailable } from "../lib/figures.ts";
import { BenchController, launchAgent, ROOT } from "../lib/peers.ts";
import { NODE, stopProcess, timedRun } from "../lib/proc.ts";
import { summarize } from "../lib/stats.ts";
import { moduleGraph } from "./bundles.ts";

const EMPTY_NODE = "node -e ''";

const ROWS = {
  connected: { id: "start-to-connected", title: "start to connected (entrypoint)", unit: "ms" },
  connectedAuto: {
    id: "start-to-connected-auto",
    title: "start to connected, auto mode (entrypoint)",
    unit: "ms",
  },
  handler: { id: "handler-cold-import", title: "Lambda handler cold import", unit: "ms" },
  sdk: { id: "handler-cloudwatch-sdk", title: "Lambda handler + CloudWatch SDK import", unit: "ms" },
} as const;

/**
 * (1) Process start of the container entrypoint bundle until the controller has its hello,
 * against `node -e ''` from spawn to exit; (2) a fresh process importing the Lambda bundle,
 * against the same. Runs alternate between the two so that drift hits both alike.
 */
export const startup: Measurement = {
  name: "startup",
  rows: Object.values(ROWS),
  async run(ctx: BenchContext): Promise<Figure[]> {
    const runs = byScale(ctx, { full: 20, quick: 5, smoke: 1 });
    return [...(await startToConnected(ctx, runs)), await handlerImport(ctx, runs), await sdkLoad(ctx, runs)];
  },
};

/**
 * Start to connected as the reference controller's provisioners launch the agent (native mode),
 * and in auto mode as a Jenkins plugin launches it (one request asks the controller what it is
 * first), in turn with `node -e ''`.
 */
async function startToConnected(ctx: BenchContext, runs: number): Promise<Figure[]> {
  ctx.progress(`start to connected: ${runs} runs of each mode (+1 warm-up)`);
  const ctl = await BenchController.start();
  const native: number[] = [];
  const auto: number[] = [];
  const baseline: number[] = [];
  const launch = async (name: string, mode: "native" | "auto") => {
    const { run, readyAt } = await launchAgent(ctl, name, {
      workDir: join(ctx.tmp, "agent-work"),
      env: { AGENT_MODE: mode },
    });
    await stopProcess(run);
    return readyAt - run.startedAt;
  };
  try {
    for (let i = 0; i <= runs; i++) {
      const empty = await timedRun(NODE, ["-e", ""]);
      const nativeMs = await launch(`bench-start-${i}`, "native");
      const autoMs = await launch(`bench-start-auto-${i}`, "auto");
      if (i === 0) continue; // warm-up: file cache, first-run effects
      baseline.push(empty.ms);
      native.push(nativeMs);
      auto.push(autoMs);
    }
  } finally {
    await ctl.stop();
  }
  const until = "until the in-process controller logs `agent ready` (its logger hook)";
  return [
    measured({
      ...ROWS.connected,
      samples: native,
      baseline: { title: `${EMPTY_NODE}, spawn to exit`, samples: baseline },
      target: { text: "ratio <= 2.0", actual: (f) => f.ratio, op: "<=", limit: 2 },
      notes: [
        `spawn of \`node dist/container-entrypoint.mjs\` as the reference controller launches it (JENKINS_* env, AGENT_MODE=native) ${until}`,
      ],
    }),
    measured({
      ...ROWS.connectedAuto,
      samples: auto,
      baseline: { title: `${EMPTY_NODE}, spawn to exit`, samples: baseline },
      notes: [
        `the same with AGENT_MODE=auto, as a Jenkins plugin launches it: first one request (\`GET <url>jnlpJars/agent.jar\`) asks the controller what it is`,
      ],
    }),
  ];
}

async function handlerImport(ctx: BenchContext, runs: number): Promise<Figure> {
  ctx.progress(`handler cold import: ${runs} runs (+1 warm-up)`);
  const handler = pathToFileURL(join(ROOT, "dist/lambda/handler.js")).href;
  const script = `const m = await import(${JSON.stringify(handler)}); if (typeof m.handler !== "function") process.exit(9);`;
  const imports: number[] = [];
  const baseline: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const empty = await timedRun(NODE, ["-e", ""]);
    const loaded = await timedRun(NODE, ["--input-type=module", "-e", script]);
    if (i === 0) continue;
    baseline.push(empty.ms);
    imports.push(loaded.ms);
  }
  return measured({
    ...ROWS.handler,
    samples: imports,
    baseline: { title: `${EMPTY_NODE}, spawn to exit`, samples: baseline },
    target: { text: "ratio <= 1.8", actual: (f) => f.ratio, op: "<=", limit: 1.8 },
    notes: ["`node --input-type=module -e \"await import('dist/lambda/handler.js')\"`, spawn to exit"],
  });
}

/**
 * The AWS SDK chunk of the Lambda bundle: the largest file the handler can load on demand that
 * holds the CloudWatch Logs client, or null while there is none.
 */
function sdkChunk(handler: string): string | null {
  const candidates = moduleGraph(handler)
    .all.filter((file) => file !== handler && readFileSync(file, "utf8").includes("PutLogEventsCommand"))
    .sort((a, b) => statSync(b).size - statSync(a).size);
  return candidates[0] ?? null;
}

/** A fresh process importing the handler and then the SDK chunk, against importing the handler alone. */
async function sdkLoad(ctx: BenchContext, runs: number): Promise<Figure> {
  const handler = join(ROOT, "dist/lambda/handler.js");
  const chunk = sdkChunk(handler);
  if (chunk === null) return notAvailable(ROWS.sdk.id, ROWS.sdk.title, ROWS.sdk.unit, "sink not built yet");
  ctx.progress(`CloudWatch SDK load: ${runs} runs (+1 warm-up)`);
  const importOf = (file: string) => `await import(${JSON.stringify(pathToFileURL(file).href)});`;
  const withSdk: number[] = [];
  const without: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const alone = await timedRun(NODE, ["--input-type=module", "-e", importOf(handler)]);
    const both = await timedRun(NODE, ["--input-type=module", "-e", importOf(handler) + importOf(chunk)]);
    if (i === 0) continue;
    without.push(alone.ms);
    withSdk.push(both.ms);
  }
  const cost = summarize(withSdk).median - summarize(without).median;
  return measured({
    ...ROWS.sdk,
    samples: withSdk,
    baseline: { title: "the handler imported alone", samples: without },
    notes: [
      `the handler, then its SDK chunk ${relative(ROOT, chunk)} (${statSync(chunk).size} bytes): the SDK costs ${cost.toFixed(1)} ms (difference of medians)`,
    ],
    details: { chunk: relative(ROOT, chunk), sdkCostMs: cost },
  });
}

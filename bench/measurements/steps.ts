import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createLogger, parseAgentConfig, runAgent } from "../../agent-core/index.ts";
import { type BenchContext, byScale, type Measurement } from "../lib/context.ts";
import { type Figure, measured } from "../lib/figures.ts";
import { BenchController } from "../lib/peers.ts";
import { minimalEnv, start, withTimeout } from "../lib/proc.ts";
import { summarize } from "../lib/stats.ts";

const ROW = { id: "per-step-overhead", title: "per-step overhead (`true`)", unit: "ms" } as const;

/**
 * (3) A job of N `true` steps (argv ["true"]) through the real controller and an in-process
 * agent (runAgent), against spawning `sh -c true` N times in a row from Node. A step's time is
 * the interval between consecutive `step-end` events at the controller: everything one step
 * costs, protocol included.
 */
export const steps: Measurement = {
  name: "steps",
  rows: [ROW],
  async run(ctx: BenchContext): Promise<Figure[]> {
    const count = byScale(ctx, { full: 1_000, quick: 100, smoke: 10 });
    ctx.progress(`per-step overhead: ${count} spawns of sh -c true`);
    const direct = await directSpawns(count);
    ctx.progress(`per-step overhead: a job of ${count} true steps`);
    const { perStep, totalMs } = await jobOfTrueSteps(ctx, count);
    const tenth = Math.max(1, Math.floor(count / 10));
    return [
      measured({
        ...ROW,
        samples: perStep,
        baseline: { title: "`sh -c true` spawned from Node, spawn to close", samples: direct },
        target: { text: "ratio <= 4", actual: (f) => f.ratio, op: "<=", limit: 4 },
        notes: [
          `${count} steps; a step = interval between consecutive step-end events at the controller`,
          "agent in-process (runAgent), controller in-process",
        ],
        details: {
          steps: count,
          jobTotalMs: totalMs,
          firstTenthMedianMs: summarize(perStep.slice(0, tenth)).median,
          lastTenthMedianMs: summarize(perStep.slice(-tenth)).median,
        },
      }),
    ];
  },
};

async function directSpawns(count: number): Promise<number[]> {
  const env = minimalEnv();
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const run = start("sh", ["-c", "true"], { env });
    const closed = await withTimeout(run.closed, 10_000, "sh -c true");
    if (closed.code !== 0) throw new Error(`sh -c true exited with ${closed.code ?? closed.signal}`);
    samples.push(closed.at - run.startedAt);
  }
  return samples;
}

async function jobOfTrueSteps(
  ctx: BenchContext,
  count: number,
): Promise<{ perStep: number[]; totalMs: number }> {
  const ctl = await BenchController.start();
  try {
    const name = "bench-steps";
    const ends: number[] = [];
    let firstStart: number | undefined;
    const watch = ctl.run(
      { steps: Array.from({ length: count }, () => ({ argv: ["true"] })) },
      (event, _data, at) => {
        if (event.type === "step-start" && firstStart === undefined) firstStart = at;
        if (event.type === "step-end") ends.push(at);
      },
    );
    const config = parseAgentConfig({
      url: ctl.url,
      secret: ctl.controller.secretFor(name),
      name,
      workDir: join(ctx.tmp, "agent-work"),
      baseEnv: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: tmpdir() },
    });
    // The agent logs as the container entrypoint does (JSON lines), to a sink that drops them.
    const logger = createLogger({ level: "info", write: () => {}, fields: { agent: name } });
    const started = performance.now();
    const outcome = await withTimeout(runAgent(config, { logger }), 120_000, `a job of ${count} steps`);
    const record = await watch.done;
    const totalMs = performance.now() - started;
    if (outcome.exitCode !== 0 || record.status !== "succeeded") {
      throw new Error(
        `the job of true steps ended ${record.status} (agent exit ${outcome.exitCode}): ${outcome.summary}`,
      );
    }
    if (ends.length !== count || firstStart === undefined)
      throw new Error(`expected ${count} step-end events, got ${ends.length}`);
    const perStep = ends.map((at, i) => at - (i === 0 ? firstStart! : ends[i - 1]!));
    return { perStep, totalMs };
  } finally {
    await ctl.stop();
  }
}

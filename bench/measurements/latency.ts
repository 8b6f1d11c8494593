import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { type BenchContext, byScale, type Measurement } from "../lib/context.ts";
import { type Figure, measured } from "../lib/figures.ts";
import { BenchController, FIXTURES, launchAgent } from "../lib/peers.ts";
import { NODE, start, stopProcess, withTimeout } from "../lib/proc.ts";
import { percentile, round3 } from "../lib/stats.ts";

const PACED = join(FIXTURES, "paced-lines.mjs");
const LINE_BYTES = 120;
const RATE = 1_000_000;

const ROWS = {
  p50: { id: "log-latency-p50", title: "log latency p50 at 1 MB/s", unit: "ms" },
  p99: { id: "log-latency-p99", title: "log latency p99 at 1 MB/s", unit: "ms" },
} as const;

/**
 * (5) Latency from a child's write to the controller's receipt at 1 MB/s, through the agent
 * (the entrypoint bundle, its own process), against the same child read through a pipe by this
 * process. Each line carries the wall-clock time of its write.
 */
export const latency: Measurement = {
  name: "latency",
  rows: Object.values(ROWS),
  async run(ctx: BenchContext): Promise<Figure[]> {
    const ctl = await BenchController.start();
    try {
      return await measureLatency(ctx, ctl);
    } finally {
      await ctl.stop();
    }
  },
};

/** Splits received bytes into lines and turns each line's leading time stamp into a latency. */
class StampedLines {
  readonly latencies: number[] = [];
  #carry = "";

  push(data: Buffer, receivedAt: number): void {
    const text = this.#carry + data.toString("latin1");
    const lines = text.split("\n");
    this.#carry = lines.pop() ?? "";
    for (const line of lines) {
      const stamp = Number.parseFloat(line);
      if (Number.isFinite(stamp)) this.latencies.push(receivedAt - stamp);
    }
  }
}

async function measureLatency(ctx: BenchContext, ctl: BenchController): Promise<Figure[]> {
  const runs = byScale(ctx, { full: 3, quick: 1, smoke: 1 });
  const durationMs = byScale(ctx, { full: 5_000, quick: 2_000, smoke: 500 });
  const args = [PACED, String(RATE), String(durationMs), String(LINE_BYTES), "stamp"];
  const agent: number[][] = [];
  const piped: number[][] = [];
  for (let i = 0; i < runs; i++) {
    ctx.progress(`log latency at 1 MB/s: run ${i + 1}/${runs}, ${durationMs / 1000} s`);
    piped.push(await latencyPiped(args, durationMs));
    agent.push(await latencyThroughAgent(ctx, ctl, args, durationMs, i));
  }
  const sorted = (samples: number[]) => [...samples].sort((x, y) => x - y);
  const at = (p: number) => (samples: number[]) => percentile(sorted(samples), p);
  // Every line of every run together (too many samples to spread as arguments).
  const pooled = (all: number[][]) => {
    const lines = sorted(all.flat());
    return {
      p50: round3(percentile(lines, 50)),
      p99: round3(percentile(lines, 99)),
      min: round3(lines[0]!),
      max: round3(lines[lines.length - 1]!),
    };
  };
  const details = {
    runs,
    durationMs,
    lines: agent.map((a) => a.length),
    pooledAgent: pooled(agent),
    pooledPipe: pooled(piped),
  };
  const notes = [
    `${runs} run(s) of ${durationMs / 1000} s, ${LINE_BYTES}-byte lines stamped at write (performance.timeOrigin + now)`,
    "receipt: the in-process controller's follow() listener; one sample per run (that run's percentile)",
  ];
  return [
    measured({
      ...ROWS.p50,
      samples: agent.map(at(50)),
      baseline: { title: "the same child read through a pipe by this process", samples: piped.map(at(50)) },
      target: { text: "p50 < 20 ms", actual: (f) => f.value?.median ?? null, op: "<", limit: 20 },
      notes,
      details,
    }),
    measured({
      ...ROWS.p99,
      samples: agent.map(at(99)),
      baseline: { title: "the same child read through a pipe by this process", samples: piped.map(at(99)) },
      target: { text: "p99 < 100 ms", actual: (f) => f.value?.median ?? null, op: "<", limit: 100 },
      notes,
      details,
    }),
  ];
}

async function latencyPiped(args: string[], durationMs: number): Promise<number[]> {
  const lines = new StampedLines();
  const run = start(NODE, args);
  run.child.stdout!.on("data", (chunk: Buffer) =>
    lines.push(chunk, performance.timeOrigin + performance.now()),
  );
  const exit = await withTimeout(run.closed, durationMs + 30_000, "the paced writer");
  if (exit.code !== 0) throw new Error(`the paced writer exited with ${exit.code}: ${run.tail()}`);
  if (lines.latencies.length === 0) throw new Error("the paced writer wrote no stamped line");
  return lines.latencies;
}

async function latencyThroughAgent(
  ctx: BenchContext,
  ctl: BenchController,
  args: string[],
  durationMs: number,
  index: number,
): Promise<number[]> {
  const { run } = await launchAgent(ctl, `bench-latency-${index}`, { workDir: join(ctx.tmp, "agent-work") });
  try {
    const lines = new StampedLines();
    const watch = ctl.run({ steps: [{ argv: [NODE, ...args] }] }, (event, data, at) => {
      if (event.type === "output" && data !== undefined) lines.push(data, performance.timeOrigin + at);
    });
    const record = await withTimeout(watch.done, durationMs + 30_000, `job ${watch.id}`);
    if (record.status !== "succeeded")
      throw new Error(`job ${watch.id} ended ${record.status}: ${record.message}`);
    if (lines.latencies.length === 0) throw new Error(`job ${watch.id} delivered no stamped line`);
    return lines.latencies;
  } finally {
    await stopProcess(run);
  }
}

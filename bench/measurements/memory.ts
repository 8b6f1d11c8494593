import { join } from "node:path";
import { type BenchContext, byScale, type Measurement } from "../lib/context.ts";
import { type Figure, measured } from "../lib/figures.ts";
import { BenchController, ENTRYPOINT, FIXTURES, launchAgent, startStallingController } from "../lib/peers.ts";
import {
  minimalEnv,
  NODE,
  procRssBytes,
  sampleEvery,
  sleep,
  start,
  stopProcess,
  withTimeout,
} from "../lib/proc.ts";
import { summarize } from "../lib/stats.ts";

const PACED = join(FIXTURES, "paced-lines.mjs");
const MB = 1e6;
const FLOOD_RATE = 5_000_000;
const LINE_BYTES = 120;
const SAMPLE_MS = 100;
const IDLE_LIMIT_MB = 70;
const STALL_HEADROOM_MB = 64;

const ROWS = {
  idle: { id: "memory-idle", title: "agent RSS, idle (connected)", unit: "MB" },
  flood: { id: "memory-flood", title: "agent RSS, 5 MB/s flood", unit: "MB" },
  stalled: { id: "memory-stalled", title: "agent RSS, flood + stalled controller", unit: "MB" },
} as const;

/**
 * (6) Resident memory of the agent process (the entrypoint bundle), sampled from /proc: idle
 * once connected; while a step floods 5 MB/s to the real controller; and while it floods a fake
 * controller that stopped reading its socket (and never acknowledges).
 */
export const memory: Measurement = {
  name: "memory",
  rows: Object.values(ROWS),
  async run(ctx: BenchContext): Promise<Figure[]> {
    const idleMs = byScale(ctx, { full: 3_000, quick: 1_000, smoke: 300 });
    const floodMs = byScale(ctx, { full: 5_000, quick: 2_000, smoke: 500 });
    const stallMs = byScale(ctx, { full: 60_000, quick: 10_000, smoke: 1_000 });

    ctx.progress("memory: a bare Node process, idle");
    const bare = await bareNodeRss(idleMs);
    ctx.progress(`memory: agent idle ${idleMs / 1000} s, then a ${floodMs / 1000} s flood at 5 MB/s`);
    const { idle, flood } = await idleThenFlood(ctx, idleMs, floodMs);
    ctx.progress(`memory: flood with the controller stalled for ${stallMs / 1000} s`);
    const stalled = await floodWhileStalled(ctx, stallMs);

    const idleMedianMb = summarize(idle).median;
    const stallLimitMb = idleMedianMb + STALL_HEADROOM_MB;
    const agentIdle = { title: "the same agent, idle", samples: idle };
    return [
      measured({
        ...ROWS.idle,
        samples: idle,
        baseline: { title: '`node -e "setInterval(() => {}, 1000)"`, idle', samples: bare },
        target: {
          text: `median <= ${IDLE_LIMIT_MB} MB`,
          actual: (f) => f.value?.median ?? null,
          op: "<=",
          limit: IDLE_LIMIT_MB,
        },
        notes: [`VmRSS every ${SAMPLE_MS} ms for ${idleMs / 1000} s after its hello`],
      }),
      measured({
        ...ROWS.flood,
        samples: flood,
        baseline: agentIdle,
        notes: [
          `VmRSS every ${SAMPLE_MS} ms during the step (${floodMs / 1000} s of ${LINE_BYTES}-byte lines)`,
        ],
      }),
      measured({
        ...ROWS.stalled,
        samples: stalled.samples,
        baseline: agentIdle,
        target: {
          text: `max <= idle + ${STALL_HEADROOM_MB} MB (${stallLimitMb.toFixed(1)} MB)`,
          actual: (f) => f.value?.max ?? null,
          op: "<=",
          limit: stallLimitMb,
        },
        notes: [
          `${stallMs / 1000} s stall (the fake controller pauses its socket and never acknowledges); max ${summarize(stalled.samples).max.toFixed(1)} MB`,
          `AGENT_HEARTBEAT_TIMEOUT_MS and AGENT_ACK_TIMEOUT_MS raised to ${stallMs / 1000 + 30} s: by default a controller silent for 30 s ends the session`,
          stalled.connectedAtEnd
            ? "the agent was still connected at the end of the stall"
            : `the agent disconnected before the end of the stall: ${stalled.lastWords}`,
        ],
        details: { stallMs, connectedAtEnd: stalled.connectedAtEnd },
      }),
    ];
  },
};

function rssMb(pid: number): () => number | null {
  return () => {
    const bytes = procRssBytes(pid);
    return bytes === null ? null : bytes / MB;
  };
}

async function bareNodeRss(ms: number): Promise<number[]> {
  const run = start(NODE, ["-e", "setInterval(() => {}, 1000)"]);
  try {
    await sleep(500);
    const sampler = sampleEvery(rssMb(run.pid), SAMPLE_MS);
    await sleep(ms);
    return sampler.stop();
  } finally {
    await stopProcess(run);
  }
}

async function idleThenFlood(ctx: BenchContext, idleMs: number, floodMs: number) {
  const ctl = await BenchController.start();
  const { run } = await launchAgent(ctl, "bench-memory", { workDir: join(ctx.tmp, "agent-work") }).catch(
    async (error: unknown) => {
      await ctl.stop();
      throw error;
    },
  );
  let floodSampler: { stop: () => number[] } | undefined;
  try {
    await sleep(500);
    const idleSampler = sampleEvery(rssMb(run.pid), SAMPLE_MS);
    await sleep(idleMs);
    const idle = idleSampler.stop();
    let flood: number[] = [];
    const watch = ctl.run(
      { steps: [{ argv: [NODE, PACED, String(FLOOD_RATE), String(floodMs), String(LINE_BYTES)] }] },
      (event) => {
        if (event.type === "step-start") floodSampler = sampleEvery(rssMb(run.pid), SAMPLE_MS);
        if (event.type === "step-end" && floodSampler) flood = floodSampler.stop();
      },
    );
    const record = await withTimeout(watch.done, floodMs + 30_000, `job ${watch.id}`);
    if (record.status !== "succeeded")
      throw new Error(`job ${watch.id} ended ${record.status}: ${record.message}`);
    if (idle.length === 0 || flood.length === 0) throw new Error("no memory samples of the agent");
    return { idle, flood };
  } finally {
    floodSampler?.stop();
    await stopProcess(run);
    await ctl.stop();
  }
}

async function floodWhileStalled(ctx: BenchContext, stallMs: number) {
  const job = {
    id: "bench-stall",
    steps: [
      {
        id: "flood",
        // Bounded: the writer stops by itself shortly after the stall.
        argv: [NODE, PACED, String(FLOOD_RATE), String(stallMs + 5_000), String(LINE_BYTES)],
      },
    ],
  };
  const fake = await startStallingController(job);
  const run = start(NODE, [ENTRYPOINT], {
    env: minimalEnv({
      JENKINS_URL: fake.url,
      JENKINS_SECRET: "any-secret",
      JENKINS_AGENT_NAME: "bench-stalled",
      JENKINS_AGENT_WORKDIR: join(ctx.tmp, "agent-work"),
      AGENT_RUNTIME: "local",
      AGENT_HEARTBEAT_TIMEOUT_MS: String(stallMs + 30_000),
      AGENT_ACK_TIMEOUT_MS: String(stallMs + 30_000),
    }),
  });
  try {
    await withTimeout(fake.stepStart, 20_000, "the stalled agent to start its step");
    fake.stall();
    const sampler = sampleEvery(rssMb(run.pid), SAMPLE_MS);
    await sleep(stallMs);
    const samples = sampler.stop();
    const connectedAtEnd = fake.connected() && run.child.exitCode === null;
    if (samples.length === 0) throw new Error("no memory samples of the stalled agent");
    const lastWords = run.tail().trim().split("\n").at(-1) ?? "";
    return { samples, connectedAtEnd, lastWords };
  } catch (error) {
    throw new Error(`${(error as Error).message}; agent output: ${run.tail()}`);
  } finally {
    fake.resume();
    await fake.close();
    await stopProcess(run);
  }
}

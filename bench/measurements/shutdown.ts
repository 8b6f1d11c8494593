import { existsSync, readFileSync, statSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { type BenchContext, byScale, type Measurement } from "../lib/context.ts";
import { type Figure, measured } from "../lib/figures.ts";
import { BenchController, FIXTURES, launchAgent, startHoldingProxy } from "../lib/peers.ts";
import { NODE, start, stopProcess, waitUntil, withTimeout } from "../lib/proc.ts";

const WRITE_THEN_SLEEP = join(FIXTURES, "write-then-sleep.mjs");
const FLUSH_ON_SIGTERM = join(FIXTURES, "flush-on-sigterm.mjs");
const PENDING_BYTES = 10_000_000;

const ROW = { id: "shutdown-sigterm", title: "SIGTERM with 10 MB pending, to exit", unit: "ms" } as const;

/**
 * (9) An agent process whose step has written 10 MB that the controller has not taken yet (a
 * proxy in between stops reading) gets SIGTERM; the proxy lets go at that moment. Measured:
 * SIGTERM to the agent's exit, and that the stored log holds every byte the step wrote. Baseline:
 * a Node process with 10 MB queued on a TCP socket behind the same kind of held proxy that, on
 * SIGTERM, flushes it and exits once the other end has every byte.
 */
export const shutdown: Measurement = {
  name: "shutdown",
  rows: [ROW],
  async run(ctx: BenchContext): Promise<Figure[]> {
    const runs = byScale(ctx, { full: 5, quick: 2, smoke: 1 });
    const agent: number[] = [];
    const baseline: number[] = [];
    const delivered: boolean[] = [];
    const ctl = await BenchController.start();
    try {
      for (let i = 0; i < runs; i++) {
        ctx.progress(`shutdown with 10 MB pending: run ${i + 1}/${runs}`);
        baseline.push(await flushBaseline());
        const result = await sigtermWithPending(ctx, ctl, i);
        agent.push(result.ms);
        delivered.push(result.delivered);
      }
    } finally {
      await ctl.stop();
    }
    const all = delivered.every(Boolean);
    return [
      measured({
        ...ROW,
        samples: agent,
        baseline: {
          title: "a Node process flushing 10 MB queued on a TCP socket (same held proxy) on SIGTERM",
          samples: baseline,
        },
        target: {
          text: "all 10 MB delivered",
          actual: () => (all ? 1 : 0),
          op: ">=",
          limit: 1,
          format: (delivered) => (delivered === 1 ? "every run delivered all" : "bytes lost"),
        },
        notes: [
          `${delivered.filter(Boolean).length}/${runs} runs delivered every byte; exit code 143 and job reason interrupted checked`,
          "default settings: what does not fit in the agent's memory window (AGENT_MAX_UNACKED_BYTES) waits in its spool file",
        ],
        details: { pendingBytes: PENDING_BYTES, delivered },
      }),
    ];
  },
};

async function sigtermWithPending(
  ctx: BenchContext,
  ctl: BenchController,
  index: number,
): Promise<{ ms: number; delivered: boolean }> {
  const proxy = await startHoldingProxy(ctl.url);
  const marker = join(ctx.tmp, `shutdown-marker-${index}`);
  try {
    const { run } = await launchAgent(ctl, `bench-shutdown-${index}`, {
      url: proxy.url,
      workDir: join(ctx.tmp, "agent-work"),
    });
    try {
      proxy.hold();
      const watch = ctl.run(
        // No retry: the interrupted attempt ends the job, as this measurement waits for.
        {
          retry: { infrastructure: 0 },
          steps: [{ argv: [NODE, WRITE_THEN_SLEEP, String(PENDING_BYTES), marker, "30000"] }],
        },
        () => {},
      );
      await waitUntil(() => existsSync(marker), 30_000, "the step to write its 10 MB");
      const written = Number(readFileSync(marker, "utf8"));
      const signalledAt = performance.now();
      run.child.kill("SIGTERM");
      proxy.release();
      const exit = await withTimeout(run.exited, 30_000, "the agent to exit after SIGTERM");
      const record = await withTimeout(watch.done, 10_000, `job ${watch.id} to end`);
      const stored = statSync(watch.outputPath).size;
      if (exit.code !== 143)
        throw new Error(`the agent exited with ${exit.code ?? exit.signal}, expected 143`);
      if (record.reason !== "interrupted")
        throw new Error(`job ${watch.id} ended ${record.status} (${record.reason}), expected interrupted`);
      return { ms: exit.at - signalledAt, delivered: stored === written && record.logBytes === written };
    } finally {
      await stopProcess(run);
    }
  } finally {
    await proxy.close();
  }
}

/**
 * SIGTERM to a Node process with 10 MB queued on a TCP connection, through the same kind of
 * held proxy, to its exit once every byte reached the other end.
 */
async function flushBaseline(): Promise<number> {
  let received = 0;
  const peers = new Set<Socket>();
  const sink = createServer((socket) => {
    peers.add(socket);
    socket.on("data", (chunk: Buffer) => {
      received += chunk.length;
    });
    socket.on("end", () => socket.end());
    socket.on("close", () => peers.delete(socket));
  });
  await new Promise<void>((resolve) => sink.listen(0, "127.0.0.1", () => resolve()));
  const { port } = sink.address() as { port: number };
  const proxy = await startHoldingProxy(`http://127.0.0.1:${port}/`);
  proxy.hold();
  const run = start(NODE, [FLUSH_ON_SIGTERM, new URL(proxy.url).port, String(PENDING_BYTES)], {
    keepStdout: true,
  });
  try {
    await waitUntil(() => run.stdout().includes("ready"), 10_000, "the baseline writer to queue 10 MB");
    const signalledAt = performance.now();
    run.child.kill("SIGTERM");
    proxy.release();
    const exit = await withTimeout(run.exited, 30_000, "the baseline writer to exit");
    if (exit.code !== 0)
      throw new Error(`the baseline writer exited with ${exit.code ?? exit.signal}: ${run.tail()}`);
    await waitUntil(() => received === PENDING_BYTES, 5_000, "the baseline's 10 MB");
    return exit.at - signalledAt;
  } finally {
    await stopProcess(run);
    await proxy.close();
    for (const socket of peers) socket.destroy();
    await new Promise<void>((resolve) => sink.close(() => resolve()));
  }
}

import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { DiskWatcher, groupRssBytes } from "../../agent-core/index.ts";
import { type BenchContext, byScale, type Measurement } from "../lib/context.ts";
import { type Figure, measured, notAvailable } from "../lib/figures.ts";
import { BenchController, ENTRYPOINT, FIXTURES, launchAgent } from "../lib/peers.ts";
import { CPU_CLOCK, NODE, procCpuSeconds, stopProcess, timedRun, withTimeout } from "../lib/proc.ts";
import { round3, summarize } from "../lib/stats.ts";

const MANY_FILES = join(FIXTURES, "many-files.mjs");
const FILES = 10_000;
const FILE_BYTES = 1_024;
/** The cap given to the watched runs: large enough never to be reached. */
const BUDGET_BYTES = 10 * 1024 ** 3;
/** The knob of the watcher's sampling; its absence in --help means there is no watcher yet. */
const INTERVAL_ENV = "AGENT_MONITOR_INTERVAL_MS";
/** No sampling while the step runs: the watcher then only checks at the step's start and end. */
const NO_SAMPLING_MS = 3_600_000;

const ROW = { id: "disk-watch-cost", title: "disk watcher CPU, 10,000-file step", unit: "CPU ms" } as const;

/**
 * (7) CPU of the agent process while a step writes 10,000 files, with the disk-budget watcher
 * sampling at its default interval (and AGENT_DISK_BUDGET_BYTES set), against the same step with
 * sampling pushed out of the step (AGENT_MONITOR_INTERVAL_MS=1 h): the watcher is always on, so
 * its sampling is what can be switched off. The same sampler reads the step's memory from /proc,
 * so the difference is the cost of all step monitoring; the cost of one disk check and of one
 * memory sample, measured in this process, are in the details. n/a while the entrypoint's --help
 * does not document AGENT_MONITOR_INTERVAL_MS.
 */
export const disk: Measurement = {
  name: "disk",
  rows: [ROW],
  async run(ctx: BenchContext): Promise<Figure[]> {
    const help = await timedRun(NODE, [ENTRYPOINT, "--help"], { keepStdout: true });
    if (!help.stdout.includes(INTERVAL_ENV)) {
      return [notAvailable(ROW.id, ROW.title, ROW.unit, "watcher not built yet")];
    }
    return [await measureWatcher(ctx)];
  },
};

async function measureWatcher(ctx: BenchContext): Promise<Figure> {
  const runs = byScale(ctx, { full: 5, quick: 2, smoke: 1 });
  const files = byScale(ctx, { full: FILES, quick: FILES, smoke: 500 });
  const watched: Step[] = [];
  const unwatched: Step[] = [];
  const ctl = await BenchController.start();
  try {
    for (let i = 0; i < runs; i++) {
      ctx.progress(`disk watcher: run ${i + 1}/${runs}, ${files} files`);
      unwatched.push(
        await step(ctx, ctl, `bench-disk-off-${i}`, files, { [INTERVAL_ENV]: String(NO_SAMPLING_MS) }),
      );
      watched.push(
        await step(ctx, ctl, `bench-disk-on-${i}`, files, { AGENT_DISK_BUDGET_BYTES: String(BUDGET_BYTES) }),
      );
    }
  } finally {
    await ctl.stop();
  }
  const on = summarize(watched.map((s) => s.cpuMs));
  const off = summarize(unwatched.map((s) => s.cpuMs));
  const perCall = unitCosts(ctx);
  return measured({
    ...ROW,
    samples: watched.map((s) => s.cpuMs),
    baseline: {
      title: `the same step, ${INTERVAL_ENV}=${NO_SAMPLING_MS} (no sampling during it)`,
      samples: unwatched.map((s) => s.cpuMs),
    },
    notes: [
      `agent process CPU from step-start to step-end (${CPU_CLOCK}); ${files} files of ${FILE_BYTES} bytes; step median ${summarize(watched.map((s) => s.wallMs)).median.toFixed(0)} ms`,
      `difference of medians ${(on.median - off.median).toFixed(1)} ms (spread of the baseline: ${off.min.toFixed(1)}-${off.max.toFixed(1)} ms)`,
      `one disk check (statfs) ${perCall.diskCheckMicroseconds} us, one memory sample (/proc scan) ${perCall.memorySampleMicroseconds} us, in this process`,
    ],
    details: {
      files,
      fileBytes: FILE_BYTES,
      budgetBytes: BUDGET_BYTES,
      stepWallMs: summarize(watched.map((s) => s.wallMs)),
      ...perCall,
    },
  });
}

interface Step {
  cpuMs: number;
  wallMs: number;
}

async function step(
  ctx: BenchContext,
  ctl: BenchController,
  name: string,
  files: number,
  env: Record<string, string>,
): Promise<Step> {
  const { run } = await launchAgent(ctl, name, { workDir: join(ctx.tmp, "agent-work"), env });
  try {
    let before: { cpu: number; at: number } | undefined;
    let after: { cpu: number; at: number } | undefined;
    const watch = ctl.run(
      { steps: [{ argv: [NODE, MANY_FILES, String(files), String(FILE_BYTES)] }] },
      (event, _data, at) => {
        if (event.type === "step-start") before = { cpu: procCpuSeconds(run.pid), at };
        if (event.type === "step-end") after = { cpu: procCpuSeconds(run.pid), at };
      },
    );
    const record = await withTimeout(watch.done, 120_000, `job ${watch.id}`);
    if (record.status !== "succeeded")
      throw new Error(`job ${watch.id} ended ${record.status}: ${record.message}`);
    if (before === undefined || after === undefined)
      throw new Error(`job ${watch.id} ended without step events`);
    return { cpuMs: (after.cpu - before.cpu) * 1000, wallMs: after.at - before.at };
  } finally {
    await stopProcess(run);
  }
}

/** Microseconds per call of the watcher's disk check and of the memory sampler, in this process. */
function unitCosts(ctx: BenchContext): { diskCheckMicroseconds: number; memorySampleMicroseconds: number } {
  const dir = mkdtempSync(join(ctx.tmp, "disk-"));
  try {
    const watcher = new DiskWatcher(dir, BUDGET_BYTES, 16 * 1024 * 1024);
    const time = (calls: number, call: () => unknown) => {
      const started = performance.now();
      for (let i = 0; i < calls; i++) call();
      return round3(((performance.now() - started) * 1000) / calls);
    };
    return {
      diskCheckMicroseconds: time(2_000, () => watcher.check()),
      memorySampleMicroseconds: time(50, () => groupRssBytes(process.pid)),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

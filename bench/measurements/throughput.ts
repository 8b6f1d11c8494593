import { execFileSync } from "node:child_process";
import { closeSync, constants, openSync, statSync, unlinkSync } from "node:fs";
import { Socket } from "node:net";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { type BenchContext, byScale, type Measurement } from "../lib/context.ts";
import { type Figure, measured } from "../lib/figures.ts";
import { BenchController, FIXTURES, launchAgent } from "../lib/peers.ts";
import { CPU_CLOCK, NODE, procCpuSeconds, start, stopProcess, withTimeout } from "../lib/proc.ts";
import { round3, summarize } from "../lib/stats.ts";

const WRITE_OUT = join(FIXTURES, "write-out.mjs");
const MB = 1e6;
const LINE_BYTES = 120;
const CHUNK_BYTES = 65_536;
/** Throughput targets, as a ratio of the `cat` baseline's: 120-byte lines, 64 KiB writes. */
const LINES_RATE_TARGET = 0.5;
const CHUNKS_RATE_TARGET = 0.3;
/** The agent's CPU seconds per GB of 64 KiB writes, at most. */
const CHUNK_CPU_TARGET = 5;

const ROWS = {
  linesRate: { id: "log-throughput-lines", title: "log throughput, 120-byte lines", unit: "MB/s" },
  chunksRate: { id: "log-throughput-chunks", title: "log throughput, 64 KiB writes", unit: "MB/s" },
  linesCpu: { id: "log-cpu-lines", title: "agent CPU per GB, 120-byte lines", unit: "CPU s/GB" },
  chunksCpu: { id: "log-cpu-chunks", title: "agent CPU per GB, 64 KiB writes", unit: "CPU s/GB" },
} as const;

/**
 * (4) Output of a child through the agent (the entrypoint bundle, its own process) to the
 * controller's stored log, against the same child piped into `cat > /dev/null`; with the CPU
 * the agent process spent per GB.
 */
export const throughput: Measurement = {
  name: "throughput",
  rows: Object.values(ROWS),
  async run(ctx: BenchContext): Promise<Figure[]> {
    const bytes = byScale(ctx, { full: 256, quick: 32, smoke: 2 }) * 1024 * 1024;
    const runs = byScale(ctx, { full: 3, quick: 2, smoke: 1 });
    const ctl = await BenchController.start();
    try {
      const figures: Figure[] = [];
      for (const [writeBytes, rate, cpu] of [
        [LINE_BYTES, ROWS.linesRate, ROWS.linesCpu],
        [CHUNK_BYTES, ROWS.chunksRate, ROWS.chunksCpu],
      ] as const) {
        const agent: Throughput[] = [];
        const piped: Throughput[] = [];
        const nodeReader: number[] = [];
        const fifoReader: number[] = [];
        for (let i = 0; i < runs; i++) {
          ctx.progress(`${rate.title}: run ${i + 1}/${runs}, ${bytes / 1024 / 1024} MiB`);
          piped.push(await throughputPiped(bytes, writeBytes));
          nodeReader.push(await throughputNodeReader(bytes, writeBytes));
          fifoReader.push(await throughputNodeFifoReader(ctx, bytes, writeBytes));
          agent.push(await throughputThroughAgent(ctx, ctl, bytes, writeBytes, `${writeBytes}-${i}`));
        }
        const readerMedian = summarize(nodeReader).median;
        const fifoReaderMedian = summarize(fifoReader).median;
        const rateTarget = writeBytes === LINE_BYTES ? LINES_RATE_TARGET : CHUNKS_RATE_TARGET;
        const sizeNote = `${bytes / 1024 / 1024} MiB in ${writeBytes}-byte write(2) calls, ${runs} runs`;
        figures.push(
          measured({
            ...rate,
            samples: agent.map((t) => t.mbPerSecond),
            baseline: {
              title: "the same child piped into `cat > /dev/null`",
              samples: piped.map((t) => t.mbPerSecond),
            },
            target: {
              text: `ratio >= ${rateTarget.toFixed(2)}`,
              actual: (f: Figure) => f.ratio,
              op: ">=",
              limit: rateTarget,
            },
            notes: [
              sizeNote,
              "agent: step-start (agent clock) to step-end received by the controller",
              `reference: a Node process doing nothing but read the child's stdout reaches ${readerMedian.toFixed(1)} MB/s through the socketpair spawn makes, ${fifoReaderMedian.toFixed(1)} MB/s through a FIFO (what the agent gives a step)`,
            ],
            details: {
              bytes,
              writeBytes,
              nodeReaderMBps: summarize(nodeReader),
              nodeFifoReaderMBps: summarize(fifoReader),
              controllerCpuSecondsPerGB: summarize(agent.map((t) => t.controllerCpuPerGB)),
            },
          }),
          measured({
            ...cpu,
            samples: agent.map((t) => t.cpuPerGB),
            baseline: {
              title: "CPU of `cat > /dev/null` per GB (bash `times`: its rusage)",
              samples: piped.map((t) => t.cpuPerGB),
            },
            ...(writeBytes === CHUNK_BYTES
              ? {
                  target: {
                    text: `median <= ${CHUNK_CPU_TARGET} CPU s/GB`,
                    actual: (f: Figure) => f.value?.median ?? null,
                    op: "<=",
                    limit: CHUNK_CPU_TARGET,
                  } as const,
                }
              : {}),
            notes: [
              `agent process (entrypoint bundle) from its hello to step-end: ${CPU_CLOCK}`,
              `controller (this process, process.cpuUsage): median ${summarize(agent.map((t) => t.controllerCpuPerGB)).median.toFixed(2)} CPU s/GB`,
            ],
            details: { bytes, writeBytes },
          }),
        );
      }
      return figures;
    } finally {
      await ctl.stop();
    }
  },
};

interface Throughput {
  mbPerSecond: number;
  cpuPerGB: number;
  controllerCpuPerGB: number;
}

/** The same child read by a Node process that does nothing else: the ceiling of Node's stdio pipes. */
async function throughputNodeReader(bytes: number, writeBytes: number): Promise<number> {
  let received = 0;
  const run = start(NODE, [WRITE_OUT, String(bytes), String(writeBytes)]);
  run.child.stdout!.on("data", (chunk: Buffer) => {
    received += chunk.length;
  });
  const exit = await withTimeout(run.closed, 120_000, "the Node reader", () => run.child.kill("SIGKILL"));
  if (exit.code !== 0 || received !== bytes)
    throw new Error(`the Node reader got ${received} of ${bytes} bytes (exit ${exit.code}): ${run.tail()}`);
  return bytes / MB / ((exit.at - run.startedAt) / 1000);
}

/** The same, the child's stdout a FIFO opened as the agent opens a step's (agent-core/runner/step-pipes.ts). */
async function throughputNodeFifoReader(
  ctx: BenchContext,
  bytes: number,
  writeBytes: number,
): Promise<number> {
  const path = join(ctx.tmp, "reader.fifo");
  execFileSync("mkfifo", ["-m", "600", path]);
  const read = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const write = openSync(path, constants.O_WRONLY);
  unlinkSync(path);
  let received = 0;
  let run: ReturnType<typeof start>;
  try {
    run = start(NODE, [WRITE_OUT, String(bytes), String(writeBytes)], { stdout: write });
  } finally {
    closeSync(write);
  }
  const reader = new Socket({ fd: read, readable: true, writable: false });
  reader.on("data", (chunk: Buffer) => {
    received += chunk.length;
  });
  const readerClosed = new Promise<void>((resolve) => reader.once("close", () => resolve()));
  const exit = await withTimeout(
    Promise.all([run.exited, readerClosed]).then(([exited]) => exited),
    120_000,
    "the Node FIFO reader",
    () => run.child.kill("SIGKILL"),
  );
  const endedAt = performance.now();
  if (exit.code !== 0 || received !== bytes)
    throw new Error(
      `the Node FIFO reader got ${received} of ${bytes} bytes (exit ${exit.code}): ${run.tail()}`,
    );
  return bytes / MB / ((endedAt - run.startedAt) / 1000);
}

async function throughputPiped(bytes: number, writeBytes: number): Promise<Throughput> {
  // bash's `times` prints, on its second line, the user and system time of the shell's waited-for
  // children (getrusage, millisecond precision): here, cat's.
  const script = `"$0" "$1" ${bytes} ${writeBytes} | bash -c 'cat > /dev/null; times'`;
  const run = start("sh", ["-c", script, NODE, WRITE_OUT], { keepStdout: true });
  const exit = await withTimeout(run.closed, 120_000, "the piped baseline", () => run.child.kill("SIGKILL"));
  if (exit.code !== 0) throw new Error(`the piped baseline exited with ${exit.code}: ${run.tail()}`);
  const seconds = ((await run.exited).at - run.startedAt) / 1000;
  return {
    mbPerSecond: bytes / MB / seconds,
    cpuPerGB: childrenSecondsFromTimes(run.stdout()) / (bytes / 1e9),
    controllerCpuPerGB: 0,
  };
}

/** The children's user + system seconds from bash's `times` output (`0m0.012s 0m0.034s`, second line). */
function childrenSecondsFromTimes(text: string): number {
  const line = text.trim().split("\n")[1] ?? "";
  const match = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/.exec(line.trim());
  if (match === null)
    throw new Error(`Expected bash's \`times\` output, got ${JSON.stringify(text.slice(0, 200))}`);
  const [, um, us, sm, ss] = match;
  return Number(um) * 60 + Number(us) + Number(sm) * 60 + Number(ss);
}

async function throughputThroughAgent(
  ctx: BenchContext,
  ctl: BenchController,
  bytes: number,
  writeBytes: number,
  tag: string,
): Promise<Throughput> {
  const { run } = await launchAgent(ctl, `bench-tput-${tag}`, { workDir: join(ctx.tmp, "agent-work") });
  try {
    const cpuBefore = procCpuSeconds(run.pid);
    let startedAt: number | undefined;
    let endedAt: number | undefined;
    let cpuAfter: number | undefined;
    let controllerCpu0: NodeJS.CpuUsage | undefined;
    let controllerCpu: NodeJS.CpuUsage | undefined;
    const watch = ctl.run(
      { steps: [{ argv: [NODE, WRITE_OUT, String(bytes), String(writeBytes)] }] },
      (event, _data, at) => {
        if (event.type === "step-start") {
          startedAt = Date.parse(event.at);
          controllerCpu0 = process.cpuUsage();
        } else if (event.type === "step-end") {
          endedAt = performance.timeOrigin + at;
          cpuAfter = procCpuSeconds(run.pid);
          controllerCpu = process.cpuUsage(controllerCpu0);
        }
      },
    );
    const record = await withTimeout(watch.done, 120_000, `job ${watch.id}`);
    await withTimeout(run.exited, 15_000, "the agent to exit after its job");
    if (record.status !== "succeeded")
      throw new Error(`job ${watch.id} ended ${record.status}: ${record.message}`);
    const stored = statSync(watch.outputPath).size;
    if (record.logBytes !== bytes || stored !== bytes)
      throw new Error(
        `the controller stored ${stored} bytes (record: ${record.logBytes}); the child wrote ${bytes}`,
      );
    if (
      startedAt === undefined ||
      endedAt === undefined ||
      cpuAfter === undefined ||
      controllerCpu === undefined
    )
      throw new Error(`job ${watch.id} ended without step-start and step-end events`);
    const gb = bytes / 1e9;
    return {
      mbPerSecond: bytes / MB / ((endedAt - startedAt) / 1000),
      cpuPerGB: (cpuAfter - cpuBefore) / gb,
      controllerCpuPerGB: round3((controllerCpu.user + controllerCpu.system) / 1e6 / gb),
    };
  } finally {
    await stopProcess(run);
  }
}

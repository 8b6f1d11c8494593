import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import WebSocket, { WebSocketServer } from "ws";
import {
  AGENT_WS_PATH,
  deriveAgentSecret,
  encodeOutputFrame,
  NAME_HEADER,
  SECRET_HEADER,
} from "../../agent-core/index.ts";
import { type BenchContext, byScale, type Measurement } from "../lib/context.ts";
import { type Figure, measured } from "../lib/figures.ts";
import { ROOT, tempDir } from "../lib/peers.ts";
import {
  minimalEnv,
  NODE,
  procCpuSeconds,
  procRssBytes,
  sampleEvery,
  sleep,
  start,
  stopProcess,
  waitAtMost,
  waitUntil,
} from "../lib/proc.ts";
import { percentile, round3 } from "../lib/stats.ts";

const ROWS = {
  dispatchP50: { id: "controller-dispatch-p50", title: "controller dispatch p50, 500 sessions", unit: "ms" },
  dispatchP99: { id: "controller-dispatch-p99", title: "controller dispatch p99, 500 sessions", unit: "ms" },
  // (quick runs use 50 sessions; the details say how many)
  stored: { id: "controller-stored-rate", title: "controller stored rate, 500 x 10 KB/s", unit: "MB/s" },
  cpu: { id: "controller-cpu", title: "controller CPU, 500 x 10 KB/s", unit: "% of a core" },
  rss: { id: "controller-rss", title: "controller peak RSS, 500 x 10 KB/s", unit: "MB" },
  limit: { id: "controller-limit", title: "controller stored rate at its limit", unit: "MB/s" },
} as const;

const CONTROLLER = join(ROOT, "dist/controller.mjs");
const FRAME_BYTES = 10 * 1024;
/** Jobs are submitted evenly over this long; then every session streams for its duration. */
const RAMP_MS = 2_000;

/**
 * (9) One controller (the built bundle, its own process) with many light simulated agents in
 * this process, each a real WebSocket session speaking protocol v1: hello, take a job, stream
 * output frames at a steady rate, end the step and the job, wait for the ack.
 *
 * - Dispatch latency: every agent waits idle; one job per agent is submitted over HTTP at once;
 *   the time from a job's POST to its `job` message at an agent, against the same message sent
 *   by a bare ws server to the same number of clients (the baseline: the transport's own cost).
 * - Stored rate, CPU, RSS: 500 sessions streaming 10 KB/s each (5 MB/s offered), for 20 s
 *   (5 s quick); the stored rate's baseline is the offered rate.
 * - The limit: the per-session rate is raised (x4 each stage) until the controller stores less
 *   than 90% of what is offered, or it uses a whole core, or the simulator itself cannot offer
 *   the rate (2 cores are shared); the last stage reached is reported.
 */
export const controllerScale: Measurement = {
  name: "controller scale",
  rows: Object.values(ROWS),
  async run(ctx: BenchContext): Promise<Figure[]> {
    const sessions = byScale(ctx, { full: 500, quick: 50, smoke: 10 });
    const seconds = byScale(ctx, { full: 20, quick: 2, smoke: 1 });
    const key = randomBytes(32).toString("hex");
    const data = tempDir("bench-scale-");
    const run = start(NODE, [CONTROLLER, "serve", "--port", "0", "--data-dir", data.path, "--no-provision"], {
      env: minimalEnv({ CONTROLLER_KEY: key, CONTROLLER_LOG_LEVEL: "warn" }),
      keepStdout: true,
    });
    try {
      await waitUntil(() => /listening on (\S+)/.test(run.stdout()), 15_000, "the controller to listen");
      const url = /listening on (\S+)/.exec(run.stdout())![1]!;
      ctx.progress(
        `controller scale: ${sessions} jobs over ${RAMP_MS / 1000} s, each streaming 10 KB/s for ${seconds} s`,
      );
      const dispatch = await measureDispatch(url, key, sessions, 0, seconds * 1000, run.pid);
      const latencies = [...dispatch.latencies].sort((a, b) => a - b);
      const baseline = (await bareDispatch(sessions)).sort((a, b) => a - b);
      const steady = dispatch.stream;
      const figures: Figure[] = [
        measured({
          ...ROWS.dispatchP50,
          samples: [percentile(latencies, 50)],
          baseline: {
            title: "a bare ws server sending the job message",
            samples: [percentile(baseline, 50)],
          },
          target: { text: "p50 <= 50 ms", actual: (f) => f.value?.median ?? null, op: "<=", limit: 50 },
          details: { sessions, latencies: summary(latencies), bare: summary(baseline) },
        }),
        measured({
          ...ROWS.dispatchP99,
          samples: [percentile(latencies, 99)],
          baseline: {
            title: "a bare ws server sending the job message",
            samples: [percentile(baseline, 99)],
          },
          target: { text: "p99 <= 500 ms", actual: (f) => f.value?.median ?? null, op: "<=", limit: 500 },
        }),
        measured({
          ...ROWS.stored,
          samples: [steady.storedMBps],
          baseline: {
            title: "offered: sessions x 10 KB/s, averaged over the ramp and the streaming",
            samples: [steady.offeredMBps],
          },
          target: { text: "ratio >= 0.95", actual: (f) => f.ratio, op: ">=", limit: 0.95 },
          details: { ...steady },
        }),
        measured({
          ...ROWS.cpu,
          samples: [steady.controllerCpuPercent],
          target: { text: "<= 50% of a core", actual: (f) => f.value?.median ?? null, op: "<=", limit: 50 },
        }),
        measured({
          ...ROWS.rss,
          samples: [steady.controllerPeakRssMB],
          target: { text: "<= 512 MB", actual: (f) => f.value?.median ?? null, op: "<=", limit: 512 },
        }),
      ];
      const stages: StreamResult[] = [steady];
      let perSecond = FRAME_BYTES;
      for (let stage = 1; stage <= (ctx.scale === "full" ? 4 : 0); stage++) {
        const last = stages.at(-1)!;
        if (limitReached(last)) break;
        perSecond *= 4;
        ctx.progress(
          `controller scale: ${sessions} x ${perSecond / 1024} KB/s (limit search, stage ${stage})`,
        );
        const next = await measureDispatch(
          url,
          key,
          sessions,
          stage,
          byScale(ctx, { full: 8, quick: 2, smoke: 1 }) * 1000,
          run.pid,
          perSecond,
        );
        stages.push(next.stream);
      }
      const limit = stages.find(limitReached) ?? stages.at(-1)!;
      figures.push(
        measured({
          ...ROWS.limit,
          samples: [limit.storedMBps],
          baseline: { title: "offered at that stage", samples: [limit.offeredMBps] },
          notes: [
            `limit: ${limit.sessions} sessions x ${limit.perSessionKBps} KB/s: ${describeLimit(limit)}`,
          ],
          details: { stages },
        }),
      );
      return figures;
    } finally {
      await stopProcess(run);
      data.remove();
    }
  },
};

interface StreamResult {
  sessions: number;
  perSessionKBps: number;
  seconds: number;
  offeredMBps: number;
  /** What the agents actually sent (the simulator may fall behind at high rates). */
  sentMBps: number;
  /** Acknowledged by the controller (stored before it acks). */
  storedMBps: number;
  controllerCpuPercent: number;
  controllerPeakRssMB: number;
  simulatorCpuPercent: number;
}

function limitReached(result: StreamResult): boolean {
  return (
    result.storedMBps < 0.9 * result.sentMBps ||
    result.controllerCpuPercent >= 95 ||
    result.sentMBps < 0.9 * result.offeredMBps
  );
}

function describeLimit(result: StreamResult): string {
  if (result.sentMBps < 0.9 * result.offeredMBps)
    return `the simulator could offer only ${result.sentMBps.toFixed(1)} of ${result.offeredMBps.toFixed(1)} MB/s (it shares the 2 cores; simulator ${result.simulatorCpuPercent.toFixed(0)}% CPU)`;
  if (result.storedMBps < 0.9 * result.sentMBps || result.controllerCpuPercent >= 95)
    return `the controller stored ${result.storedMBps.toFixed(1)} of ${result.sentMBps.toFixed(1)} MB/s sent at ${result.controllerCpuPercent.toFixed(0)}% of a core`;
  return `not reached: stored ${result.storedMBps.toFixed(1)} MB/s at ${result.controllerCpuPercent.toFixed(0)}% of a core`;
}

function summary(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: round3(percentile(sorted, 50)),
    p99: round3(percentile(sorted, 99)),
    max: round3(sorted.at(-1) ?? 0),
  };
}

/** One simulated agent: a raw protocol v1 session that streams its job's output at a steady rate. */
class SimulatedAgent {
  readonly name: string;
  readonly socket: WebSocket;
  jobReceivedAt: number | undefined;
  jobName: string | undefined;
  /** Called when the job arrives. */
  onJob: (() => void) | undefined;
  sentBytes = 0;
  ackedBytes = 0;
  done: Promise<void>;
  #seq = 0;
  #bytesAtSeq = new Map<number, number>();
  #finished!: () => void;

  constructor(url: string, key: string, name: string) {
    this.name = name;
    this.socket = new WebSocket(`${url.replace(/^http/, "ws")}${AGENT_WS_PATH}`, {
      perMessageDeflate: false,
      headers: { [NAME_HEADER]: name, [SECRET_HEADER]: deriveAgentSecret(key, name) },
    });
    this.done = new Promise((resolve) => {
      this.#finished = resolve;
    });
    this.socket.on("message", (raw, isBinary) => {
      if (isBinary) return;
      const message = JSON.parse(raw.toString()) as {
        type: string;
        seq?: number;
        job?: { id: string; name?: string };
      };
      if (message.type === "job") {
        this.jobReceivedAt = performance.now();
        this.jobName = message.job?.name;
        this.#jobId = message.job?.id;
        this.onJob?.();
      } else if (message.type === "ack") {
        const seq = message.seq ?? 0;
        for (const [at, bytes] of this.#bytesAtSeq) {
          if (at > seq) break;
          this.ackedBytes = bytes;
          this.#bytesAtSeq.delete(at);
        }
        if (this.#endSeq !== undefined && seq >= this.#endSeq) this.#finished();
      }
    });
    this.socket.on("close", () => this.#finished());
  }

  #jobId: string | undefined;
  #endSeq: number | undefined;

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.once("open", () => {
        this.socket.send(
          JSON.stringify({
            v: 1,
            type: "hello",
            agent: { name: this.name, labels: ["sim"], runtime: "local", version: "bench" },
            limits: { deadlineAt: null, diskBudgetBytes: null },
            capabilities: [],
          }),
        );
        resolve();
      });
      this.socket.once("error", reject);
    });
  }

  /** Streams `bytesPerSecond` for `durationMs` in 10 KB frames, then ends the step and the job. */
  async stream(bytesPerSecond: number, durationMs: number): Promise<void> {
    const jobId = this.#jobId!;
    this.#send({ type: "step-start", jobId, stepId: "1", startedAt: Date.now() });
    const frame = Buffer.alloc(FRAME_BYTES, 97);
    const frames = Math.max(1, Math.round((bytesPerSecond * durationMs) / 1000 / FRAME_BYTES));
    const spacingMs = durationMs / frames;
    // Each agent starts at its own phase, as independent agents would; the last frame is due
    // within the window.
    const started = performance.now() + Math.random() * spacingMs;
    for (let i = 0; i < frames; i++) {
      const due = started + i * spacingMs;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      this.#seq++;
      this.socket.send(
        encodeOutputFrame({
          seq: this.#seq,
          stepId: "1",
          stream: "stdout",
          offset: this.sentBytes,
          data: frame,
        }),
      );
      this.sentBytes += frame.length;
      this.#bytesAtSeq.set(this.#seq, this.sentBytes);
    }
    this.#send({
      type: "step-end",
      jobId,
      stepId: "1",
      exitCode: 0,
      signal: null,
      durationMs: Math.round(performance.now() - started),
      reason: "exit",
      stdoutBytes: this.sentBytes,
      stderrBytes: 0,
    });
    this.#send({
      type: "job-end",
      jobId,
      status: "succeeded",
      reason: "exit",
      durationMs: Math.round(performance.now() - started),
    });
    this.#endSeq = this.#seq;
  }

  #send(message: Record<string, unknown>): void {
    this.#seq++;
    this.socket.send(JSON.stringify({ v: 1, seq: this.#seq, ...message }));
  }
}

/**
 * Connects `sessions` idle agents, then submits one job per agent, spread evenly over `rampMs`
 * (so later jobs are dispatched while earlier agents stream); each agent streams as soon as its
 * job arrives. Returns each job's submit-to-`job` latency, and the stored rate and the
 * controller's CPU and RSS over the whole phase.
 */
async function measureDispatch(
  url: string,
  key: string,
  sessions: number,
  stage: number,
  durationMs: number,
  pid: number,
  bytesPerSecond = FRAME_BYTES,
  rampMs = RAMP_MS,
): Promise<{ latencies: number[]; stream: StreamResult }> {
  const agents = Array.from(
    { length: sessions },
    (_, i) => new SimulatedAgent(url, key, `sim-${stage}-${i}-${randomBytes(2).toString("hex")}`),
  );
  await Promise.all(agents.map((agent) => agent.opened()));
  // Let every hello land: all agents idle before the first job.
  await sleep(500);
  const submittedAt = new Map<string, number>();
  const byJob = new Map<string, SimulatedAgent>();
  const cpuBefore = procCpuSeconds(pid);
  const selfBefore = process.cpuUsage();
  const rss = sampleEvery(() => procRssBytes(pid), 250);
  const started = performance.now();
  let lastAckAt = started;
  const streams: Promise<void>[] = [];
  for (const agent of agents) {
    agent.onJob = () => {
      byJob.set(agent.jobName!, agent);
      streams.push(
        agent.stream(bytesPerSecond, durationMs).then(async () => {
          // A session whose last ack never comes is waited for 30 s at most (its shortfall is in `stored`).
          await waitAtMost(agent.done, 30_000);
          lastAckAt = Math.max(lastAckAt, performance.now());
        }),
      );
    };
  }
  await Promise.all(
    agents.map(async (_, i) => {
      await sleep(started + (i * rampMs) / sessions - performance.now());
      const name = `scale-${stage}-${i}`;
      submittedAt.set(name, performance.now());
      const res = await fetch(new URL("api/v1/jobs", url), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          name,
          labels: ["sim"],
          retry: { infrastructure: 0 },
          steps: [{ run: "true" }],
        }),
      });
      if (res.status !== 201) throw new Error(`submit answered ${res.status}: ${await res.text()}`);
    }),
  );
  await waitUntil(() => agents.every((a) => a.jobReceivedAt !== undefined), 60_000, "every agent's job");
  const latencies = agents.map((a) => a.jobReceivedAt! - submittedAt.get(a.jobName!)!);
  await Promise.all(streams);
  const windowS = (rampMs + durationMs) / 1000;
  const elapsedS = Math.max(windowS, (lastAckAt - started) / 1000);
  const cpu = procCpuSeconds(pid) - cpuBefore;
  const self = process.cpuUsage(selfBefore);
  const rssSamples = rss.stop();
  for (const agent of agents) agent.socket.close();
  const sent = agents.reduce((sum, a) => sum + a.sentBytes, 0);
  const stored = agents.reduce((sum, a) => sum + a.ackedBytes, 0);
  return {
    latencies,
    stream: {
      sessions,
      perSessionKBps: bytesPerSecond / 1024,
      seconds: round3(elapsedS),
      // Each session streams for `durationMs` inside the window (they start over the ramp).
      offeredMBps: round3((sessions * bytesPerSecond * durationMs) / 1000 / 1e6 / windowS),
      sentMBps: round3(sent / 1e6 / windowS),
      storedMBps: round3(stored / 1e6 / elapsedS),
      controllerCpuPercent: round3((cpu / elapsedS) * 100),
      controllerPeakRssMB: round3(Math.max(...rssSamples) / 1e6),
      simulatorCpuPercent: round3(((self.user + self.system) / 1e6 / elapsedS) * 100),
    },
  };
}

/** The baseline: a bare ws server sending the same job message to `sessions` clients at once. */
async function bareDispatch(sessions: number): Promise<number[]> {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  const port = (server.address() as { port: number }).port;
  const received: number[] = [];
  const clients = await Promise.all(
    Array.from({ length: sessions }, async () => {
      const client = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false });
      client.on("message", () => received.push(performance.now()));
      await new Promise((resolve) => client.once("open", resolve));
      return client;
    }),
  );
  const message = JSON.stringify({ v: 1, type: "job", job: { id: "x", steps: [{ id: "1", run: "true" }] } });
  const sentAt = performance.now();
  for (const socket of server.clients) socket.send(message);
  await waitUntil(() => received.length === sessions, 10_000, "the bare job messages");
  for (const client of clients) client.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return received.map((at) => at - sentAt);
}

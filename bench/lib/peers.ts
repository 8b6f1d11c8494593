import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import WebSocket, { WebSocketServer } from "ws";
import { createLogger } from "../../agent-core/index.ts";
import { Controller, type JobEvent, type JobRecord } from "../../controller/index.ts";
import { minimalEnv, NODE, type Started, start, stopProcess, withTimeout } from "./proc.ts";

export const ROOT = resolve(import.meta.dirname, "../..");
export const ENTRYPOINT = join(ROOT, "dist/container-entrypoint.mjs");
export const FIXTURES = join(ROOT, "bench/fixtures");

/** Temporary directories of this run not yet removed. */
const temps = new Set<string>();

/** A temporary directory removed by `remove` (or by {@link removeTempDirs} if the run is cut short). */
export function tempDir(prefix: string): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  temps.add(path);
  return {
    path,
    remove: () => {
      rmSync(path, { recursive: true, force: true });
      temps.delete(path);
    },
  };
}

/** Removes every temporary directory of this run that is still there. */
export function removeTempDirs(): void {
  for (const path of temps) rmSync(path, { recursive: true, force: true });
  temps.clear();
}

interface LogWaiter {
  msg: string;
  agent: string;
  resolve: (at: number) => void;
}

/**
 * The real reference controller on 127.0.0.1 port 0, in this process, with a logger hook: the
 * moment it logs a line (for example "agent ready", when an agent's hello arrives) can be awaited.
 */
export class BenchController {
  readonly controller: Controller;
  readonly #data: { path: string; remove: () => void };
  readonly #waiters: LogWaiter[];

  private constructor(
    controller: Controller,
    data: { path: string; remove: () => void },
    waiters: LogWaiter[],
  ) {
    this.controller = controller;
    this.#data = data;
    this.#waiters = waiters;
  }

  static async start(): Promise<BenchController> {
    const data = tempDir("bench-ctl-");
    const waiters: LogWaiter[] = [];
    const logger = createLogger({
      level: "info",
      write: (line) => {
        const at = performance.now();
        if (waiters.length === 0) return;
        const entry = JSON.parse(line) as { msg?: unknown; agent?: unknown };
        for (let i = waiters.length - 1; i >= 0; i--) {
          const waiter = waiters[i]!;
          if (entry.msg === waiter.msg && entry.agent === waiter.agent) {
            waiters.splice(i, 1);
            waiter.resolve(at);
          }
        }
      },
    });
    try {
      const controller = await Controller.start({ dataDir: data.path, logger });
      return new BenchController(controller, data, waiters);
    } catch (error) {
      data.remove();
      throw error;
    }
  }

  get url(): string {
    return this.controller.url;
  }

  /** Resolves with `performance.now()` of the moment the controller logs `msg` about `agent`. */
  whenLogged(msg: string, agent: string): Promise<number> {
    return new Promise((resolve) => this.#waiters.push({ msg, agent, resolve }));
  }

  /** Submits a job and follows its events live; see {@link JobWatch}. */
  run(
    submission: unknown,
    onEvent: (event: JobEvent, data: Buffer | undefined, at: number) => void,
  ): JobWatch {
    const record = this.controller.submit(submission);
    const unwatch = this.controller.watchJob(record.id, (event, data) =>
      onEvent(event, data, performance.now()),
    );
    const done = this.controller.waitForJob(record.id).finally(unwatch);
    return { id: record.id, done, outputPath: this.controller.outputPath(record.id) };
  }

  async stop(): Promise<void> {
    try {
      await this.controller.stop({ endJobs: true });
    } finally {
      this.#data.remove();
    }
  }
}

export interface JobWatch {
  id: string;
  done: Promise<JobRecord>;
  outputPath: string;
}

export interface AgentLaunch {
  /** The controller URL the agent dials (a proxy's, to put something in between). */
  url?: string;
  workDir: string;
  env?: Record<string, string>;
}

/**
 * Starts the container entrypoint bundle as its own process, the way the reference controller's
 * provisioners start the image (launch inputs in JENKINS_* variables, `AGENT_MODE=native`:
 * controller/provisioners/), and resolves once the controller has its hello. `launch.env` may
 * override any of it (`AGENT_MODE: "auto"`: as a Jenkins plugin starts it, which cannot say).
 * `readyAt - run.startedAt` is the start-to-connected time.
 */
export async function launchAgent(
  ctl: BenchController,
  name: string,
  launch: AgentLaunch,
  timeoutMs = 20_000,
): Promise<{ run: Started; readyAt: number }> {
  const ready = ctl.whenLogged("agent ready", name);
  const run = start(NODE, [ENTRYPOINT], {
    env: minimalEnv({
      JENKINS_URL: launch.url ?? ctl.url,
      JENKINS_SECRET: ctl.controller.secretFor(name),
      JENKINS_AGENT_NAME: name,
      JENKINS_AGENT_WORKDIR: launch.workDir,
      AGENT_RUNTIME: "local",
      AGENT_MODE: "native",
      ...launch.env,
    }),
  });
  try {
    const readyAt = await withTimeout(
      Promise.race([
        ready,
        run.exited.then((exit) => {
          throw new Error(`agent ${name} exited with ${exit.code ?? exit.signal} before its hello`);
        }),
      ]),
      timeoutMs,
      `agent ${name} to connect`,
    );
    return { run, readyAt };
  } catch (error) {
    await stopProcess(run, 2_000);
    throw new Error(`${(error as Error).message}; agent output: ${run.tail()}`);
  }
}

/**
 * A fake controller that accepts any agent on 127.0.0.1 port 0, sends it `job` after its hello,
 * and never acknowledges anything. `stall` stops reading the agent's socket (the TCP window
 * closes), `resume` reads again.
 */
export async function startStallingController(job: unknown) {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  let socket: WebSocket | undefined;
  let stepStarted: () => void = () => {};
  const stepStart = new Promise<void>((resolve) => {
    stepStarted = resolve;
  });
  server.on("connection", (ws) => {
    socket = ws;
    ws.on("message", (data, isBinary) => {
      if (isBinary) return;
      const message = JSON.parse(String(data)) as { type?: string };
      if (message.type === "hello") ws.send(JSON.stringify({ v: 1, type: "job", job }));
      if (message.type === "step-start") stepStarted();
    });
  });
  const { port } = server.address() as { port: number };
  const tcp = () => (socket as unknown as { _socket?: Socket } | undefined)?._socket;
  return {
    url: `http://127.0.0.1:${port}/`,
    stepStart,
    connected: () => socket?.readyState === WebSocket.OPEN,
    stall: () => tcp()?.pause(),
    resume: () => tcp()?.resume(),
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of server.clients) client.terminate();
        server.close(() => resolve());
      }),
  };
}

/**
 * A TCP proxy on 127.0.0.1 port 0 in front of `target`. While held, it stops reading what the
 * client sends (a slow controller); `release` lets it flow again. Half-closes are passed on, so
 * that everything sent before a FIN arrives.
 */
export async function startHoldingProxy(target: string) {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  const clients = new Set<Socket>();
  let held = false;
  const server: Server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = connect({ port: Number(port), host: hostname, allowHalfOpen: true });
    sockets.add(client).add(upstream);
    clients.add(client);
    const forward = (from: Socket, to: Socket, holdable: boolean) => {
      from.on("data", (chunk: Buffer) => {
        if (!to.write(chunk)) {
          from.pause();
          to.once("drain", () => {
            if (!(holdable && held)) from.resume();
          });
        }
      });
      from.on("end", () => to.end());
      from.on("error", () => to.destroy());
      from.on("close", () => {
        sockets.delete(from);
        clients.delete(from);
      });
    };
    forward(client, upstream, true);
    forward(upstream, client, false);
    if (held) client.pause();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const address = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${address.port}/`,
    hold: () => {
      held = true;
      for (const client of clients) client.pause();
    },
    release: () => {
      held = false;
      for (const client of clients) client.resume();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import {
  type AgentConfig,
  type AgentConfigInput,
  createLogger,
  type Logger,
  parseAgentConfig,
} from "../../agent-core/index.ts";
import {
  Controller,
  ControllerClient,
  type ControllerOptions,
  LocalProvisioner,
} from "../../controller/index.ts";

export const ROOT = resolve(import.meta.dirname, "../..");
export const ENTRYPOINT = join(ROOT, "dist/container-entrypoint.mjs");
export const FIXTURES = join(ROOT, "test/fixtures");

/** A logger that keeps its JSON lines for assertions. */
export function captureLogger(): {
  logger: Logger;
  lines: string[];
  entries: () => Record<string, unknown>[];
} {
  const lines: string[] = [];
  const logger = createLogger({ level: "debug", write: (line) => lines.push(line) });
  return { logger, lines, entries: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

export function tempDir(prefix: string): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export interface TestController {
  controller: Controller;
  client: ControllerClient;
  dataDir: string;
  log: ReturnType<typeof captureLogger>;
  close: () => Promise<void>;
}

/**
 * A real controller on 127.0.0.1 port 0 with a temp data dir; with `provision`, a local
 * provisioner that launches the real container entrypoint bundle.
 */
export async function startController(
  options: {
    provision?: boolean;
    agentEnv?: Record<string, string>;
    overrides?: Partial<ControllerOptions>;
  } = {},
): Promise<TestController> {
  const data = tempDir("ctl-");
  const log = captureLogger();
  const provisioner = options.provision
    ? new LocalProvisioner({
        command: [process.execPath, ENTRYPOINT],
        logDir: join(data.path, "agents"),
        env: { AGENT_GRACE_MS: "500", AGENT_DRAIN_MS: "300", ...options.agentEnv },
      })
    : undefined;
  const controller = await Controller.start({
    dataDir: data.path,
    logger: log.logger,
    ...(provisioner ? { provisioner } : {}),
    ...options.overrides,
  });
  return {
    controller,
    client: new ControllerClient(controller.url),
    dataDir: data.path,
    log,
    close: async () => {
      await controller.stop({ endJobs: true });
      data.remove();
    },
  };
}

/** Config for an in-process agent of `controller`, with short timings suited to tests. */
export function agentConfigFor(
  controller: Controller,
  name: string,
  overrides: Partial<AgentConfigInput> = {},
): AgentConfig {
  return parseAgentConfig({
    url: controller.url,
    secret: controller.secretFor(name),
    name,
    workDir: join(tmpdir(), "agent-test"),
    connectTimeoutMs: 5_000,
    idleTimeoutMs: 20_000,
    graceMs: 500,
    drainMs: 300,
    ackTimeoutMs: 5_000,
    baseEnv: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: tmpdir() },
    // These agents test protocol v1; auto mode's discovery has its own tests (mode-detection).
    mode: "native",
    ...overrides,
  });
}

/** Resolves when `predicate` holds, polling every 10 ms; rejects after `timeoutMs`. */
export async function until(predicate: () => boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
  const started = Date.now();
  while (!predicate()) {
    if (Date.now() - started > timeoutMs)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A loopback port with nothing listening (bound, then released): connections to it are refused. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface NodeRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node script ...args` with exactly `env` (plus PATH and HOME unless given) and resolves
 * with its exit code and output once it exits.
 */
export function runNode(
  script: string,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<NodeRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? tmpdir(), ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** What a run of the entrypoint bundle came to: its exit, its stderr, and that as JSON lines. */
export interface EntrypointRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** From the spawn to the exit. */
  ms: number;
  stderr: string;
  /** The JSON diagnostics (other stderr lines are left out). */
  lines: Record<string, unknown>[];
}

/**
 * Starts the real container entrypoint bundle as a container runtime would: `args`, and `env`
 * over a minimal environment (PATH only, nothing else of this process's), stdout ignored.
 */
export function spawnEntrypoint(
  args: string[],
  env: Record<string, string> = {},
): { child: ChildProcess; done: Promise<EntrypointRun> } {
  const started = Date.now();
  const child = spawn(process.execPath, [ENTRYPOINT, ...args], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<EntrypointRun>((resolve) =>
    child.once("close", (code, signal) =>
      resolve({
        code,
        signal,
        ms: Date.now() - started,
        stderr,
        lines: stderr
          .split("\n")
          .filter((line) => line.startsWith("{"))
          .map((line) => JSON.parse(line) as Record<string, unknown>),
      }),
    ),
  );
  return { child, done };
}

/** Whether this machine lets the tests mount a tmpfs (root, and a kernel that allows it). */
export const canMountTmpfs: boolean = (() => {
  const probe = tempDir("mount-probe-");
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", probe.path], { stdio: "ignore" });
    execFileSync("umount", [probe.path]);
    return true;
  } catch {
    return false;
  } finally {
    probe.remove();
  }
})();

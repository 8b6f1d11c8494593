import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import type { AgentExit, ProvisionedAgent, Provisioner, ProvisionRequest } from "./provisioner.ts";

export interface LocalProvisionerOptions {
  /** The command that starts the container entrypoint, e.g. `[process.execPath, "dist/container-entrypoint.mjs"]`. */
  command: string[];
  /** Directory for each agent's diagnostics (`<name>.log`). */
  logDir: string;
  /** Labels the launched agents carry, beyond those of the request. */
  labels?: string[];
  /** Extra environment for the agents (tunables such as AGENT_GRACE_MS). */
  env?: Record<string, string>;
}

const ADOPTED_POLL_MS = 1_000;

/**
 * Launches the container entrypoint as a child process, exactly as ECS would start the image,
 * with the launch inputs in the environment (`JENKINS_URL`, `JENKINS_SECRET`,
 * `JENKINS_AGENT_NAME`, and `AGENT_MODE=native`): the secret never appears in the process list. The agent writes its
 * diagnostics straight to `<logDir>/<name>.log`, so it outlives a controller restart.
 */
export class LocalProvisioner implements Provisioner {
  readonly kind = "local";
  readonly #options: LocalProvisionerOptions;
  readonly #running = new Set<ProvisionedAgent>();

  constructor(options: LocalProvisionerOptions) {
    if (options.command.length === 0)
      throw new TypeError("Expected `command` to be a non-empty array, got `[]` (array)");
    this.#options = options;
  }

  async provision(request: ProvisionRequest): Promise<ProvisionedAgent> {
    mkdirSync(this.#options.logDir, { recursive: true });
    const logLocation = join(this.#options.logDir, `${request.agentName}.log`);
    const logFd = openSync(logLocation, "a");
    const [file, ...args] = this.#options.command;
    const labels = [...new Set([...(this.#options.labels ?? []), ...request.labels])];
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(file!, args, {
        stdio: ["ignore", logFd, logFd],
        env: {
          PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
          HOME: process.env.HOME ?? "/tmp",
          ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}),
          ...(process.env.LANG ? { LANG: process.env.LANG } : {}),
          // Trust settings, not secrets: an agent must verify a controller's private CA as the controller's clients do.
          ...(process.env.NODE_EXTRA_CA_CERTS
            ? { NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS }
            : {}),
          ...this.#options.env,
          JENKINS_URL: request.controllerUrl,
          JENKINS_SECRET: request.secret,
          JENKINS_AGENT_NAME: request.agentName,
          AGENT_LABELS: labels.join(","),
          AGENT_RUNTIME: "local",
          // The reference controller knows what it is: no auto-mode request asking it.
          AGENT_MODE: "native",
        },
      });
    } finally {
      closeSync(logFd);
    }
    const exited = new Promise<AgentExit>((resolve) => {
      child.once("error", (error) =>
        resolve({ code: null, detail: `could not start ${file}: ${error.message}` }),
      );
      child.once("exit", (code, signal) =>
        resolve({ code, detail: signal ? `killed by ${signal}` : `exited with code ${code}` }),
      );
    });
    const agent: ProvisionedAgent = {
      ref: `pid ${child.pid ?? "none"}`,
      logLocation,
      exited,
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      },
    };
    this.#track(agent);
    return agent;
  }

  /** A process launched before a restart, watched by polling its pid. */
  adopt(ref: string, agentName: string): ProvisionedAgent | undefined {
    const pid = Number(/^pid (\d+)$/.exec(ref)?.[1]);
    if (!Number.isInteger(pid)) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const exited = new Promise<AgentExit>((resolve) => {
      timer = setInterval(() => {
        if (isAlive(pid)) return;
        clearInterval(timer);
        resolve({ code: null, detail: "exited (launched before the controller restarted)" });
      }, ADOPTED_POLL_MS);
      timer.unref();
    });
    const agent: ProvisionedAgent = {
      ref,
      logLocation: join(this.#options.logDir, `${agentName}.log`),
      exited,
      stop: async () => {
        if (isAlive(pid)) process.kill(pid, "SIGTERM");
      },
    };
    this.#track(agent);
    return agent;
  }

  async close(options: { stopAgents: boolean }): Promise<void> {
    if (!options.stopAgents) return;
    const agents = [...this.#running];
    await Promise.all(agents.map((agent) => agent.stop("the controller stops")));
    await Promise.all(agents.map((agent) => agent.exited));
  }

  #track(agent: ProvisionedAgent): void {
    this.#running.add(agent);
    void agent.exited.then(() => this.#running.delete(agent));
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

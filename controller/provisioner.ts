import { spawn } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { join } from "node:path";

/** What a provisioner is asked to launch: one agent, with the Jenkins-style launch inputs. */
export interface ProvisionRequest {
  agentName: string;
  secret: string;
  controllerUrl: string;
  labels: string[];
  /** The job the agent is launched for (the controller leases it to this agent). */
  jobId: string;
}

export interface ProvisionedAgent {
  /** Where the launched agent's own diagnostics can be read (a file, a log group). */
  readonly logLocation: string;
  /** Resolves when the agent is gone (process exit, task stopped), with a one-line description. */
  readonly exited: Promise<{ code: number | null; detail: string }>;
  /** Asks the agent to stop (SIGTERM, StopTask); resolves once asked. */
  stop(): Promise<void>;
}

/**
 * Launches agents on demand. The controller calls `provision` when a job waits and no idle
 * agent matches it. The local provisioner is below; Lambda (Invoke, InvocationType Event) and
 * ECS (RunTask with a command override) provisioners implement the same interface.
 */
export interface Provisioner {
  readonly kind: string;
  /** Whether agents of this provisioner can carry `labels`. */
  accepts(labels: readonly string[]): boolean;
  provision(request: ProvisionRequest): Promise<ProvisionedAgent>;
  /** Stops every agent it launched that is still running. */
  close(): Promise<void>;
}

export interface LocalProvisionerOptions {
  /** The command that starts the container entrypoint, e.g. `[process.execPath, "dist/container-entrypoint.mjs"]`. */
  command: string[];
  /** Directory for each agent's diagnostics (`<name>.log`). */
  logDir: string;
  /** Labels the launched agents carry, beyond the job's own (the job's labels are always given). */
  labels?: string[];
  /** Extra environment for the agents (tunables such as AGENT_GRACE_MS). */
  env?: Record<string, string>;
  /** Only jobs whose labels are all in this set are accepted; undefined accepts any. */
  acceptedLabels?: string[];
}

/**
 * Launches the container entrypoint as a child process, exactly as ECS would start the image,
 * with the launch inputs in the environment (`JENKINS_URL`, `JENKINS_SECRET`,
 * `JENKINS_AGENT_NAME`): the secret never appears in the process list.
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

  accepts(labels: readonly string[]): boolean {
    const accepted = this.#options.acceptedLabels;
    return accepted === undefined || labels.every((label) => accepted.includes(label));
  }

  async provision(request: ProvisionRequest): Promise<ProvisionedAgent> {
    mkdirSync(this.#options.logDir, { recursive: true });
    const logLocation = join(this.#options.logDir, `${request.agentName}.log`);
    const log = createWriteStream(logLocation);
    const [file, ...args] = this.#options.command;
    const labels = [...new Set([...(this.#options.labels ?? []), ...request.labels])];
    const child = spawn(file!, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
        HOME: process.env.HOME ?? "/tmp",
        ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}),
        ...(process.env.LANG ? { LANG: process.env.LANG } : {}),
        // Trust settings, not secrets: an agent must verify a controller's private CA as the controller's clients do.
        ...(process.env.NODE_EXTRA_CA_CERTS ? { NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS } : {}),
        ...this.#options.env,
        JENKINS_URL: request.controllerUrl,
        JENKINS_SECRET: request.secret,
        JENKINS_AGENT_NAME: request.agentName,
        AGENT_LABELS: labels.join(","),
        AGENT_RUNTIME: "local",
      },
    });
    child.stdout.pipe(log, { end: false });
    child.stderr.pipe(log, { end: false });
    const exited = new Promise<{ code: number | null; detail: string }>((resolve) => {
      child.once("error", (error) =>
        resolve({ code: null, detail: `could not start ${file}: ${error.message}` }),
      );
      child.once("close", (code, signal) => {
        log.end();
        resolve({ code, detail: signal ? `killed by ${signal}` : `exited with code ${code}` });
      });
    });
    const agent: ProvisionedAgent = {
      logLocation,
      exited,
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      },
    };
    this.#running.add(agent);
    void exited.then(() => this.#running.delete(agent));
    return agent;
  }

  async close(): Promise<void> {
    const agents = [...this.#running];
    await Promise.all(agents.map((agent) => agent.stop()));
    await Promise.all(agents.map((agent) => agent.exited));
  }
}

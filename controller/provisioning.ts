import { randomBytes } from "node:crypto";
import type { Logger } from "../agent-core/index.ts";
import type { Dispatcher } from "./dispatcher.ts";
import type { JobRun, Launch } from "./job-run.ts";
import type { Provisioner } from "./provisioner.ts";

export interface ProvisioningOptions {
  provisioner: Provisioner;
  logger: Logger;
  /** Launch attempts per job before it fails with `provision-failed`. */
  maxAttempts: number;
  /** A launched agent that has not said hello by then is stopped. */
  connectTimeoutMs: number;
  /** The controller URL the agents are given. */
  controllerUrl: () => string;
  secretFor: (agentName: string) => string;
}

/** What provisioning asks of the controller. */
export interface ProvisioningEvents {
  /** No agent could be started within the attempts: end the job. */
  gaveUp(run: JobRun, message: string): void;
  /** A launch failed but attempts remain: dispatch again (which launches anew). */
  retry(): void;
}

/**
 * Launches an agent for a queued job that no idle agent matches: one launch at a time per job,
 * each under a new agent name leased to the job, stopped when it has not connected in time.
 */
export class Provisioning {
  readonly #options: ProvisioningOptions;
  readonly #dispatcher: Dispatcher;
  readonly #events: ProvisioningEvents;

  constructor(options: ProvisioningOptions, dispatcher: Dispatcher, events: ProvisioningEvents) {
    this.#options = options;
    this.#dispatcher = dispatcher;
    this.#events = events;
  }

  /** Launches an agent for `run` unless one is on its way or the provisioner cannot carry its labels. */
  launch(run: JobRun): void {
    const { provisioner, logger } = this.#options;
    if (run.launch || !provisioner.accepts(run.recorder.record.labels)) return;
    run.launchAttempts++;
    run.recorder.record.launchedAt ??= new Date().toISOString();
    const agentName = `${provisioner.kind}-${randomBytes(3).toString("hex")}`;
    const launch: Launch = { agentName };
    run.launch = launch;
    this.#dispatcher.leases.set(agentName, run.id);
    logger.info("launching an agent", { job: run.id, agent: agentName, attempt: run.launchAttempts });
    provisioner
      .provision({
        agentName,
        secret: this.#options.secretFor(agentName),
        controllerUrl: this.#options.controllerUrl(),
        labels: run.recorder.record.labels,
        jobId: run.id,
      })
      .then(
        (handle) => {
          launch.handle = handle;
          launch.timer = setTimeout(() => {
            if (this.#dispatcher.agents.get(agentName)?.hello === undefined) void handle.stop();
          }, this.#options.connectTimeoutMs);
          launch.timer.unref();
          void handle.exited.then(({ detail }) => {
            if (run.agent?.name !== agentName) this.#failed(run, launch, detail);
          });
        },
        (error: unknown) => this.#failed(run, launch, `could not be launched: ${(error as Error).message}`),
      );
  }

  /** The launched agent said hello: it no longer needs its connect timer. */
  connected(run: JobRun, agentName: string): void {
    if (run.launch?.agentName === agentName) clearTimeout(run.launch.timer);
  }

  /** The job no longer needs its launched agent (another agent took it, or it ended): stop it. */
  release(run: JobRun, exceptAgent?: string): void {
    const launch = run.launch;
    if (launch === undefined || launch.agentName === exceptAgent) return;
    clearTimeout(launch.timer);
    void launch.handle?.stop();
  }

  async close(): Promise<void> {
    await this.#options.provisioner.close();
  }

  #failed(run: JobRun, launch: Launch, detail: string): void {
    clearTimeout(launch.timer);
    this.#dispatcher.leases.delete(launch.agentName);
    if (run.launch !== launch) return;
    delete run.launch;
    if (run.recorder.record.status !== "queued") return;
    const log = launch.handle ? ` (agent log: ${launch.handle.logLocation})` : "";
    this.#options.logger.warn("launched agent did not take its job", {
      job: run.id,
      agent: launch.agentName,
      detail,
    });
    if (run.launchAttempts >= this.#options.maxAttempts) {
      this.#events.gaveUp(
        run,
        `no agent could be started after ${run.launchAttempts} attempts; last: ${launch.agentName} ${detail}${log}`,
      );
    } else this.#events.retry();
  }
}

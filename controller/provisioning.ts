import { randomBytes } from "node:crypto";
import type { Logger } from "../agent-core/index.ts";
import type { Dispatcher } from "./dispatcher.ts";
import type { AttemptCause } from "./job-record.ts";
import type { JobRun, Launch } from "./job-run.ts";
import {
  type LaunchTemplate,
  type ProvisionedAgent,
  type Provisioner,
  templateServes,
} from "./provisioners/provisioner.ts";

export interface ProvisioningOptions {
  templates: readonly LaunchTemplate[];
  logger: Logger;
  /** A launched agent that has not said hello by then is stopped (a template may set its own). */
  connectTimeoutMs: number;
  /** The controller URL the agents are given. */
  controllerUrl: () => string;
  secretFor: (agentName: string) => string;
}

/** The ways a launch fails before its agent connects. */
export type LaunchFailure = Extract<
  AttemptCause,
  "launch-failed" | "stopped-before-connecting" | "never-connected"
>;

/** What provisioning tells the controller. */
export interface ProvisioningEvents {
  /** The launch failed, its agent went away before connecting, or did not connect in time. */
  failed(run: JobRun, cause: LaunchFailure, message: string): void;
  /** The platform reports a launched agent gone after it connected (a task STOPPED, a process exit). */
  gone(run: JobRun, agentName: string, detail: string): void;
}

/**
 * Launches an agent for a queued job that no idle agent matches: the first template serving the
 * job's labels, one launch at a time per job, each a new attempt under a new single-use agent
 * name leased to the job. A launched agent that has not connected in time is stopped; one that
 * the platform reports gone before connecting fails the attempt at once, with the platform's
 * reason.
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

  /** Every provisioner of the templates, once each. */
  provisioners(): Provisioner[] {
    return [...new Set(this.#options.templates.map((template) => template.provisioner))];
  }

  /** The first template that serves `labels`. */
  templateFor(labels: readonly string[]): LaunchTemplate | undefined {
    return this.#options.templates.find((template) => templateServes(template, labels));
  }

  template(name: string | undefined): LaunchTemplate | undefined {
    return this.#options.templates.find((template) => template.name === name);
  }

  /** Launches an agent for `run` unless one is on its way or no template serves its labels. */
  launch(run: JobRun): void {
    if (run.launch) return;
    const template = this.templateFor(run.labels);
    if (template === undefined) return;
    const { provisioner } = template;
    run.recorder.record.launchedAt ??= run.recorder.now();
    const agentName = `${run.id}-${run.recorder.record.attempts.length + 1}-${randomBytes(3).toString("hex")}`;
    const attempt = run.recorder.beginAttempt({
      agent: agentName,
      platform: provisioner.kind,
      template: template.name,
      labels: [...run.labels],
      launchedAt: run.recorder.now(),
    });
    const launch: Launch = { agentName, template, connected: false };
    run.launch = launch;
    this.#dispatcher.leases.set(agentName, run.id);
    this.#options.logger.info("launching an agent", {
      job: run.id,
      agent: agentName,
      attempt: attempt.n,
      template: template.name,
    });
    this.#provision(run, launch, template, attempt.n, this.#connectTimeoutMs(template));
  }

  /**
   * Asks `template`'s provisioner for the launch's agent, then holds it (its platform id noted and
   * saved, its connect timer set to `timeoutMs`). Called again after a restart for a launch whose
   * answer was not stored, where the platform's launch is idempotent.
   */
  #provision(
    run: JobRun,
    launch: Launch,
    template: LaunchTemplate,
    attempt: number,
    timeoutMs: number,
  ): void {
    const { agentName } = launch;
    template.provisioner
      .provision({
        agentName,
        secret: this.#options.secretFor(agentName),
        controllerUrl: this.#options.controllerUrl(),
        labels: [...(template.labels ?? run.labels)],
        jobId: run.id,
        attempt,
      })
      .then(
        (handle) => {
          if (run.launch !== launch) {
            // Released while the launch was on its way (cancelled, another agent took the job).
            void handle.stop("the job no longer needs this agent");
            return;
          }
          run.recorder.noteAttempt({ platformRef: handle.ref });
          // A restart must find the launch (its agent name and the platform's id) to hold it again.
          run.recorder.save();
          this.#hold(run, launch, handle, timeoutMs);
        },
        (error: unknown) =>
          this.#fail(run, launch, "launch-failed", `could not be launched: ${(error as Error).message}`),
      );
  }

  /**
   * After a restart: holds on to the launch of the current attempt again (its lease, its connect
   * timer for what is left of it, the platform's handle where there is one).
   */
  adopt(run: JobRun): void {
    const attempt = run.recorder.currentAttempt;
    if (attempt === undefined) return;
    const template = this.template(attempt.template);
    const launch: Launch = { agentName: attempt.agent, template, connected: false };
    run.launch = launch;
    this.#dispatcher.leases.set(attempt.agent, run.id);
    if (template === undefined) {
      this.#fail(
        run,
        launch,
        "launch-failed",
        `its template ${attempt.template ?? "(none)"} is no longer configured`,
      );
      return;
    }
    const elapsed =
      Date.now() - Date.parse(attempt.launchedAt ?? attempt.endedAt ?? new Date().toISOString());
    const timeoutMs = Math.max(0, this.#connectTimeoutMs(template) - elapsed);
    if (attempt.platformRef === undefined && template.provisioner.idempotentLaunch === true) {
      // The controller died before it stored the platform's answer: the same launch asked again
      // returns the agent the first one started (or starts it), so it can be watched and stopped.
      this.#options.logger.info("asking again for a launch whose answer was not stored", {
        job: run.id,
        agent: attempt.agent,
        template: template.name,
      });
      this.#provision(run, launch, template, attempt.n, timeoutMs);
      return;
    }
    const handle = attempt.platformRef
      ? template.provisioner.adopt?.(attempt.platformRef, attempt.agent)
      : undefined;
    this.#hold(run, launch, handle, timeoutMs);
  }

  /** The launched agent said hello: it no longer needs its connect timer. */
  connected(run: JobRun, agentName: string): void {
    const launch = run.launch;
    if (launch?.agentName !== agentName) return;
    clearTimeout(launch.timer);
    launch.connected = true;
  }

  /** The job no longer needs its launched agent: stop it where the platform allows, end the lease. */
  release(run: JobRun, reason: string): void {
    const launch = run.launch;
    if (launch === undefined) return;
    delete run.launch;
    clearTimeout(launch.timer);
    this.#dispatcher.leases.delete(launch.agentName);
    if (!launch.connected) void launch.handle?.stop(reason);
  }

  #hold(run: JobRun, launch: Launch, handle: ProvisionedAgent | undefined, timeoutMs: number): void {
    if (handle) launch.handle = handle;
    launch.timer = setTimeout(() => {
      if (run.launch !== launch || launch.connected) return;
      const message = `agent ${launch.agentName} did not connect within ${this.#connectTimeoutMs(launch.template)} ms${
        handle ? "; stopped" : ""
      }`;
      void handle?.stop("did not connect in time");
      this.#fail(run, launch, "never-connected", message);
    }, timeoutMs);
    launch.timer.unref();
    void handle?.exited.then(({ detail }) => {
      if (run.launch === launch && !launch.connected) {
        const log = handle.logLocation ? ` (agent log: ${handle.logLocation})` : "";
        this.#fail(run, launch, "stopped-before-connecting", `agent ${launch.agentName} ${detail}${log}`);
      } else this.#events.gone(run, launch.agentName, detail);
    });
  }

  #fail(run: JobRun, launch: Launch, cause: LaunchFailure, message: string): void {
    if (run.launch !== launch) return;
    delete run.launch;
    clearTimeout(launch.timer);
    this.#dispatcher.leases.delete(launch.agentName);
    this.#options.logger.warn("launched agent did not take its job", {
      job: run.id,
      agent: launch.agentName,
      cause,
      detail: message,
    });
    this.#events.failed(run, cause, message);
  }

  #connectTimeoutMs(template: LaunchTemplate | undefined): number {
    return template?.connectTimeoutMs ?? this.#options.connectTimeoutMs;
  }
}

import type { AgentConnection } from "./agent-connection.ts";
import type { JobRun } from "./job-run.ts";

/** What the dispatcher asks of the controller when it has matched (or not matched) a job. */
export interface DispatchActions {
  /** Hands the job to an idle agent. */
  assign(run: JobRun, agent: AgentConnection): void;
  /** No idle agent matches the job: launch one if that can be done. */
  launch(run: JobRun): void;
}

/**
 * The queue of jobs waiting for an agent, the connected agents and their leases, and the rule that
 * matches them: a leased agent (launched for one job) takes only that job; any other idle agent
 * takes the first queued job whose labels it all carries (the job's, or its overflow label).
 */
export class Dispatcher {
  /** Connected agents by name. */
  readonly agents = new Map<string, AgentConnection>();
  /** Agent name -> id of the job it was launched for. */
  readonly leases = new Map<string, string>();
  readonly #queue: JobRun[] = [];
  readonly #actions: DispatchActions;

  constructor(actions: DispatchActions) {
    this.#actions = actions;
  }

  get queued(): readonly JobRun[] {
    return this.#queue;
  }

  /** Adds a job to the queue: at the back, or at the front for a job that was already dispatched once. */
  enqueue(run: JobRun, front = false): void {
    if (front) this.#queue.unshift(run);
    else this.#queue.push(run);
  }

  /** Takes a job off the queue (it was assigned, cancelled or ended). */
  remove(run: JobRun): void {
    const index = this.#queue.indexOf(run);
    if (index >= 0) this.#queue.splice(index, 1);
  }

  /** Matches every queued job to an idle agent, or asks for a launch. */
  dispatch(): void {
    for (const run of [...this.#queue]) {
      if (run.recorder.record.status !== "queued") continue;
      const agent = this.#pickAgent(run);
      if (agent) {
        this.remove(run);
        this.#actions.assign(run, agent);
        continue;
      }
      this.#actions.launch(run);
    }
  }

  #pickAgent(run: JobRun): AgentConnection | undefined {
    const leased = run.launch && this.agents.get(run.launch.agentName);
    if (leased?.state === "idle") return leased;
    for (const agent of this.agents.values()) {
      // A launched agent carries a lease on one job and takes no other.
      if (agent.state !== "idle" || this.leases.has(agent.name)) continue;
      if (run.labels.every((label) => agent.labels.includes(label))) return agent;
    }
    return undefined;
  }
}

/** What a provisioner is asked to launch: one agent, with the Jenkins-style launch inputs. */
export interface ProvisionRequest {
  /** The agent's single-use name: its lease on `jobId`. */
  agentName: string;
  secret: string;
  controllerUrl: string;
  /** The labels the agent is launched with (the template's, or the job's). */
  labels: string[];
  /** The job the agent is launched for. */
  jobId: string;
  /** The job's attempt this launch is (1 for the first). */
  attempt: number;
}

/** How a launched agent went away, as the platform tells it. */
export interface AgentExit {
  /** The process's or container's exit code, when known. */
  code: number | null;
  /** One line: `exited with code 9`, `Essential container in task exited (OutOfMemoryError...)`. */
  detail: string;
}

export interface ProvisionedAgent {
  /** The platform's id of this launch (task ARN, Lambda request id, process id), kept in the job record. */
  readonly ref: string;
  /** Where the launched agent's own diagnostics can be read (a file, a log group). */
  readonly logLocation: string;
  /**
   * Resolves when the platform says the agent is gone (process exit, task STOPPED). Never
   * resolves where the platform cannot tell (an asynchronous Lambda invocation).
   */
  readonly exited: Promise<AgentExit>;
  /** Asks the platform to stop the agent (SIGTERM, StopTask) with a reason; resolves once asked. A no-op where it cannot (Lambda). */
  stop(reason: string): Promise<void>;
}

/**
 * Launches agents on one platform with one set of settings (a template's). The controller calls
 * `provision` for a job that waits with no idle agent matching it.
 */
export interface Provisioner {
  /** The platform: `local`, `ecs`, `lambda`. */
  readonly kind: string;
  provision(request: ProvisionRequest): Promise<ProvisionedAgent>;
  /**
   * Whether `provision` asked again with the same request returns the agent the first call
   * launched, if it did, instead of launching a second (ECS RunTask's `clientToken`, for 24 h).
   * A restart then asks again for a launch whose answer it had not stored.
   */
  readonly idempotentLaunch?: boolean;
  /**
   * After a controller restart: a handle on an agent launched before it (by `ref`), so that it can
   * still be watched and stopped. Undefined where the platform offers nothing to hold on to.
   */
  adopt?(ref: string, agentName: string): ProvisionedAgent | undefined;
  /** With `stopAgents`, stops every agent it launched that still runs; releases its clients. */
  close(options: { stopAgents: boolean }): Promise<void>;
}

/**
 * A launch template: which jobs it serves (by label), how long its agents may take to connect,
 * where a job goes when it outlives the platform's deadline, and the provisioner that launches.
 */
export interface LaunchTemplate {
  name: string;
  /** The labels its agents carry; it serves a job whose labels are all here. Undefined: every job. */
  labels?: readonly string[];
  /** A launched agent that has not said hello by then is stopped and the attempt fails `never-connected`. */
  connectTimeoutMs?: number;
  /** A job whose attempt here ended with reason `deadline` moves once to this label (a longer-lived template). */
  overflowLabel?: string;
  provisioner: Provisioner;
}

/** Whether `template` serves a job with `labels`. */
export function templateServes(template: LaunchTemplate, labels: readonly string[]): boolean {
  const carried = template.labels;
  return carried === undefined || labels.every((label) => carried.includes(label));
}

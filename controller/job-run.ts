import type { Job } from "../agent-core/index.ts";
import type { AgentConnection, JobStream } from "./agent-connection.ts";
import type { JobRecorder } from "./job-recorder.ts";
import type { LaunchTemplate, ProvisionedAgent } from "./provisioners/provisioner.ts";

/** An agent launched for one job (its lease), while the controller waits for it to take the job. */
export interface Launch {
  agentName: string;
  /** Undefined only for a launch adopted after a restart whose template is gone. */
  template: LaunchTemplate | undefined;
  handle?: ProvisionedAgent;
  /** Fails the attempt (`never-connected`) if the agent has not said hello in time. */
  timer?: NodeJS.Timeout;
  /** The agent said hello. */
  connected: boolean;
}

/**
 * What the controller holds for one unfinished job: the recorder of its history, the job as
 * sent to agents, and where it stands (its agent, its launch, its message stream, its timers).
 */
export interface JobRun {
  readonly id: string;
  readonly recorder: JobRecorder;
  /** The job as sent to agents (secrets included: never stored in clear). */
  readonly job: Job;
  /** The labels the next attempt is matched with: the job's, or its overflow label. */
  labels: string[];
  agent?: AgentConnection;
  launch?: Launch;
  /** Where the current attempt's messages stand; a resumed session continues it. */
  stream?: JobStream;
  /** Ends the attempt as agent-lost unless its agent resumes first. */
  lostTimer?: NodeJS.Timeout;
  /** The platform reported the current attempt's agent gone (it cannot resume): why. */
  agentGone?: string;
  cancelRequested: boolean;
}

import type { AgentConnection } from "./agent-connection.ts";
import type { ArtifactReceiver } from "./artifact-receiver.ts";
import type { JobRecorder } from "./job-recorder.ts";
import type { PreparedJob } from "./job-spec.ts";
import type { ProvisionedAgent } from "./provisioner.ts";

/** An agent launched for one job (its lease), while the controller waits for it to take the job. */
export interface Launch {
  agentName: string;
  handle?: ProvisionedAgent;
  /** Stops the agent if it has not said hello in time. */
  timer?: NodeJS.Timeout;
}

/**
 * What the controller holds for one job while it lives: the recorder of its history, the job as
 * sent to agents, and where it stands (its agent, its launch, its timers).
 */
export interface JobRun {
  readonly id: string;
  readonly recorder: JobRecorder;
  readonly prepared: PreparedJob;
  agent?: AgentConnection;
  launch?: Launch;
  launchAttempts: number;
  /** Ends the job as agent-lost unless its agent resumes first. */
  lostTimer?: NodeJS.Timeout;
  /** The agent whose `job-end` ended the job: its resume after a lost ack is told the end is stored. */
  endedByAgent?: string;
  /** Times the job went back to the queue because its agent left before starting it. */
  requeues: number;
  cancelRequested: boolean;
  /** The job's artifact stream, between its first `artifact` frame and `artifacts-end`. */
  artifacts?: ArtifactReceiver;
}

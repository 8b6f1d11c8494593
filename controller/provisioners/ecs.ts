import type { ECSClient, Task } from "@aws-sdk/client-ecs";
import type { Logger } from "../../agent-core/index.ts";
import { loadEcsSdk } from "./aws-sdk.ts";
import type { AgentExit, ProvisionedAgent, Provisioner, ProvisionRequest } from "./provisioner.ts";

/** An ECS/Fargate template's platform settings (docs/controller.md, "ecs"). */
export interface EcsSettings {
  cluster: string;
  /** `family:revision` or an ARN. */
  taskDefinition: string;
  /** The container of the task definition that runs the agent (its image's ENTRYPOINT is the agent). */
  container: string;
  /** `FARGATE` or `FARGATE_SPOT` (a capacity provider strategy); exclusive with `launchType`. */
  capacityProvider?: string;
  /** `FARGATE`, `EC2` or `EXTERNAL`; exclusive with `capacityProvider`. */
  launchType?: "FARGATE" | "EC2" | "EXTERNAL";
  /** awsvpc networking: subnets (1-16), security groups (up to 5), whether to give a public IP. */
  subnets?: string[];
  securityGroups?: string[];
  assignPublicIp?: boolean;
  /**
   * Where the agent's secret goes: `environment` (JENKINS_SECRET; the command is
   * `-url URL -name NAME`) or `command` (the amazon-ecs plugin's `-url URL SECRET NAME`).
   */
  secretIn: "environment" | "command";
  /** Tags added to each task, beside `agent-job`, `agent-name`, `agent-labels` and `agent-template`. */
  tags?: Record<string, string>;
  /** The template's name (a tag). */
  template: string;
}

export interface EcsProvisionerOptions {
  /** DescribeTasks is called this often for the tasks being watched. */
  pollIntervalMs?: number;
  logger: Logger;
}

const DESCRIBE_BATCH = 100;
const MAX_REASON = 255;

/**
 * Launches each agent as one ECS task (`RunTask`), with the container override the amazon-ecs
 * plugin uses and the launch inputs, tagged with the job and label. Watches its tasks with
 * batched `DescribeTasks` calls, so a task that stops before its agent connects (image pull
 * failure, OOM, Spot reclaimed) is reported at once with its `stoppedReason`; stops a task given
 * up with `StopTask`. Throttling and 5xx answers are retried with backoff by the SDK client's
 * standard retry strategy (`maxAttempts`); RunTask carries a `clientToken` (the agent name), so a
 * retried call cannot start a second task.
 */
export class EcsProvisioner implements Provisioner {
  readonly kind = "ecs";
  /** RunTask with the same `clientToken` (the agent name) and parameters answers the same task for 24 h. */
  readonly idempotentLaunch = true;
  readonly #client: ECSClient;
  readonly #settings: EcsSettings;
  readonly #logger: Logger;
  readonly #pollIntervalMs: number;
  /** Tasks watched until they stop: ARN -> how to report the stop. */
  readonly #watched = new Map<string, (exit: AgentExit) => void>();
  /** Watched tasks whose StopTask failed (after the SDK's retries): asked again at each poll. */
  readonly #unstopped = new Map<string, string>();
  #poller: NodeJS.Timeout | undefined;
  #polling = false;

  constructor(client: ECSClient, settings: EcsSettings, options: EcsProvisionerOptions) {
    this.#client = client;
    this.#settings = settings;
    this.#logger = options.logger;
    this.#pollIntervalMs = options.pollIntervalMs ?? 5_000;
  }

  async provision(request: ProvisionRequest): Promise<ProvisionedAgent> {
    const { RunTaskCommand } = await loadEcsSdk();
    const s = this.#settings;
    const inEnvironment = s.secretIn === "environment";
    const result = await this.#client.send(
      new RunTaskCommand({
        cluster: s.cluster,
        taskDefinition: s.taskDefinition,
        count: 1,
        clientToken: request.agentName.slice(0, 64),
        startedBy: "ephemeral-build-agent",
        ...(s.capacityProvider
          ? { capacityProviderStrategy: [{ capacityProvider: s.capacityProvider, weight: 1 }] }
          : {}),
        ...(s.launchType ? { launchType: s.launchType } : {}),
        ...(s.subnets
          ? {
              networkConfiguration: {
                awsvpcConfiguration: {
                  subnets: s.subnets,
                  ...(s.securityGroups ? { securityGroups: s.securityGroups } : {}),
                  assignPublicIp: s.assignPublicIp ? "ENABLED" : "DISABLED",
                },
              },
            }
          : {}),
        overrides: {
          containerOverrides: [
            {
              name: s.container,
              command: inEnvironment
                ? ["-url", request.controllerUrl, "-name", request.agentName]
                : ["-url", request.controllerUrl, request.secret, request.agentName],
              environment: [
                ...(inEnvironment ? [{ name: "JENKINS_SECRET", value: request.secret }] : []),
                { name: "AGENT_LABELS", value: request.labels.join(",") },
                // The reference controller knows what it is: no auto-mode request asking it.
                { name: "AGENT_MODE", value: "native" },
              ],
            },
          ],
        },
        tags: [
          ...Object.entries(s.tags ?? {}).map(([key, value]) => ({ key, value })),
          { key: "agent-job", value: request.jobId },
          { key: "agent-name", value: request.agentName },
          { key: "agent-labels", value: request.labels.join(" ") || "-" },
          { key: "agent-template", value: s.template },
        ],
      }),
    );
    const task = result.tasks?.[0];
    if (task?.taskArn === undefined) {
      const failure = result.failures?.[0];
      throw new Error(
        `RunTask started no task: ${failure ? `${failure.reason ?? "unknown"}${failure.detail ? ` (${failure.detail})` : ""}` : "no failure given"}`,
      );
    }
    return this.#watch(task.taskArn);
  }

  adopt(ref: string): ProvisionedAgent | undefined {
    return ref.startsWith("arn:") ? this.#watch(ref) : undefined;
  }

  async close(options: { stopAgents: boolean }): Promise<void> {
    clearInterval(this.#poller);
    this.#poller = undefined;
    if (options.stopAgents) {
      await Promise.all([...this.#watched.keys()].map((arn) => this.#stop(arn, "the controller stops")));
    }
    this.#watched.clear();
    this.#unstopped.clear();
  }

  #watch(taskArn: string): ProvisionedAgent {
    const exited = new Promise<AgentExit>((resolve) => this.#watched.set(taskArn, resolve));
    if (this.#poller === undefined) {
      this.#poller = setInterval(() => void this.#poll(), this.#pollIntervalMs);
      this.#poller.unref();
    }
    return {
      ref: taskArn,
      logLocation: `ECS task ${taskArn}`,
      exited,
      stop: (reason) => this.#stop(taskArn, reason),
    };
  }

  /**
   * Asks ECS to stop a task. A StopTask that still fails after the SDK's retries (throttling,
   * 5xx) is asked again at each poll while the task is watched and not STOPPED: a task given up
   * is never left running.
   */
  async #stop(taskArn: string, reason: string): Promise<void> {
    const { StopTaskCommand } = await loadEcsSdk();
    try {
      await this.#client.send(
        new StopTaskCommand({
          cluster: this.#settings.cluster,
          task: taskArn,
          reason: reason.slice(0, MAX_REASON),
        }),
      );
      this.#unstopped.delete(taskArn);
    } catch (error) {
      const again = this.#watched.has(taskArn);
      if (again) this.#unstopped.set(taskArn, reason);
      this.#logger.warn(again ? "StopTask failed; will ask again" : "StopTask failed", {
        task: taskArn,
        error,
      });
    }
  }

  /** One round of DescribeTasks over every watched task; reports the stopped ones. */
  async #poll(): Promise<void> {
    if (this.#polling || this.#watched.size === 0) return;
    this.#polling = true;
    try {
      const { DescribeTasksCommand } = await loadEcsSdk();
      const arns = [...this.#watched.keys()];
      for (let i = 0; i < arns.length; i += DESCRIBE_BATCH) {
        const batch = arns.slice(i, i + DESCRIBE_BATCH);
        const result = await this.#client.send(
          new DescribeTasksCommand({ cluster: this.#settings.cluster, tasks: batch }),
        );
        for (const task of result.tasks ?? []) {
          if (task.taskArn === undefined) continue;
          if (task.lastStatus === "STOPPED") this.#stopped(task.taskArn, describeStop(task));
          else if (task.desiredStatus === "STOPPED") this.#unstopped.delete(task.taskArn);
        }
        for (const failure of result.failures ?? []) {
          if (failure.arn && failure.reason === "MISSING")
            this.#stopped(failure.arn, { code: null, detail: "task is gone (DescribeTasks: MISSING)" });
        }
      }
    } catch (error) {
      this.#logger.warn("DescribeTasks failed; will try again", { error });
    } finally {
      this.#polling = false;
    }
    for (const [taskArn, reason] of this.#unstopped) {
      this.#unstopped.delete(taskArn);
      if (this.#watched.has(taskArn)) await this.#stop(taskArn, reason);
    }
    if (this.#watched.size === 0) {
      clearInterval(this.#poller);
      this.#poller = undefined;
    }
  }

  #stopped(taskArn: string, exit: AgentExit): void {
    this.#unstopped.delete(taskArn);
    const report = this.#watched.get(taskArn);
    if (report === undefined) return;
    this.#watched.delete(taskArn);
    report(exit);
  }
}

/** A stopped task in one line: its stop reason, code and the agent container's exit code. */
export function describeStop(task: Task): AgentExit {
  const container = task.containers?.[0];
  const code = container?.exitCode ?? null;
  const parts = [
    `task stopped: ${task.stoppedReason ?? "no reason given"}`,
    ...(task.stopCode ? [`[${task.stopCode}]`] : []),
    ...(code !== null ? [`(container exit code ${code})`] : []),
    ...(container?.reason ? [`- ${container.reason}`] : []),
  ];
  return { code, detail: parts.join(" ") };
}

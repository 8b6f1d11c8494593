import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { closeSync, mkdirSync, openSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

/**
 * A loopback Amazon ECS endpoint speaking the service's JSON protocol (AWS JSON 1.1: `POST /`,
 * `X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Operation>`) for RunTask, DescribeTasks and
 * StopTask. The real `@aws-sdk/client-ecs` client is pointed at it with `endpoint`, dummy
 * credentials and a region.
 *
 * Instead of AWS it runs each task's one container as a local process: the task definition's
 * entrypoint (the container entrypoint bundle) followed by the RunTask container override's
 * `command`, with the definition's and the override's environment, and reports the task's state
 * as ECS does (PROVISIONING -> RUNNING -> STOPPED, `stoppedReason`, `stopCode`, the container's
 * `exitCode`). StopTask sends SIGTERM, then SIGKILL after the stop timeout.
 *
 * It enforces the documented rules it is asked about, each break answered with the service's
 * error type (400) and recorded in `violations`: `taskDefinition` required and known
 * (`ClientException`), a known cluster (`ClusterNotFoundException`), not both `launchType` and
 * `capacityProviderStrategy`, capacity providers attached to the cluster, `awsvpc` needing
 * 1-16 subnets and at most 5 security groups, `assignPublicIp` ENABLED/DISABLED, container
 * overrides naming a container of the definition and at most 8,192 characters in all, at most
 * 50 tags (key 1-128 characters, value at most 256, no `aws:` prefix), `count` 1-10,
 * DescribeTasks with 1-100 tasks, StopTask `reason` at most 255 characters; a RunTask
 * `clientToken` (at most 64 characters) seen before answers the task it started. Any
 * operation can be told to fail the next N calls (`ThrottlingException`, `ServerException`).
 */

export interface FakeTaskDefinition {
  /** `family:revision`, as RunTask names it. */
  name: string;
  containerName: string;
  /** How the "image" behaves: run the agent, hang without connecting, or fail to start. */
  behaviour?: /** Run the agent; the first `hangFirst` tasks of this definition hang instead (never connect). */
    | { kind: "agent"; entrypoint: string[]; hangFirst?: number }
    | { kind: "hang" }
    | { kind: "fail-to-start"; stoppedReason: string; afterMs: number };
  environment?: Record<string, string>;
  networkMode?: "awsvpc" | "bridge";
}

export interface FakeTask {
  taskArn: string;
  clusterArn: string;
  taskDefinitionArn: string;
  lastStatus: "PROVISIONING" | "RUNNING" | "STOPPED";
  desiredStatus: "RUNNING" | "STOPPED";
  launchType?: string;
  capacityProviderName?: string;
  /** What RunTask asked for, as received. */
  request: Record<string, unknown>;
  /** The argv and environment the container process got. */
  argv: string[];
  env: Record<string, string>;
  stoppedReason?: string;
  stopCode?: string;
  exitCode?: number;
  createdAt: number;
  startedAt?: number;
  stoppedAt?: number;
  process?: ChildProcess;
  logPath: string;
}

export type FakeEcsFailure = "ThrottlingException" | "ServerException";
type Operation = "RunTask" | "DescribeTasks" | "StopTask";

const TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113.";
const ACCOUNT = "123456789012";
const MAX_OVERRIDE_CHARS = 8_192;

class EcsError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

export interface FakeEcsOptions {
  region?: string;
  clusters?: { name: string; capacityProviders: string[] }[];
  taskDefinitions: FakeTaskDefinition[];
  /** Where each task's container output goes (`<taskId>.log`). */
  logDir: string;
  /** SIGKILL this long after StopTask's SIGTERM (ECS's stopTimeout; 30 s by default there). */
  stopTimeoutMs?: number;
}

export async function startFakeEcs(options: FakeEcsOptions) {
  const region = options.region ?? "eu-west-1";
  const clusters = new Map(
    (options.clusters ?? [{ name: "default", capacityProviders: ["FARGATE", "FARGATE_SPOT"] }]).map((c) => [
      c.name,
      c,
    ]),
  );
  const definitions = new Map(options.taskDefinitions.map((d) => [d.name, d]));
  const tasks = new Map<string, FakeTask>();
  const startedPerDefinition = new Map<string, number>();
  /** RunTask clientToken -> the task it started (the call is idempotent). */
  const byClientToken = new Map<string, FakeTask>();
  const violations: string[] = [];
  const requests: { operation: string; status: number; errorType?: string; signed: boolean }[] = [];
  const failures: Partial<Record<Operation, FakeEcsFailure[]>> = {};
  /** Calls handled at once but answered only later (an answer lost on its way, a caller that died). */
  const delays: Partial<Record<Operation, number[]>> = {};
  const stopTimeoutMs = options.stopTimeoutMs ?? 2_000;
  mkdirSync(options.logDir, { recursive: true });

  const clusterArn = (name: string) => `arn:aws:ecs:${region}:${ACCOUNT}:cluster/${name}`;
  const clusterOf = (value: unknown) => {
    const name = typeof value === "string" ? (value.split("/").at(-1) ?? value) : "default";
    if (!clusters.has(name)) throw new EcsError("ClusterNotFoundException", "Cluster not found.");
    return name;
  };

  function describe(task: FakeTask) {
    return {
      taskArn: task.taskArn,
      clusterArn: task.clusterArn,
      taskDefinitionArn: task.taskDefinitionArn,
      lastStatus: task.lastStatus,
      desiredStatus: task.desiredStatus,
      ...(task.launchType ? { launchType: task.launchType } : {}),
      ...(task.capacityProviderName ? { capacityProviderName: task.capacityProviderName } : {}),
      createdAt: task.createdAt / 1000,
      ...(task.startedAt ? { startedAt: task.startedAt / 1000 } : {}),
      ...(task.stoppedAt ? { stoppedAt: task.stoppedAt / 1000 } : {}),
      ...(task.stoppedReason ? { stoppedReason: task.stoppedReason } : {}),
      ...(task.stopCode ? { stopCode: task.stopCode } : {}),
      overrides: task.request.overrides ?? {},
      tags: task.request.tags ?? [],
      containers: [
        {
          name: definitions.get(task.taskDefinitionArn.split("/").at(-1)!)?.containerName,
          lastStatus: task.lastStatus,
          ...(task.exitCode !== undefined ? { exitCode: task.exitCode } : {}),
        },
      ],
    };
  }

  function stop(task: FakeTask, reason: string, stopCode: string): void {
    if (task.lastStatus === "STOPPED" || task.desiredStatus === "STOPPED") return;
    task.desiredStatus = "STOPPED";
    task.stoppedReason = reason;
    task.stopCode = stopCode;
    const child = task.process;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      }, stopTimeoutMs).unref();
    } else {
      task.lastStatus = "STOPPED";
      task.stoppedAt = Date.now();
    }
  }

  function start(task: FakeTask, definition: FakeTaskDefinition, command: string[]): void {
    const behaviour = definition.behaviour ?? { kind: "hang" };
    if (behaviour.kind === "fail-to-start") {
      setTimeout(() => {
        if (task.lastStatus === "STOPPED") return;
        task.lastStatus = "STOPPED";
        task.desiredStatus = "STOPPED";
        task.stoppedAt = Date.now();
        task.stoppedReason = behaviour.stoppedReason;
        task.stopCode = "TaskFailedToStart";
      }, behaviour.afterMs).unref();
      return;
    }
    const started = (startedPerDefinition.get(definition.name) ?? 0) + 1;
    startedPerDefinition.set(definition.name, started);
    const hangs = behaviour.kind === "hang" || started <= (behaviour.hangFirst ?? 0);
    const argv = hangs
      ? [process.execPath, "-e", "setInterval(() => {}, 1000)", "--", ...command]
      : [...behaviour.entrypoint, ...command];
    task.argv = argv;
    const log = openSync(task.logPath, "a");
    const child = spawn(argv[0]!, argv.slice(1), { env: task.env, stdio: ["ignore", log, log] });
    closeSync(log);
    task.process = child;
    task.lastStatus = "RUNNING";
    task.startedAt = Date.now();
    child.once("exit", (code, signal) => {
      task.lastStatus = "STOPPED";
      task.desiredStatus = "STOPPED";
      task.stoppedAt = Date.now();
      task.exitCode = code ?? (signal === "SIGKILL" ? 137 : 143);
      if (task.stoppedReason === undefined) {
        task.stoppedReason = "Essential container in task exited";
        task.stopCode = "EssentialContainerExited";
      }
    });
  }

  function runTask(body: Record<string, unknown>) {
    const cluster = clusterOf(body.cluster);
    const definitionName = body.taskDefinition;
    if (typeof definitionName !== "string" || definitionName === "")
      throw new EcsError("InvalidParameterException", "taskDefinition can not be blank.");
    const definition = definitions.get(definitionName.split("/").at(-1)!);
    if (definition === undefined) throw new EcsError("ClientException", "Unable to find task definition.");
    const count = body.count ?? 1;
    if (typeof count !== "number" || count < 1 || count > 10)
      throw new EcsError("InvalidParameterException", "count must be between 1 and 10.");
    const strategy = body.capacityProviderStrategy as
      | { capacityProvider?: string; weight?: number }[]
      | undefined;
    if (body.launchType !== undefined && strategy !== undefined)
      throw new EcsError(
        "InvalidParameterException",
        "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.",
      );
    for (const item of strategy ?? []) {
      if (!item.capacityProvider)
        throw new EcsError("InvalidParameterException", "capacityProvider can not be blank.");
      if (!clusters.get(cluster)!.capacityProviders.includes(item.capacityProvider))
        throw new EcsError(
          "InvalidParameterException",
          `The specified capacity provider ${item.capacityProvider} is not associated with the cluster.`,
        );
    }
    if ((definition.networkMode ?? "awsvpc") === "awsvpc") {
      const vpc = (body.networkConfiguration as { awsvpcConfiguration?: Record<string, unknown> } | undefined)
        ?.awsvpcConfiguration;
      if (vpc === undefined)
        throw new EcsError(
          "InvalidParameterException",
          "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        );
      const subnets = vpc.subnets as unknown[] | undefined;
      if (!Array.isArray(subnets) || subnets.length < 1 || subnets.length > 16)
        throw new EcsError(
          "InvalidParameterException",
          "subnets can not be empty and can have at most 16 items.",
        );
      if (Array.isArray(vpc.securityGroups) && vpc.securityGroups.length > 5)
        throw new EcsError("InvalidParameterException", "securityGroups can have at most 5 items.");
      if (vpc.assignPublicIp !== undefined && !["ENABLED", "DISABLED"].includes(vpc.assignPublicIp as string))
        throw new EcsError("InvalidParameterException", "assignPublicIp must be ENABLED or DISABLED.");
    }
    const overrides = (body.overrides ?? {}) as {
      containerOverrides?: {
        name?: string;
        command?: string[];
        environment?: { name: string; value: string }[];
      }[];
    };
    if (JSON.stringify(overrides.containerOverrides ?? []).length > MAX_OVERRIDE_CHARS)
      throw new EcsError(
        "InvalidParameterException",
        `Container Overrides length must be at most ${MAX_OVERRIDE_CHARS}`,
      );
    for (const override of overrides.containerOverrides ?? []) {
      if (override.name !== definition.containerName)
        throw new EcsError(
          "InvalidParameterException",
          `Override for container named ${override.name} is not a container in the TaskDefinition.`,
        );
    }
    const tags = (body.tags ?? []) as { key?: string; value?: string }[];
    if (tags.length > 50) throw new EcsError("InvalidParameterException", "Tags can have at most 50 items.");
    for (const tag of tags) {
      if (!tag.key || tag.key.length > 128 || (tag.value ?? "").length > 256)
        throw new EcsError(
          "InvalidParameterException",
          "Tag keys must be 1-128 characters, values at most 256.",
        );
      if (tag.key.toLowerCase().startsWith("aws:"))
        throw new EcsError("InvalidParameterException", "Tag keys beginning with aws: are reserved.");
    }
    const token = body.clientToken;
    if (typeof token === "string") {
      if (token.length > 64)
        throw new EcsError("InvalidParameterException", "clientToken can have at most 64 characters.");
      const earlier = byClientToken.get(token);
      if (earlier) return { tasks: [describe(earlier)], failures: [] };
    }
    const override = overrides.containerOverrides?.[0];
    const created: FakeTask[] = [];
    for (let i = 0; i < count; i++) {
      const id = randomUUID().replaceAll("-", "");
      const spot = strategy?.some((s) => s.capacityProvider === "FARGATE_SPOT" && (s.weight ?? 0) > 0);
      const task: FakeTask = {
        taskArn: `arn:aws:ecs:${region}:${ACCOUNT}:task/${cluster}/${id}`,
        clusterArn: clusterArn(cluster),
        taskDefinitionArn: `arn:aws:ecs:${region}:${ACCOUNT}:task-definition/${definition.name}`,
        lastStatus: "PROVISIONING",
        desiredStatus: "RUNNING",
        ...(body.launchType ? { launchType: body.launchType as string } : { launchType: "FARGATE" }),
        ...(strategy ? { capacityProviderName: spot ? "FARGATE_SPOT" : strategy[0]?.capacityProvider } : {}),
        request: body,
        argv: [],
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          HOME: process.env.HOME ?? "/tmp",
          ECS_CONTAINER_METADATA_URI_V4: `http://127.0.0.1:9/v4/${id}`,
          AGENT_CLOUDWATCH: "off",
          ...definition.environment,
          ...Object.fromEntries((override?.environment ?? []).map((e) => [e.name, e.value])),
        },
        createdAt: Date.now(),
        logPath: join(options.logDir, `${id}.log`),
      };
      tasks.set(task.taskArn, task);
      if (typeof token === "string") byClientToken.set(token, task);
      start(task, definition, override?.command ?? []);
      created.push(task);
    }
    return { tasks: created.map(describe), failures: [] };
  }

  function describeTasks(body: Record<string, unknown>) {
    clusterOf(body.cluster);
    const arns = body.tasks;
    if (!Array.isArray(arns) || arns.length === 0 || arns.length > 100)
      throw new EcsError("InvalidParameterException", "Tasks must have between 1 and 100 items.");
    const found = arns.flatMap((arn) => (tasks.has(arn) ? [describe(tasks.get(arn)!)] : []));
    const missing = arns.filter((arn) => !tasks.has(arn)).map((arn) => ({ arn, reason: "MISSING" }));
    return { tasks: found, failures: missing };
  }

  function stopTask(body: Record<string, unknown>) {
    clusterOf(body.cluster);
    if (typeof body.task !== "string" || body.task === "")
      throw new EcsError("InvalidParameterException", "task can not be blank.");
    if (typeof body.reason === "string" && body.reason.length > 255)
      throw new EcsError("InvalidParameterException", "reason can have at most 255 characters.");
    const task = tasks.get(body.task);
    if (task === undefined)
      throw new EcsError("InvalidParameterException", "The referenced task was not found.");
    stop(task, (body.reason as string | undefined) ?? "Task stopped by user", "UserInitiated");
    return { task: describe(task) };
  }

  const handlers: Record<Operation, (body: Record<string, unknown>) => unknown> = {
    RunTask: runTask,
    DescribeTasks: describeTasks,
    StopTask: stopTask,
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const target = String(req.headers["x-amz-target"] ?? "");
    const operation = target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : "";
    const signed =
      typeof req.headers.authorization === "string" && req.headers.authorization.startsWith("AWS4-");
    const answer = (status: number, body: unknown, errorType?: string) => {
      requests.push({ operation, status, signed, ...(errorType ? { errorType } : {}) });
      res.writeHead(status, {
        "Content-Type": "application/x-amz-json-1.1",
        "x-amzn-RequestId": randomUUID(),
      });
      res.end(JSON.stringify(body));
    };
    try {
      if (!(operation in handlers))
        throw new EcsError("UnknownOperationException", `The operation ${operation} is not served here.`);
      const failure = failures[operation as Operation]?.shift();
      if (failure === "ThrottlingException") throw new EcsError("ThrottlingException", "Rate exceeded");
      if (failure === "ServerException") throw new EcsError("ServerException", "Internal failure.", 500);
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Record<string, unknown>;
      const result = handlers[operation as Operation](body);
      const delayMs = delays[operation as Operation]?.shift();
      if (delayMs !== undefined) await new Promise((resolve) => setTimeout(resolve, delayMs));
      if (res.destroyed) return;
      answer(200, result);
    } catch (error) {
      const ecsError =
        error instanceof EcsError ? error : new EcsError("ServerException", (error as Error).message, 500);
      if (ecsError.status === 400 && !["ThrottlingException"].includes(ecsError.type))
        violations.push(`${operation}: ${ecsError.type}: ${ecsError.message}`);
      answer(ecsError.status, { __type: ecsError.type, message: ecsError.message }, ecsError.type);
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    region,
    tasks,
    requests,
    violations,
    /** The next `count` calls of `operation` fail with `failure`. */
    failNext(operation: Operation, failure: FakeEcsFailure, count = 1) {
      failures[operation] = [...(failures[operation] ?? []), ...Array<FakeEcsFailure>(count).fill(failure)];
    },
    /** The next `count` calls of `operation` are handled at once (a task started) but answered `delayMs` later. */
    answerLater(operation: Operation, delayMs: number, count = 1) {
      delays[operation] = [...(delays[operation] ?? []), ...Array<number>(count).fill(delayMs)];
    },
    /** A Fargate Spot interruption of a running task: SIGTERM now, as AWS gives its two-minute warning. */
    interrupt(taskArn: string) {
      const task = tasks.get(taskArn);
      if (task === undefined) throw new Error(`no task ${taskArn}`);
      if (task.capacityProviderName !== "FARGATE_SPOT")
        throw new Error(`task ${taskArn} is not on FARGATE_SPOT`);
      stop(task, "Your Spot Task was interrupted.", "SpotInterruption");
    },
    async close() {
      for (const task of tasks.values()) {
        const child = task.process;
        if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      }
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export type FakeEcs = Awaited<ReturnType<typeof startFakeEcs>>;

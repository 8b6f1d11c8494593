import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../support/harness.ts";

/** images/ecs-task-definition.json and the role policies in docs/: consistent with each other and with the agent. */
interface ContainerDefinition {
  name: string;
  image: string;
  user?: string;
  stopTimeout?: number;
  command?: string[];
  environment?: { name: string; value: string }[];
  secrets?: unknown[];
  linuxParameters?: { initProcessEnabled?: boolean };
  logConfiguration?: { logDriver: string; options: Record<string, string> };
}
interface TaskDefinition {
  family: string;
  requiresCompatibilities: string[];
  networkMode: string;
  cpu: string;
  memory: string;
  ephemeralStorage?: { sizeInGiB: number };
  executionRoleArn: string;
  taskRoleArn: string;
  containerDefinitions: ContainerDefinition[];
}
interface Policy {
  Statement: { Effect: string; Action: string | string[]; Resource: string | string[] }[];
}

const read = <T>(path: string) => JSON.parse(readFileSync(join(ROOT, path), "utf8")) as T;
const task = read<TaskDefinition>("images/ecs-task-definition.json");
const container = task.containerDefinitions[0]!;
const env = Object.fromEntries((container.environment ?? []).map((e) => [e.name, e.value]));
const list = (value: string | string[]) => (Array.isArray(value) ? value : [value]);

/** Fargate's CPU units -> the memory sizes (MiB) it accepts. */
const FARGATE_MEMORY: Record<string, (mib: number) => boolean> = {
  "256": (m) => [512, 1024, 2048].includes(m),
  "512": (m) => m >= 1024 && m <= 4096 && m % 1024 === 0,
  "1024": (m) => m >= 2048 && m <= 8192 && m % 1024 === 0,
  "2048": (m) => m >= 4096 && m <= 16384 && m % 1024 === 0,
  "4096": (m) => m >= 8192 && m <= 30720 && m % 1024 === 0,
  "8192": (m) => m >= 16384 && m <= 61440 && m % 4096 === 0,
  "16384": (m) => m >= 32768 && m <= 122880 && m % 8192 === 0,
};

describe("images/ecs-task-definition.json", () => {
  it("is a Fargate task: awsvpc, a valid cpu/memory pair, ephemeral storage within 21-200 GiB", () => {
    expect(task.requiresCompatibilities).toEqual(["FARGATE"]);
    expect(task.networkMode).toBe("awsvpc");
    expect(FARGATE_MEMORY[task.cpu]?.(Number(task.memory)), `${task.cpu}/${task.memory}`).toBe(true);
    expect(task.ephemeralStorage?.sizeInGiB).toBeGreaterThanOrEqual(21);
    expect(task.ephemeralStorage?.sizeInGiB).toBeLessThanOrEqual(200);
    expect(task.containerDefinitions).toHaveLength(1);
  });

  it("gives the agent time to stop a job gracefully: stopTimeout covers grace, drain and the last-resort timer, within Fargate's 120 s", () => {
    const graceMs = Number(env.AGENT_GRACE_MS ?? 10_000);
    const drainMs = Number(env.AGENT_DRAIN_MS ?? 2_000);
    // The entrypoint exits at the latest grace + drain + 5 s after SIGTERM (README, Signals).
    const lastResortMs = graceMs + drainMs + 5_000;
    expect(container.stopTimeout).toBeLessThanOrEqual(120);
    expect((container.stopTimeout ?? 30) * 1000).toBeGreaterThanOrEqual(lastResortMs + 10_000);
  });

  it("reaps orphans with tini, which the image's entrypoint starts; not with ECS's init, which would hold the secret", () => {
    const dockerfile = readFileSync(join(ROOT, "images/Dockerfile"), "utf8");
    expect(dockerfile).toMatch(/^ENTRYPOINT \["\/usr\/local\/bin\/ephemeral-agent"\]$/m);
    expect(dockerfile).toMatch(
      /^COPY --chmod=0755 images\/entrypoint.sh \/usr\/local\/bin\/ephemeral-agent$/m,
    );
    const entrypoint = readFileSync(join(ROOT, "images/entrypoint.sh"), "utf8");
    expect(entrypoint).toMatch(/^AGENT_LAUNCH_FD=\$launch_fd exec tini -s -- node /m);
    expect(entrypoint).toMatch(/^ {2}exec tini -s -- node "\$dist\/lambda\/bootstrap.js"$/m);
    // ECS's init would be started with the command override (the secret) and its environment.
    expect(container.linuxParameters?.initProcessEnabled).not.toBe(true);
  });

  it("leaves the command to the amazon-ecs plugin (-url URL SECRET NAME) and holds no secret", () => {
    expect(container.command).toBeUndefined();
    expect(container.secrets).toBeUndefined();
    for (const name of Object.keys(env)) expect(name).not.toMatch(/SECRET|TOKEN|PASSWORD|KEY/);
    expect(container.user).toBe("1000:1000");
  });

  it("sends stdout/stderr to awslogs without blocking the agent", () => {
    expect(container.logConfiguration).toMatchObject({
      logDriver: "awslogs",
      options: {
        "awslogs-group": expect.stringMatching(/^\//),
        "awslogs-region": expect.any(String),
        "awslogs-stream-prefix": expect.any(String),
        mode: "non-blocking",
      },
    });
  });
});

describe("the ECS role policies in docs/ (least privilege)", () => {
  const region = container.logConfiguration!.options["awslogs-region"]!;
  const account = /:(\d{12}):/.exec(task.executionRoleArn)![1]!;
  const repository = /\/([^:@]+)/.exec(container.image)![1]!;

  it("execution role: pull this repository's image, write the awslogs group, and nothing else", () => {
    const policy = read<Policy>("docs/ecs-execution-role-policy.json");
    const grants = policy.Statement.flatMap((s) =>
      list(s.Action).map((action) => ({ action, resources: list(s.Resource) })),
    );
    for (const statement of policy.Statement) expect(statement.Effect).toBe("Allow");
    expect(grants.map((g) => g.action).sort()).toEqual([
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetAuthorizationToken",
      "ecr:GetDownloadUrlForLayer",
      "logs:CreateLogStream",
      "logs:PutLogEvents",
    ]);
    for (const { action, resources } of grants) {
      if (action === "ecr:GetAuthorizationToken") expect(resources).toEqual(["*"]);
      else if (action.startsWith("ecr:"))
        expect(resources).toEqual([`arn:aws:ecr:${region}:${account}:repository/${repository}`]);
      else
        expect(resources).toEqual([
          `arn:aws:logs:${region}:${account}:log-group:${container.logConfiguration!.options["awslogs-group"]}:log-stream:*`,
        ]);
    }
  });

  it("task role: the CloudWatch copy of the job log in AGENT_LOG_GROUP only (the group is created beforehand)", () => {
    const policy = read<Policy>("docs/ecs-task-role-policy.json");
    expect(policy.Statement).toHaveLength(1);
    expect(policy.Statement[0]).toEqual({
      Sid: expect.any(String),
      Effect: "Allow",
      Action: ["logs:CreateLogStream", "logs:PutLogEvents"],
      Resource: `arn:aws:logs:${region}:${account}:log-group:${env.AGENT_LOG_GROUP}:log-stream:*`,
    });
  });
});

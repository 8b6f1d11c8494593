import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import * as z from "zod/mini";
import {
  type ConfigProblem,
  type Logger,
  MAX_TUNABLE_MS,
  validateInput,
  zodProblems,
} from "../agent-core/index.ts";
import { ControllerApiError } from "./errors.ts";
import { DURATION_FORMS, durationMs, MAX_INFRASTRUCTURE_RETRIES, nestingDepth } from "./job-spec.ts";
import { loadEcsSdk, loadLambdaSdk } from "./provisioners/aws-sdk.ts";
import { EcsProvisioner } from "./provisioners/ecs.ts";
import { LambdaProvisioner } from "./provisioners/lambda.ts";
import { LocalProvisioner } from "./provisioners/local.ts";
import type { LaunchTemplate } from "./provisioners/provisioner.ts";

/**
 * A duration of the controller's own timers: 1 ms to one day (the agent's tunables' bound). Node
 * fires a timer of 2^31 ms or more at once, so `resumeWindow: 720h` would fail a dropped agent's
 * job at once; 0 would stop every launched agent at once, or poll ECS in a tight loop.
 */
const durationSchema = z
  .pipe(
    z.union(
      [
        z.int().check(z.nonnegative()),
        z.string().check(z.regex(/^\d+(\.\d+)?\s*(ms|s|m|h)$/, "must look like 500ms, 30s, 5m or 1h")),
      ],
      { error: DURATION_FORMS },
    ),
    z.transform((value) => durationMs(value)),
  )
  .check(
    z.refine((ms) => ms >= 1, "must be at least 1 ms"),
    // Worded when an issue occurs: a process's first toLocaleString loads ICU's number formats (about 12 ms).
    z.refine((ms) => ms <= MAX_TUNABLE_MS, {
      error: () => `must be at most ${MAX_TUNABLE_MS.toLocaleString("en-US")} ms (24h)`,
    }),
  );

const BYTE_UNITS = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 } as const;
const bytesSchema = z.pipe(
  z.union(
    [
      z.int().check(z.positive()),
      z
        .string()
        .check(z.regex(/^\d+\s*(B|KiB|MiB|GiB)$/, "must be a number of bytes or look like 512MiB or 1GiB")),
    ],
    { error: "must be a whole number of bytes or look like 512MiB or 1GiB" },
  ),
  z.transform((value) => {
    if (typeof value === "number") return value;
    const [, count, unit] = /^(\d+)\s*(B|KiB|MiB|GiB)$/.exec(value)!;
    return Number(count) * BYTE_UNITS[unit as keyof typeof BYTE_UNITS];
  }),
);

const nameSchema = z
  .string()
  .check(z.regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "must be 1-64 letters, digits, '_', '.', '-'"));
const labelSchema = z.string().check(z.minLength(1), z.maxLength(100));

const awsCloudSchema = z.strictObject({
  name: nameSchema,
  type: z.literal("aws"),
  region: z.string().check(z.regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, "must be an AWS region such as eu-west-1")),
  /** Endpoints other than AWS's (VPC endpoints, or loopback fakes in tests). */
  endpoints: z.optional(z.strictObject({ ecs: z.optional(z.url()), lambda: z.optional(z.url()) })),
  /** Attempts per AWS call, retries of throttling and 5xx answers included (SDK standard retry). */
  maxAttempts: z._default(z.int().check(z.gte(1), z.lte(20)), 5),
});

const localCloudSchema = z.strictObject({
  name: nameSchema,
  type: z.literal("local"),
  /** The command that starts an agent; default: the container entrypoint bundle beside the controller. */
  command: z.optional(z.array(z.string().check(z.minLength(1))).check(z.minLength(1))),
  /** Environment added for the agents (tunables such as AGENT_GRACE_MS). */
  env: z.optional(z.record(z.string().check(z.regex(/^[A-Za-z_][A-Za-z0-9_]*$/)), z.string())),
});

const nonEmpty = () => z.string().check(z.minLength(1));

const ecsSchema = z
  .strictObject({
    cluster: nonEmpty(),
    taskDefinition: nonEmpty(),
    container: nonEmpty(),
    capacityProvider: z.optional(nonEmpty()),
    launchType: z.optional(z.enum(["FARGATE", "EC2", "EXTERNAL"])),
    subnets: z.optional(z.array(nonEmpty()).check(z.minLength(1), z.maxLength(16))),
    securityGroups: z.optional(z.array(nonEmpty()).check(z.maxLength(5))),
    assignPublicIp: z._default(z.boolean(), false),
    secretIn: z._default(z.enum(["environment", "command"]), "environment"),
    tags: z.optional(
      z.record(z.string().check(z.minLength(1), z.maxLength(128)), z.string().check(z.maxLength(256))),
    ),
    /** How often the controller asks ECS about the tasks it watches. */
    pollInterval: z._default(
      durationSchema.check(
        z.refine((ms) => ms >= 100, "must be at least 100 ms (one DescribeTasks per interval)"),
      ),
      5_000,
    ),
  })
  .check(
    z.refine((ecs) => !(ecs.capacityProvider && ecs.launchType), {
      message: "give either `capacityProvider` or `launchType`, not both",
    }),
  );

const lambdaSchema = z.strictObject({
  function: z.string().check(z.minLength(1), z.maxLength(170)),
  qualifier: z.optional(
    z.string().check(z.regex(/^(\$LATEST|[A-Za-z0-9_-]{1,128})$/, "must be a version or an alias")),
  ),
});

const templateSchema = z.strictObject({
  name: nameSchema,
  cloud: nameSchema,
  /** The labels its agents carry; it serves a job whose labels are all here. Omitted: every job. */
  labels: z.optional(z.array(labelSchema).check(z.maxLength(100))),
  connectTimeout: z.optional(durationSchema),
  /** A job whose attempt here ends with reason `deadline` moves once to this label. */
  overflowLabel: z.optional(labelSchema),
  ecs: z.optional(ecsSchema),
  lambda: z.optional(lambdaSchema),
});

/** The controller config file (YAML or JSON): see docs/controller.md. */
export const controllerConfigSchema = z.strictObject({
  /** The URL agents are given to reach the controller (default: the URL it listens on). */
  url: z.optional(z.url()),
  listen: z.optional(
    z.strictObject({
      host: z.optional(z.string().check(z.regex(/^\S+$/, "must be a host name or an IP address"))),
      port: z.optional(z.int().check(z.gte(0), z.lte(65_535))),
      /** Names a loopback controller answers to besides loopback ones and `url`'s (a reverse proxy's). */
      allowedHosts: z.optional(
        z
          .array(
            z
              .string()
              .check(
                z.regex(
                  /^[A-Za-z0-9.-]+$|^\[[0-9A-Fa-f:.]+\]$/,
                  "must be a host name or an address, without a port",
                ),
              ),
          )
          .check(z.maxLength(100)),
      ),
    }),
  ),
  dataDir: z.optional(nonEmpty()),
  retry: z.optional(
    z.strictObject({ infrastructure: z.int().check(z.gte(0), z.lte(MAX_INFRASTRUCTURE_RETRIES)) }),
  ),
  maxLogBytes: z.optional(bytesSchema),
  /** Per-job artifact cap: a job whose artifacts are larger fails `artifact-limit`. */
  maxArtifactBytes: z.optional(bytesSchema),
  /** Largest workspace archive `POST /api/v1/workspaces` accepts. */
  maxUploadBytes: z.optional(bytesSchema),
  /** Branch patterns (globs) whose jobs' warm caches are `protected`. */
  protectedBranches: z.optional(
    z.array(z.string().check(z.minLength(1), z.maxLength(300))).check(z.maxLength(100)),
  ),
  connectTimeout: z.optional(durationSchema),
  resumeWindow: z.optional(durationSchema),
  clouds: z._default(z.array(z.discriminatedUnion("type", [awsCloudSchema, localCloudSchema])), []),
  templates: z._default(z.array(templateSchema), []),
});

/**
 * The rules between fields (names unique, a template's cloud exists and suits its platform, an
 * overflow label is served elsewhere), checked on the raw input so that they are reported
 * together with the schema's own problems.
 */
function crossProblems(input: unknown): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const config = (input ?? {}) as { clouds?: unknown; templates?: unknown };
  const clouds = Array.isArray(config.clouds) ? (config.clouds as { name?: unknown; type?: unknown }[]) : [];
  const templates = Array.isArray(config.templates) ? (config.templates as Record<string, unknown>[]) : [];
  const cloudNames = clouds.map((cloud) => cloud?.name);
  if (new Set(cloudNames).size !== cloudNames.length)
    problems.push({ field: "clouds", message: "cloud names must be unique" });
  const templateNames = templates.map((template) => template?.name);
  if (new Set(templateNames).size !== templateNames.length)
    problems.push({ field: "templates", message: "template names must be unique" });
  templates.forEach((template, index) => {
    if (template === null || typeof template !== "object") return;
    const at = (field: string) => `templates.${index}.${field}`;
    const cloud = clouds.find((c) => c?.name === template.cloud);
    if (cloud === undefined) {
      problems.push({ field: at("cloud"), message: `no cloud named ${JSON.stringify(template.cloud)}` });
      return;
    }
    const platforms = [template.ecs && "ecs", template.lambda && "lambda"].filter(Boolean);
    if (cloud.type === "aws" && platforms.length !== 1)
      problems.push({
        field: at("cloud"),
        message: "an aws template needs exactly one of `ecs` and `lambda`",
      });
    if (cloud.type === "local" && platforms.length > 0)
      problems.push({ field: at("cloud"), message: "a local template takes no `ecs` or `lambda`" });
    const ecs = template.ecs as { subnets?: unknown; launchType?: unknown } | undefined;
    if (ecs && typeof ecs === "object" && ecs.subnets === undefined && ecs.launchType !== "EC2")
      problems.push({ field: `${at("ecs")}.subnets`, message: "Fargate (awsvpc) needs `subnets`" });
    const overflow = template.overflowLabel;
    if (typeof overflow === "string") {
      const served = templates.some(
        (other) =>
          other !== template &&
          other !== null &&
          typeof other === "object" &&
          (other.labels === undefined || (Array.isArray(other.labels) && other.labels.includes(overflow))),
      );
      if (!served)
        problems.push({
          field: at("overflowLabel"),
          message: `no other template serves the label ${JSON.stringify(overflow)}`,
        });
    }
  });
  return problems;
}

export type ControllerConfig = z.output<typeof controllerConfigSchema>;

/** Validates a parsed config; throws ControllerApiError `CONTROLLER_ERR_CONFIG` listing every problem. */
export function parseControllerConfig(input: unknown, source = "the controller config"): ControllerConfig {
  if (nestingDepth(input, 16) > 16)
    throw configError(source, [{ field: "(config)", message: "Expected at most 16 levels of nesting" }]);
  const parsed = validateInput(controllerConfigSchema, input ?? {}, { reportInput: true });
  const problems = [...(parsed.success ? [] : zodProblems(parsed.error, new Set())), ...crossProblems(input)];
  if (problems.length > 0 || !parsed.success) throw configError(source, problems);
  return parsed.data;
}

/** Reads and validates a config file (YAML, or JSON for `.json`). */
export async function readControllerConfig(path: string): Promise<ControllerConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new ControllerApiError(
      0,
      "CONTROLLER_ERR_CONFIG",
      `cannot read ${path}: ${(error as Error).message}`,
    );
  }
  let input: unknown;
  try {
    input = path.endsWith(".json") ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new ControllerApiError(
      0,
      "CONTROLLER_ERR_CONFIG",
      `${path} is not valid: ${(error as Error).message}`,
    );
  }
  return parseControllerConfig(input, path);
}

function configError(source: string, problems: ConfigProblem[]): ControllerApiError {
  const lines = problems.map((p) => `  - ${p.field}: ${p.message}`).join("\n");
  return new ControllerApiError(
    0,
    "CONTROLLER_ERR_CONFIG",
    `${source} is invalid (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n${lines}`,
    problems,
  );
}

export interface TemplateBuildOptions {
  logger: Logger;
  /** The agent command for local clouds without their own `command`. */
  defaultLocalCommand: () => string[];
  /** Where local agents write their diagnostics. */
  agentLogDir: string;
  /** Credentials for the AWS clients; default: the SDK's provider chain (environment, role). */
  awsCredentials?: { accessKeyId: string; secretAccessKey: string };
}

/**
 * The launch templates of a config, each with its provisioner: one AWS SDK client per cloud
 * and service (loaded only when a template uses it), one provisioner per template.
 */
export async function buildTemplates(
  config: ControllerConfig,
  options: TemplateBuildOptions,
): Promise<LaunchTemplate[]> {
  const ecsClients = new Map<string, import("@aws-sdk/client-ecs").ECSClient>();
  const lambdaClients = new Map<string, import("@aws-sdk/client-lambda").LambdaClient>();
  const templates: LaunchTemplate[] = [];
  for (const template of config.templates) {
    const cloud = config.clouds.find((c) => c.name === template.cloud)!;
    const common = {
      name: template.name,
      ...(template.labels ? { labels: template.labels } : {}),
      ...(template.connectTimeout !== undefined ? { connectTimeoutMs: template.connectTimeout } : {}),
      ...(template.overflowLabel ? { overflowLabel: template.overflowLabel } : {}),
    };
    if (cloud.type === "local") {
      templates.push({
        ...common,
        provisioner: new LocalProvisioner({
          command: cloud.command ?? options.defaultLocalCommand(),
          logDir: options.agentLogDir,
          ...(template.labels ? { labels: template.labels } : {}),
          ...(cloud.env ? { env: cloud.env } : {}),
        }),
      });
      continue;
    }
    const clientConfig = {
      region: cloud.region,
      maxAttempts: cloud.maxAttempts,
      retryMode: "standard",
      ...(options.awsCredentials ? { credentials: options.awsCredentials } : {}),
    };
    if (template.ecs) {
      let client = ecsClients.get(cloud.name);
      if (client === undefined) {
        const { ECSClient } = await loadEcsSdk();
        client = new ECSClient({
          ...clientConfig,
          ...(cloud.endpoints?.ecs ? { endpoint: cloud.endpoints.ecs } : {}),
        });
        ecsClients.set(cloud.name, client);
      }
      const { pollInterval, ...ecs } = template.ecs;
      templates.push({
        ...common,
        provisioner: new EcsProvisioner(
          client,
          { ...ecs, template: template.name },
          { logger: options.logger, pollIntervalMs: pollInterval },
        ),
      });
    } else if (template.lambda) {
      let client = lambdaClients.get(cloud.name);
      if (client === undefined) {
        const { LambdaClient } = await loadLambdaSdk();
        client = new LambdaClient({
          ...clientConfig,
          ...(cloud.endpoints?.lambda ? { endpoint: cloud.endpoints.lambda } : {}),
        });
        lambdaClients.set(cloud.name, client);
      }
      templates.push({
        ...common,
        provisioner: new LambdaProvisioner(client, template.lambda, { logger: options.logger }),
      });
    }
  }
  return templates;
}

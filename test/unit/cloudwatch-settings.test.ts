import { describe, expect, it } from "vitest";
import { ConfigError } from "../../agent-core/errors.ts";
import {
  cloudWatchSettings,
  consoleEncode,
  consoleUrl,
  sanitizeStreamName,
} from "../../agent-core/logs/cloudwatch/index.ts";

const lambdaEnv = { AWS_LAMBDA_FUNCTION_NAME: "jnlp-agent-node", AWS_REGION: "eu-west-1" };
const ecsEnv = {
  ECS_CONTAINER_METADATA_URI_V4: "http://169.254.170.2/v4/abc",
  AWS_DEFAULT_REGION: "us-east-2",
};

function problemsOf(fn: () => unknown): { field: string; message: string }[] {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe("AGENT_ERR_CONFIG");
    return (error as ConfigError).problems;
  }
  throw new Error("expected a ConfigError");
}

describe("cloudWatchSettings", () => {
  it("is on by default on Lambda: group per runtime, stream per agent, console URL", () => {
    expect(cloudWatchSettings(lambdaEnv, "lambda", "build.lambda-abcdef")).toEqual({
      enabled: true,
      reason: "lambda",
      region: "eu-west-1",
      logGroupName: "/ephemeral-agent/lambda",
      logStreamName: "build.lambda-abcdef",
      flushIntervalMs: 1000,
      maxPendingBytes: 8_388_608,
      consoleUrl:
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups/log-group/$252Fephemeral-agent$252Flambda/log-events/build.lambda-abcdef",
    });
  });

  it("is on by default on ECS, with AWS_DEFAULT_REGION", () => {
    const settings = cloudWatchSettings(ecsEnv, "ecs", "ecs-agent-1");
    expect(settings).toMatchObject({
      enabled: true,
      reason: "ecs",
      region: "us-east-2",
      logGroupName: "/ephemeral-agent/ecs",
    });
  });

  it("is off locally, and needs no region then", () => {
    expect(cloudWatchSettings({}, "local", "dev")).toMatchObject({
      enabled: false,
      reason: "not-on-aws",
      region: null,
      consoleUrl: null,
      logGroupName: "/ephemeral-agent/local",
      logStreamName: "dev",
    });
  });

  it("AGENT_CLOUDWATCH overrides the detection both ways (case and spaces ignored)", () => {
    expect(cloudWatchSettings({ ...lambdaEnv, AGENT_CLOUDWATCH: "off" }, "lambda", "a")).toMatchObject({
      enabled: false,
      reason: "AGENT_CLOUDWATCH",
    });
    expect(
      cloudWatchSettings({ AGENT_CLOUDWATCH: " ON ", AWS_REGION: "ap-southeast-2" }, "local", "a"),
    ).toMatchObject({ enabled: true, reason: "AGENT_CLOUDWATCH", region: "ap-southeast-2" });
  });

  it("takes AGENT_LOG_GROUP, AGENT_LOG_STREAM and the tuning variables", () => {
    const settings = cloudWatchSettings(
      {
        ...lambdaEnv,
        AGENT_LOG_GROUP: "/ci/agents#2",
        AGENT_LOG_STREAM: "job [42] über",
        AGENT_CLOUDWATCH_FLUSH_MS: "250",
        AGENT_CLOUDWATCH_MAX_PENDING_BYTES: "2097152",
      },
      "lambda",
      "ignored",
    );
    expect(settings).toMatchObject({
      logGroupName: "/ci/agents#2",
      logStreamName: "job [42] über",
      flushIntervalMs: 250,
      maxPendingBytes: 2_097_152,
    });
    expect(settings.consoleUrl).toBe(
      "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups/log-group/$252Fci$252Fagents$25232/log-events/job$2520$255B42$255D$2520$25C3$25BCber",
    );
  });

  it("makes the agent's name a valid stream name", () => {
    expect(cloudWatchSettings(lambdaEnv, "lambda", "a:b*c").logStreamName).toBe("a_b_c");
    expect(sanitizeStreamName("x".repeat(600))).toHaveLength(512);
    // Never cuts a surrogate pair in two.
    const name = `${"x".repeat(511)}😀`;
    expect(sanitizeStreamName(name)).toBe("x".repeat(511));
    expect(sanitizeStreamName("")).toBe("agent");
  });

  it("reports every invalid value at once, naming its variable", () => {
    const problems = problemsOf(() =>
      cloudWatchSettings(
        {
          AGENT_CLOUDWATCH: "yes",
          AWS_REGION: "Europe",
          AGENT_LOG_GROUP: "bad group*",
          AGENT_LOG_STREAM: "a:b",
          AGENT_CLOUDWATCH_FLUSH_MS: "-5",
          AGENT_CLOUDWATCH_MAX_PENDING_BYTES: "12kb",
        },
        "lambda",
        "agent",
      ),
    );
    expect(problems.map((p) => p.field)).toEqual([
      "AGENT_CLOUDWATCH",
      "AWS_REGION",
      "AGENT_LOG_GROUP",
      "AGENT_LOG_STREAM",
      "AGENT_CLOUDWATCH_FLUSH_MS",
      "AGENT_CLOUDWATCH_MAX_PENDING_BYTES",
    ]);
    expect(problems[0]!.message).toContain("`yes`");
  });

  it("needs a region when on", () => {
    const problems = problemsOf(() => cloudWatchSettings({ AGENT_CLOUDWATCH: "on" }, "local", "a"));
    expect(problems).toEqual([expect.objectContaining({ field: "AWS_REGION" })]);
  });

  it("refuses reserved, too long and empty-after-trim names", () => {
    expect(
      problemsOf(() => cloudWatchSettings({ ...lambdaEnv, AGENT_LOG_GROUP: "aws/mine" }, "lambda", "a")),
    ).toEqual([
      expect.objectContaining({ field: "AGENT_LOG_GROUP", message: expect.stringContaining("aws/") }),
    ]);
    expect(
      problemsOf(() =>
        cloudWatchSettings({ ...lambdaEnv, AGENT_LOG_STREAM: "s".repeat(513) }, "lambda", "a"),
      ),
    ).toEqual([expect.objectContaining({ field: "AGENT_LOG_STREAM" })]);
    expect(
      problemsOf(() => cloudWatchSettings({ ...lambdaEnv, AGENT_LOG_GROUP: "g".repeat(513) }, "lambda", "a")),
    ).toEqual([expect.objectContaining({ field: "AGENT_LOG_GROUP" })]);
    // An empty value is the same as unset.
    expect(cloudWatchSettings({ ...lambdaEnv, AGENT_LOG_GROUP: "  " }, "lambda", "a").logGroupName).toBe(
      "/ephemeral-agent/lambda",
    );
  });
});

describe("consoleUrl", () => {
  it("encodes names the console's way ($25 for %)", () => {
    expect(consoleEncode("/aws/lambda/x")).toBe("$252Faws$252Flambda$252Fx");
    expect(consoleEncode("2024/01/01/[$LATEST]abc")).toBe("2024$252F01$252F01$252F$255B$2524LATEST$255Dabc");
    expect(consoleEncode("a(b)!'~")).toBe("a$2528b$2529$2521$2527$257E");
    expect(consoleEncode("plain-name_1.2")).toBe("plain-name_1.2");
  });

  it("uses each partition's console host", () => {
    expect(consoleUrl("cn-north-1", "/g", "s")).toBe(
      "https://cn-north-1.console.amazonaws.cn/cloudwatch/home?region=cn-north-1#logsV2:log-groups/log-group/$252Fg/log-events/s",
    );
    expect(consoleUrl("us-gov-west-1", "/g", "s")).toMatch(
      /^https:\/\/console\.amazonaws-us-gov\.com\/cloudwatch\/home\?region=us-gov-west-1#/,
    );
  });
});

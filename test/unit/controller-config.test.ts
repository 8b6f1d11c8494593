import { describe, expect, it } from "vitest";
import { silentLogger } from "../../agent-core/index.ts";
import { buildTemplates, parseControllerConfig } from "../../controller/config.ts";
import { ControllerApiError } from "../../controller/index.ts";
import { lambdaPayload } from "../../controller/provisioners/lambda.ts";

const aws = { name: "aws", type: "aws", region: "eu-west-1" };
const fargate = {
  name: "fargate",
  cloud: "aws",
  labels: ["fargate", "git"],
  ecs: { cluster: "ci", taskDefinition: "jnlp-agent:3", container: "agent", subnets: ["subnet-1"] },
};
const lambda = {
  name: "lambda",
  cloud: "aws",
  labels: ["lambda", "git"],
  overflowLabel: "fargate",
  connectTimeout: "60s",
  lambda: { function: "jnlp-agent-git-bash", qualifier: "live" },
};

function problemsOf(input: unknown): { field: string; message: string }[] {
  try {
    parseControllerConfig(input);
  } catch (error) {
    expect(error).toBeInstanceOf(ControllerApiError);
    expect((error as ControllerApiError).code).toBe("CONTROLLER_ERR_CONFIG");
    return (error as ControllerApiError).problems;
  }
  throw new Error("expected the config to be refused");
}

describe("the controller config file", () => {
  it("reads clouds, templates, durations and sizes, with defaults", () => {
    const config = parseControllerConfig({
      url: "https://ci.example.com/",
      maxLogBytes: "512MiB",
      maxArtifactBytes: "2GiB",
      protectedBranches: ["main", "release/*"],
      retry: { infrastructure: 1 },
      resumeWindow: "2m",
      clouds: [aws],
      templates: [lambda, fargate],
    });
    expect(config.maxLogBytes).toBe(512 * 1024 * 1024);
    expect(config.maxArtifactBytes).toBe(2 * 1024 ** 3);
    expect(config.protectedBranches).toEqual(["main", "release/*"]);
    expect(config.resumeWindow).toBe(120_000);
    expect(config.templates[0]).toMatchObject({ connectTimeout: 60_000, overflowLabel: "fargate" });
    expect(config.templates[1]!.ecs).toMatchObject({
      secretIn: "environment",
      assignPublicIp: false,
      pollInterval: 5_000,
    });
    expect(config.clouds[0]).toMatchObject({ maxAttempts: 5 });
  });

  it("lists every problem at once, each naming its field", () => {
    const problems = problemsOf({
      maxLogBytes: "lots",
      maxArtifactBytes: -1,
      clouds: [aws, { ...aws }],
      templates: [
        { ...fargate, cloud: "nowhere" },
        { ...lambda, overflowLabel: "gpu" },
        { name: "both", cloud: "aws", labels: ["x"], ecs: fargate.ecs, lambda: lambda.lambda },
        {
          ...fargate,
          name: "spot",
          ecs: { ...fargate.ecs, capacityProvider: "FARGATE_SPOT", launchType: "FARGATE" },
        },
        { ...fargate, name: "novpc", ecs: { ...fargate.ecs, subnets: undefined } },
      ],
      bogus: true,
    });
    const fields = problems.map((p) => p.field);
    expect(fields).toEqual(
      expect.arrayContaining([
        "maxLogBytes",
        "maxArtifactBytes",
        "clouds",
        "templates.0.cloud",
        "templates.1.overflowLabel",
        "templates.2.cloud",
        "templates.3.ecs",
        "templates.4.ecs.subnets",
        "(input)",
      ]),
    );
    expect(problems.find((p) => p.field === "templates.1.overflowLabel")?.message).toMatch(
      /no other template serves the label "gpu"/,
    );
    expect(problems.find((p) => p.field === "(input)")?.message).toMatch(/bogus/);
  });

  it.each([
    ["resumeWindow", { resumeWindow: "720h" }, "resumeWindow", /at most 86,400,000 ms/],
    ["connectTimeout", { connectTimeout: 2_147_483_648 }, "connectTimeout", /at most 86,400,000 ms/],
    [
      "a template's connectTimeout",
      { templates: [{ ...fargate, connectTimeout: "25h" }] },
      "templates.0.connectTimeout",
      /at most/,
    ],
    [
      "connectTimeout of 0 (every launched agent stopped at once)",
      { connectTimeout: 0 },
      "connectTimeout",
      /at least 1 ms/,
    ],
    [
      "an ECS pollInterval of 0 (DescribeTasks in a tight loop)",
      { templates: [{ ...fargate, ecs: { ...fargate.ecs, pollInterval: 0 } }] },
      "templates.0.ecs.pollInterval",
      /at least/,
    ],
  ])("refuses %s past what a timer can hold or mean", (_what, input, field, message) => {
    const problems = problemsOf(input);
    expect(problems.find((p) => p.field === field)?.message).toMatch(message);
  });

  it("takes the names a loopback controller answers to, without ports or schemes", () => {
    const config = parseControllerConfig({
      listen: { host: "127.0.0.1", allowedHosts: ["ci.internal", "[fd00::1]"] },
    });
    expect(config.listen?.allowedHosts).toEqual(["ci.internal", "[fd00::1]"]);
    const problems = problemsOf({
      listen: { allowedHosts: ["ci.internal:8080", "https://ci.internal", ""] },
    });
    expect(problems.map((p) => p.field)).toEqual([
      "listen.allowedHosts.0",
      "listen.allowedHosts.1",
      "listen.allowedHosts.2",
    ]);
    expect(problems[0]!.message).toMatch(/without a port/);
  });

  it("refuses a config nested deeper than it could be, without describing it", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 20_000; i++) deep = [deep];
    expect(problemsOf({ templates: deep })[0]!.message).toMatch(/at most 16 levels/);
  });

  it("builds one provisioner per template, with the platform each names", async () => {
    const config = parseControllerConfig({
      clouds: [aws, { name: "here", type: "local", command: ["node", "agent.mjs"] }],
      templates: [lambda, fargate, { name: "local", cloud: "here" }],
    });
    const templates = await buildTemplates(config, {
      logger: silentLogger,
      defaultLocalCommand: () => ["unused"],
      agentLogDir: "/tmp/unused",
    });
    expect(templates.map((t) => [t.name, t.provisioner.kind, t.labels, t.overflowLabel])).toEqual([
      ["lambda", "lambda", ["lambda", "git"], "fargate"],
      ["fargate", "ecs", ["fargate", "git"], undefined],
      ["local", "local", undefined, undefined],
    ]);
  });
});

describe("the Lambda invocation payload", () => {
  it("is the AWS Lambda Cloud plugin's payload plus the mode (native: no detection request) and the labels", () => {
    expect(
      lambdaPayload({
        agentName: "job-1-abc",
        secret: "s3cret",
        controllerUrl: "https://ci.example.com/",
        labels: ["lambda", "git"],
        jobId: "job",
        attempt: 1,
      }),
    ).toEqual({
      url: "https://ci.example.com/",
      node_secret: "s3cret",
      node_name: "job-1-abc",
      mode: "native",
      labels: ["lambda", "git"],
    });
  });
});

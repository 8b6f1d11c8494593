import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, MAX_LISTED_PROBLEMS } from "../../agent-core/index.ts";
import {
  DEFAULT_DEADLINE_MARGIN_MS,
  fromLambdaEvent,
  HIDDEN_FROM_STEPS,
  type Invocation,
  type LambdaLaunch,
} from "../../lambda-handler/index.ts";

const SECRET = "f3a9c0ffee5ecret0123456789abcdef";
const NOW = 1_800_000_000_000;
const PAYLOAD = {
  url: "http://controller.example:8080/",
  node_secret: SECRET,
  node_name: "git.lambda-abcdef",
};

function launch(env: Record<string, string> = {}, remainingMs = 900_000): LambdaLaunch {
  return { remainingMs, now: NOW, env: { PATH: "/var/lang/bin:/usr/bin:/bin", ...env } };
}

/** The ConfigError a call throws (fails the test when it does not throw one). */
function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

function fields(error: ConfigError): string[] {
  return error.problems.map((p) => p.field).sort();
}

function agent(invocation: Invocation) {
  if (invocation.kind !== "agent") throw new Error(`expected an agent invocation, got ${invocation.kind}`);
  return invocation;
}

describe("fromLambdaEvent: the Jenkins plugin's payload", () => {
  it("builds a lambda agent config with the deadline, labels and a clean step environment", () => {
    const env = {
      AGENT_LABELS: "git bash",
      AWS_ACCESS_KEY_ID: "AKIAEXAMPLE",
      AWS_SECRET_ACCESS_KEY: "role-secret",
      AWS_SESSION_TOKEN: "role-token",
      AWS_LAMBDA_RUNTIME_API: "127.0.0.1:9001",
      AWS_REGION: "eu-west-1",
    };
    const invocation = agent(fromLambdaEvent(PAYLOAD, launch(env)));
    const { config } = invocation;
    expect(config).toMatchObject({
      url: PAYLOAD.url,
      secret: SECRET,
      name: PAYLOAD.node_name,
      runtime: "lambda",
      labels: ["git", "bash"],
      workDir: join(tmpdir(), "lambda-agent"),
      deadlineAt: NOW + 900_000 - DEFAULT_DEADLINE_MARGIN_MS,
    });
    expect(config.baseEnv.HOME).toBe(join(tmpdir(), "lambda-agent", "home"));
    expect(config.baseEnv.TMPDIR).toBe(join(tmpdir(), "lambda-agent", "tmp"));
    expect(config.baseEnv.AWS_REGION).toBe("eu-west-1");
    for (const hidden of HIDDEN_FROM_STEPS) expect(config.baseEnv).not.toHaveProperty(hidden);
    expect(JSON.stringify(config.baseEnv)).not.toContain(SECRET);
    expect(invocation.notes).toEqual([]);
  });

  it("takes the extras: labels (array or list) added to the function's, log level, work dir under /tmp", () => {
    const workDir = join(tmpdir(), "custom-work");
    const invocation = agent(
      fromLambdaEvent(
        { ...PAYLOAD, labels: "linux, big", log_level: "debug", work_dir: workDir },
        launch({ AGENT_LABELS: "git" }),
      ),
    );
    expect(invocation.config.labels).toEqual(["git", "linux", "big"]);
    expect(invocation.logLevel).toBe("debug");
    expect(invocation.config.workDir).toBe(workDir);
    expect(agent(fromLambdaEvent({ ...PAYLOAD, labels: ["a", "b"] }, launch())).config.labels).toEqual([
      "a",
      "b",
    ]);
  });

  it("parses an event that arrives as a JSON string, and says so", () => {
    const invocation = agent(fromLambdaEvent(JSON.stringify(PAYLOAD), launch()));
    expect(invocation.config.name).toBe(PAYLOAD.node_name);
    expect(invocation.notes).toEqual(["the event arrived as a JSON string and was parsed"]);
  });

  it("applies the deadline margin and the agent tunables from the function's environment", () => {
    const invocation = agent(
      fromLambdaEvent(
        PAYLOAD,
        launch({ AGENT_DEADLINE_MARGIN_MS: "5000", AGENT_GRACE_MS: "750", AGENT_LOG_LEVEL: "warn" }, 60_000),
      ),
    );
    expect(invocation.config.deadlineAt).toBe(NOW + 55_000);
    expect(invocation.config.graceMs).toBe(750);
    expect(invocation.logLevel).toBe("warn");
  });
});

describe("fromLambdaEvent: smoke mode", () => {
  it("accepts {smoke: true} alone, with a url, or with url and credentials", () => {
    const bare = fromLambdaEvent({ smoke: true }, launch({ AGENT_SMOKE_TOOLS: "bash,git,node" }));
    expect(bare).toMatchObject({ kind: "smoke", settings: { smokeTools: ["bash", "git", "node"] } });
    expect(bare).not.toHaveProperty("url");
    expect(fromLambdaEvent({ smoke: true, url: PAYLOAD.url }, launch())).toMatchObject({
      kind: "smoke",
      url: PAYLOAD.url,
    });
    expect(fromLambdaEvent({ ...PAYLOAD, smoke: true }, launch())).toMatchObject({
      kind: "smoke",
      name: PAYLOAD.node_name,
      secret: SECRET,
    });
  });

  it("defaults the required tools to bash and git", () => {
    expect(fromLambdaEvent({ smoke: true }, launch())).toMatchObject({
      settings: { smokeTools: ["bash", "git"] },
    });
  });

  it("rejects half credentials and a bad url", () => {
    const error = configError(() =>
      fromLambdaEvent({ smoke: true, url: "ftp://x/", node_secret: SECRET }, launch()),
    );
    expect(fields(error)).toEqual(["node_name", "url"]);
    expect(error.message).not.toContain(SECRET);
  });
});

describe("fromLambdaEvent: every malformed shape is one AGENT_ERR_CONFIG listing every problem", () => {
  const cases: { name: string; event: unknown; env?: Record<string, string>; fields: string[] }[] = [
    { name: "nothing", event: undefined, fields: ["(event)"] },
    { name: "null", event: null, fields: ["(event)"] },
    { name: "an array (a positional form)", event: [PAYLOAD.url, SECRET, "n"], fields: ["(event)"] },
    { name: "a number", event: 42, fields: ["(event)"] },
    { name: "a string that is not JSON", event: `url=${SECRET}`, fields: ["(event)"] },
    {
      name: "the plugin's unescaped payload with a quote in a value",
      event: `{"url": "http://h/", "node_secret": "${SECRET}", "node_name": "a"b.lambda-abcdef"}`,
      fields: ["(event)"],
    },
    { name: "an empty object", event: {}, fields: ["node_name", "node_secret", "url"] },
    {
      name: "wrong types",
      event: { url: 5, node_secret: 7, labels: 3, smoke: "yes" },
      fields: ["labels", "node_name", "node_secret", "smoke", "url"],
    },
    {
      name: "values that break the rules",
      event: { url: "ftp://nowhere/", node_secret: SECRET, node_name: "has space/slash", log_level: "loud" },
      fields: ["log_level", "node_name", "url"],
    },
    {
      name: "an empty secret and name",
      event: { url: PAYLOAD.url, node_secret: "", node_name: "" },
      fields: ["node_name", "node_secret"],
    },
    { name: "an unknown field", event: { ...PAYLOAD, secret: SECRET }, fields: ["secret"] },
    {
      name: "a secret of 3 characters (it could not be masked)",
      event: { ...PAYLOAD, node_secret: "q7z" },
      fields: ["node_secret"],
    },
    {
      name: "a tunable over one day (Node's timers overflow at 2^31 ms)",
      event: PAYLOAD,
      env: { AGENT_IDLE_TIMEOUT_MS: String(2 ** 31) },
      fields: ["AGENT_IDLE_TIMEOUT_MS"],
    },
    {
      name: "a work dir outside /tmp",
      event: { ...PAYLOAD, work_dir: "/var/task" },
      fields: ["work_dir"],
    },
    { name: "the work dir /tmp itself", event: { ...PAYLOAD, work_dir: tmpdir() }, fields: ["work_dir"] },
    { name: "a relative work dir", event: { ...PAYLOAD, work_dir: "agent" }, fields: ["work_dir"] },
    {
      name: "a url that carries the secret",
      event: { ...PAYLOAD, url: `nope-${SECRET}` },
      fields: ["url"],
    },
    {
      name: "bad function variables, with event problems, all at once",
      event: { url: PAYLOAD.url, node_name: "n" },
      env: {
        AGENT_DEADLINE_MARGIN_MS: "soon",
        AGENT_LOG_LEVEL: "chatty",
        AGENT_GRACE_MS: "-1",
        AGENT_FRAME_MAX_BYTES: "10",
        AGENT_EPHEMERAL_STORAGE_MB: "100",
        AGENT_SMOKE_TOOLS: "bash,rm -rf",
      },
      fields: [
        "AGENT_DEADLINE_MARGIN_MS",
        "AGENT_EPHEMERAL_STORAGE_MB",
        "AGENT_FRAME_MAX_BYTES",
        "AGENT_GRACE_MS",
        "AGENT_LOG_LEVEL",
        "AGENT_SMOKE_TOOLS",
        "node_secret",
      ],
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const error = configError(() => fromLambdaEvent(c.event, launch(c.env)));
      expect(error.code).toBe("AGENT_ERR_CONFIG");
      expect(error.message).toMatch(/^AGENT_ERR_CONFIG: /);
      expect(fields(error)).toEqual(c.fields);
      expect(error.message).not.toContain(SECRET);
      for (const problem of error.problems) expect(error.message).toContain(`- ${problem.field}: `);
    });
  }

  it("an event of 200,000 unknown fields (a 3 MB payload): the first problems listed, the rest counted, the message bounded", () => {
    const event = Object.fromEntries(Array.from({ length: 200_000 }, (_, i) => [`field${i}`, i]));
    const error = configError(() => fromLambdaEvent({ ...PAYLOAD, ...event }, launch()));
    expect(error.message).toMatch(/^AGENT_ERR_CONFIG: .*\(200000 problems\)/);
    expect(error.problems).toHaveLength(MAX_LISTED_PROBLEMS);
    expect(error.problems[0]).toMatchObject({
      field: "field0",
      message: expect.stringMatching(/^unknown field/),
    });
    expect(error.omittedProblems).toBe(200_000 - MAX_LISTED_PROBLEMS);
    expect(error.message).toContain(`- field${MAX_LISTED_PROBLEMS - 1}: unknown field`);
    expect(error.message).not.toContain(`- field${MAX_LISTED_PROBLEMS}: `);
    expect(error.message).toMatch(/\n {2}\.\.\. and 199950 more problems$/);
    expect(error.message.length).toBeLessThan(64 * 1024);
  });

  it("a deadline margin that leaves no time: names the variable and the numbers", () => {
    const error = configError(() =>
      fromLambdaEvent(PAYLOAD, launch({ AGENT_DEADLINE_MARGIN_MS: "20000" }, 15_000)),
    );
    expect(error.problems).toEqual([
      {
        field: "AGENT_DEADLINE_MARGIN_MS",
        message: expect.stringMatching(/remaining time \(15000 ms\).*AGENT_DEADLINE_MARGIN_MS \(20000 ms\)/),
      },
    ]);
  });

  it("a bad variable is an error, never a silent default", () => {
    const error = configError(() => fromLambdaEvent(PAYLOAD, launch({ AGENT_DEADLINE_MARGIN_MS: "1e3" })));
    expect(error.problems).toEqual([
      {
        field: "AGENT_DEADLINE_MARGIN_MS",
        message:
          "Expected `AGENT_DEADLINE_MARGIN_MS` to be an integer from 0 to 900000 (milliseconds), got `1e3` (string)",
      },
    ]);
  });
});

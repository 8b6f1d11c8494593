import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, ExitCode } from "../../agent-core/index.ts";
import {
  HELP_TEXT,
  type LaunchEnv,
  type LaunchPlan,
  parseLaunch,
} from "../../container-entrypoint/launch-args.ts";

const readFile = (p: string) => readFileSync(p, "utf8");

const URL = "http://jenkins.example:8080/";
const SECRET = "4f3c2b1a0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a";
const NAME = "fargate-agent-1";
const WORK_DIR = "/home/jenkins/agent";
const LABELS = ["linux", "docker"];

type AgentPlan = Extract<LaunchPlan, { kind: "agent" }>;

function agentPlan(argv: string[], env: LaunchEnv = {}): AgentPlan {
  const plan = parseLaunch(argv, env, readFile);
  if (plan.kind !== "agent") throw new Error(`expected an agent plan, got ${plan.kind}`);
  return plan;
}

function configError(argv: string[], env: LaunchEnv = {}): ConfigError {
  try {
    parseLaunch(argv, env, readFile);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

function identity(plan: AgentPlan) {
  const { url, secret, name, workDir, labels } = plan.config;
  return { url, secret, name, workDir, labels };
}

const EXPECTED = { url: URL, secret: SECRET, name: NAME, workDir: WORK_DIR, labels: LABELS };

let dir = "";
let secretFile = "";
let argsFile = "";

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "launch-args-"));
  secretFile = join(dir, "secret");
  argsFile = join(dir, "agent.args");
  await writeFile(secretFile, `  ${SECRET}\n`);
  const lines = [
    "-url",
    URL,
    "",
    "-secret",
    SECRET,
    "-name",
    NAME,
    "-workDir",
    WORK_DIR,
    "--labels",
    "linux,docker",
  ];
  await writeFile(argsFile, `${lines.join("\r\n")}\r\n\r\n`);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("launch forms", () => {
  const forms: [string, () => { argv: string[]; env: LaunchEnv }][] = [
    [
      "amazon-ecs: -url U -tunnel T SECRET NAME",
      () => ({
        argv: [
          "-workDir",
          WORK_DIR,
          "--labels",
          "linux,docker",
          "-url",
          URL,
          "-tunnel",
          "jenkins:50000",
          SECRET,
          NAME,
        ],
        env: {},
      }),
    ],
    [
      "amazon-ecs without -tunnel",
      () => ({
        argv: ["--labels", "linux docker", "-url", URL, SECRET, NAME],
        env: { JENKINS_AGENT_WORKDIR: WORK_DIR },
      }),
    ],
    [
      "inbound-agent: -url U -secret S -name N",
      () => ({
        argv: [
          "-url",
          URL,
          "-secret",
          SECRET,
          "-name",
          NAME,
          "-workDir",
          WORK_DIR,
          "--labels",
          "linux,docker",
        ],
        env: {},
      }),
    ],
    [
      "GNU style --url=U --secret S",
      () => ({
        argv: [
          `--url=${URL}`,
          "--secret",
          SECRET,
          `--name=${NAME}`,
          "--work-dir",
          WORK_DIR,
          "--labels=linux",
          "--labels",
          "docker",
        ],
        env: {},
      }),
    ],
    [
      "environment only, JENKINS_*",
      () => ({
        argv: [],
        env: {
          JENKINS_URL: URL,
          JENKINS_SECRET: SECRET,
          JENKINS_AGENT_NAME: NAME,
          JENKINS_AGENT_WORKDIR: WORK_DIR,
          AGENT_LABELS: "linux, docker",
        },
      }),
    ],
    [
      "environment only, JENKINS_NAME alias",
      () => ({
        argv: [],
        env: {
          JENKINS_URL: URL,
          JENKINS_SECRET: SECRET,
          JENKINS_NAME: NAME,
          JENKINS_AGENT_WORKDIR: WORK_DIR,
          AGENT_LABELS: "linux docker",
        },
      }),
    ],
    [
      "environment only, SLAVE_NODE_* (amazon-ecs)",
      () => ({
        argv: [],
        env: {
          JENKINS_URL: URL,
          SLAVE_NODE_SECRET: SECRET,
          SLAVE_NODE_NAME: NAME,
          JENKINS_AGENT_WORKDIR: WORK_DIR,
          AGENT_LABELS: "linux,docker",
        },
      }),
    ],
    ["@file arguments (CRLF, blank lines)", () => ({ argv: [`@${argsFile}`], env: {} })],
    [
      "-secret @secretfile",
      () => ({
        argv: [
          "-url",
          URL,
          "-secret",
          `@${secretFile}`,
          "-name",
          NAME,
          "-workDir",
          WORK_DIR,
          "--labels",
          "linux,docker",
        ],
        env: {},
      }),
    ],
    [
      "--secret=@secretfile",
      () => ({
        argv: [
          "--url",
          URL,
          `--secret=@${secretFile}`,
          "--name",
          NAME,
          "--work-dir",
          WORK_DIR,
          "--labels",
          "linux,docker",
        ],
        env: {},
      }),
    ],
    [
      "positional @secretfile (amazon-ecs form)",
      () => ({
        argv: ["-url", URL, `@${secretFile}`, NAME, "-workDir", WORK_DIR, "--labels", "linux,docker"],
        env: {},
      }),
    ],
    [
      "JENKINS_SECRET=@secretfile",
      () => ({
        argv: ["-url", URL, "-name", NAME],
        env: {
          JENKINS_SECRET: `@${secretFile}`,
          JENKINS_AGENT_WORKDIR: WORK_DIR,
          AGENT_LABELS: "linux,docker",
        },
      }),
    ],
    [
      "options ended by --",
      () => ({
        argv: ["-url", URL, "-workDir", WORK_DIR, "--labels", "linux,docker", "--", SECRET, NAME],
        env: {},
      }),
    ],
  ];

  it.each(forms)("%s parses to the same config", (_label, form) => {
    const { argv, env } = form();
    expect(identity(agentPlan(argv, env))).toEqual(EXPECTED);
  });

  it("expands @file arguments in place, next to other arguments", () => {
    const plan = agentPlan([`@${argsFile}`, "--log-level", "debug", "--labels", "arm64"]);
    expect(plan.config.labels).toEqual(["linux", "docker", "arm64"]);
    expect(plan.logLevel).toBe("debug");
  });

  it("reads a secret @reference found in an @file, without expanding it as arguments", async () => {
    const file = join(dir, "indirect.args");
    await writeFile(file, `-url\n${URL}\n-name\n${NAME}\n-secret\n@${secretFile}\n`);
    expect(agentPlan([`@${file}`]).config.secret).toBe(SECRET);
  });

  it("keeps schema defaults for what is not given", () => {
    const plan = agentPlan(["-url", URL, SECRET, NAME]);
    expect(plan.config.labels).toEqual([]);
    expect(plan.config.workDir).toBe(join(tmpdir(), "agent"));
    expect(plan.config.graceMs).toBe(10_000);
    expect(plan.logLevel).toBe("info");
  });
});

describe("precedence", () => {
  const env: LaunchEnv = {
    JENKINS_URL: "http://other.example/",
    JENKINS_SECRET: "env-secret-value",
    JENKINS_AGENT_NAME: "env-name",
    JENKINS_AGENT_WORKDIR: "/env/work",
    AGENT_LABELS: "env-label",
    AGENT_LOG_LEVEL: "error",
  };

  it("argv wins over the environment", () => {
    const plan = agentPlan(
      [
        "-url",
        URL,
        "-secret",
        SECRET,
        "-name",
        NAME,
        "-workDir",
        WORK_DIR,
        "--labels",
        "linux,docker",
        "--log-level",
        "warn",
      ],
      env,
    );
    expect(identity(plan)).toEqual(EXPECTED);
    expect(plan.logLevel).toBe("warn");
  });

  it("positional SECRET NAME win over the environment", () => {
    expect(identity(agentPlan(["-url", URL, SECRET, NAME], env))).toMatchObject({
      secret: SECRET,
      name: NAME,
    });
  });

  it("prefers JENKINS_* over SLAVE_NODE_*, and JENKINS_AGENT_NAME over JENKINS_NAME", () => {
    const plan = agentPlan([], {
      JENKINS_URL: URL,
      JENKINS_SECRET: SECRET,
      SLAVE_NODE_SECRET: "slave-secret-value",
      JENKINS_AGENT_NAME: NAME,
      JENKINS_NAME: "alias-name",
      SLAVE_NODE_NAME: "slave-name",
    });
    expect(identity(plan)).toMatchObject({ secret: SECRET, name: NAME });
  });

  it("treats empty variables as unset", () => {
    const plan = agentPlan([], {
      JENKINS_URL: URL,
      JENKINS_SECRET: "",
      SLAVE_NODE_SECRET: SECRET,
      JENKINS_AGENT_NAME: "",
      SLAVE_NODE_NAME: NAME,
      AGENT_GRACE_MS: "",
    });
    expect(identity(plan)).toMatchObject({ secret: SECRET, name: NAME });
    expect(plan.config.graceMs).toBe(10_000);
  });

  it("keeps the first of repeated -url (remoting's first candidate) and the last of other options", () => {
    const plan = agentPlan([
      "-url",
      URL,
      "-url",
      "http://second.example/",
      "-name",
      "first",
      "-name",
      NAME,
      "-secret",
      SECRET,
    ]);
    expect(plan.config.url).toBe(URL);
    expect(plan.config.name).toBe(NAME);
    expect(plan.ignored).toContain("-url (repeated)");
  });
});

describe("environment tunables", () => {
  const base: LaunchEnv = { JENKINS_URL: URL, JENKINS_SECRET: SECRET, JENKINS_AGENT_NAME: NAME };

  it("maps every tunable to its config field", () => {
    const plan = agentPlan([], {
      ...base,
      AGENT_CONNECT_TIMEOUT_MS: "1000",
      AGENT_IDLE_TIMEOUT_MS: "2000",
      AGENT_GRACE_MS: "0",
      AGENT_DRAIN_MS: " 40 ",
      AGENT_HEARTBEAT_INTERVAL_MS: "500",
      AGENT_HEARTBEAT_TIMEOUT_MS: "1500",
      AGENT_ACK_TIMEOUT_MS: "3000",
      AGENT_MAX_UNACKED_BYTES: "1048576",
      AGENT_FRAME_MAX_BYTES: "4096",
      AGENT_FRAME_FLUSH_MS: "5",
    });
    expect(plan.config).toMatchObject({
      connectTimeoutMs: 1000,
      idleTimeoutMs: 2000,
      graceMs: 0,
      drainMs: 40,
      heartbeatIntervalMs: 500,
      heartbeatTimeoutMs: 1500,
      ackTimeoutMs: 3000,
      maxUnackedBytes: 1_048_576,
      frameMaxBytes: 4096,
      frameFlushMs: 5,
    });
  });

  it.each(["-1", "abc", "1.5", "1e3", "99999999999999999999"])(
    "rejects AGENT_GRACE_MS=%s naming the variable",
    (value) => {
      const error = configError([], { ...base, AGENT_GRACE_MS: value });
      expect(error.code).toBe("AGENT_ERR_CONFIG");
      expect(error.problems).toEqual([
        {
          field: "AGENT_GRACE_MS",
          message: `Expected \`AGENT_GRACE_MS\` to be an integer from 0 to 86400000 (milliseconds), got \`${value}\` (string)`,
        },
      ]);
    },
  );

  it("reports the schema's range rules with the variable the value came from", () => {
    const error = configError([], {
      ...base,
      AGENT_HEARTBEAT_INTERVAL_MS: "5",
      AGENT_FRAME_MAX_BYTES: "2000000",
    });
    expect(error.problems.map((p) => p.field)).toEqual(["heartbeatIntervalMs", "frameMaxBytes"]);
    expect(error.problems[0]?.message).toContain("(from AGENT_HEARTBEAT_INTERVAL_MS)");
    expect(error.problems[1]?.message).toContain("(from AGENT_FRAME_MAX_BYTES)");
  });

  it("reads the log level from AGENT_LOG_LEVEL and rejects unknown levels", () => {
    expect(agentPlan([], { ...base, AGENT_LOG_LEVEL: "debug" }).logLevel).toBe("debug");
    const error = configError([], { ...base, AGENT_LOG_LEVEL: "verbose" });
    expect(error.problems).toEqual([
      {
        field: "AGENT_LOG_LEVEL",
        message: "Expected `AGENT_LOG_LEVEL` to be one of debug, info, warn, error, got `verbose` (string)",
      },
    ]);
  });
});

describe("runtime detection", () => {
  const base: LaunchEnv = { JENKINS_URL: URL, JENKINS_SECRET: SECRET, JENKINS_AGENT_NAME: NAME };
  // On AWS the CloudWatch copy of the job log is on, which needs a region (ECS and Lambda set one).
  const runtimeOf = (env: LaunchEnv) =>
    agentPlan([], { ...base, AWS_REGION: "eu-west-1", ...env }).config.runtime;

  it("turns the CloudWatch copy on under ECS, and reports a missing region as a problem", () => {
    const onEcs = {
      ...base,
      AWS_REGION: "eu-west-1",
      ECS_CONTAINER_METADATA_URI_V4: "http://169.254.170.2/v4/abc",
    };
    expect(agentPlan([], onEcs).cloudWatch).toMatchObject({
      enabled: true,
      region: "eu-west-1",
    });
    const error = configError([], { ...base, ECS_CONTAINER_METADATA_URI_V4: "http://169.254.170.2/v4/abc" });
    expect(error.problems.map((p) => p.field)).toContain("AWS_REGION");
  });

  it("is local without ECS markers", () => {
    expect(runtimeOf({})).toBe("local");
    expect(runtimeOf({ AWS_EXECUTION_ENV: "AWS_Lambda_nodejs22.x" })).toBe("local");
  });

  it("is ecs with the task metadata endpoint or an ECS execution env", () => {
    expect(runtimeOf({ ECS_CONTAINER_METADATA_URI_V4: "http://169.254.170.2/v4/abc" })).toBe("ecs");
    expect(runtimeOf({ ECS_CONTAINER_METADATA_URI: "http://169.254.170.2/v3/abc" })).toBe("ecs");
    expect(runtimeOf({ AWS_EXECUTION_ENV: "AWS_ECS_FARGATE" })).toBe("ecs");
  });

  it("AGENT_RUNTIME overrides detection", () => {
    expect(runtimeOf({ AGENT_RUNTIME: "lambda", ECS_CONTAINER_METADATA_URI_V4: "http://x" })).toBe("lambda");
    expect(runtimeOf({ AGENT_RUNTIME: "local", AWS_EXECUTION_ENV: "AWS_ECS_EC2" })).toBe("local");
  });

  it("rejects an unknown AGENT_RUNTIME", () => {
    const error = configError([], { ...base, AGENT_RUNTIME: "k8s" });
    expect(error.problems).toEqual([
      {
        field: "AGENT_RUNTIME",
        message: "Expected `AGENT_RUNTIME` to be one of lambda, ecs, local, got `k8s` (string)",
      },
    ]);
  });
});

describe("baseEnv", () => {
  it("drops undefined values and every secret-bearing variable", () => {
    const plan = agentPlan(["-url", URL, "-name", NAME], {
      PATH: "/usr/bin:/bin",
      HOME: "/home/jenkins",
      UNSET: undefined,
      JENKINS_SECRET: SECRET,
      SLAVE_NODE_SECRET: "slave-secret-value",
      AGENT_SECRET: "agent-secret-value",
      JENKINS_URL: "http://env.example/",
    });
    expect(plan.config.baseEnv).toEqual({
      PATH: "/usr/bin:/bin",
      HOME: "/home/jenkins",
      JENKINS_URL: "http://env.example/",
    });
  });

  it("drops any variable holding the secret itself, even one read from a file", () => {
    const plan = agentPlan(["-url", URL, "-secret", `@${secretFile}`, "-name", NAME], {
      COPY_OF_SECRET: SECRET,
      LANG: "C.UTF-8",
    });
    expect(plan.config.secret).toBe(SECRET);
    expect(plan.config.baseEnv).toEqual({ LANG: "C.UTF-8" });
  });
});

describe("compatibility flags", () => {
  it("reads remoting flags into the Jenkins settings, passes the others on, and ignores only the reconnect ones", () => {
    const plan = agentPlan(
      [
        "-webSocket",
        "-noreconnect",
        "-headless",
        "-disableHttpsCertValidation",
        "-noKeepAlive",
        "-failIfWorkDirIsMissing",
        "-webSocketHeader",
        "X-Team=build",
        "-proxyCredentials=user:hunter2",
        "-noReconnectAfter",
        "15s",
        "-url",
        URL,
        SECRET,
        NAME,
      ],
      { JENKINS_TUNNEL: "", REMOTING_OPTS: "-jar-cache /cache" },
    );
    expect(identity(plan)).toMatchObject({ url: URL, secret: SECRET, name: NAME });
    expect(plan.config.jenkins.webSocket).toBe(true);
    expect(plan.config.jenkins.remotingOpts).toEqual([
      "-disableHttpsCertValidation",
      "-noKeepAlive",
      "-failIfWorkDirIsMissing",
      "-webSocketHeader",
      "X-Team=build",
      "-proxyCredentials",
      "user:hunter2",
      "-jar-cache",
      "/cache",
    ]);
    expect(plan.ignored).toEqual(["-noreconnect", "-headless", "-noReconnectAfter"]);
    expect(plan.ignored.join(" ")).not.toContain("hunter2");
  });

  it("reads the amazon-ecs and inbound-agent forms of tunnel, WebSocket and the direct connection", () => {
    const ecs = agentPlan(["-url", URL, "-tunnel", "jenkins:50000", SECRET, NAME], {});
    expect(ecs.config.jenkins).toMatchObject({ tunnel: "jenkins:50000", webSocket: false });
    const env = agentPlan(["-url", URL, SECRET, NAME], {
      JENKINS_WEB_SOCKET: "true",
      JENKINS_JAVA_OPTS: '-Xmx300m -Dx="a b"',
      JAVA_OPTS: "-Xmx1g",
      JENKINS_AGENT_FILE: "/usr/share/jenkins/agent.jar",
    });
    expect(env.config.jenkins).toMatchObject({
      webSocket: true,
      javaOpts: ["-Xmx300m", "-Dx=a b"],
      agentFile: "/usr/share/jenkins/agent.jar",
    });
    const direct = agentPlan(["-url", URL, "-direct", "j:50000", "-instanceIdentity", "ID", SECRET, NAME], {
      JENKINS_PROTOCOLS: "JNLP4-connect",
    });
    expect(direct.config.jenkins).toMatchObject({
      direct: "j:50000",
      instanceIdentity: "ID",
      protocols: ["JNLP4-connect"],
    });
  });

  it.each([
    [["--mode", "jenkins"], {}, "jenkins"],
    [["--mode=native"], { AGENT_MODE: "jenkins" }, "native"],
    [[], { AGENT_MODE: "Jenkins" }, "jenkins"],
    [[], {}, "auto"],
  ])("the mode from %j and %j is %s", (args, env, mode) => {
    expect(agentPlan([...args, "-url", URL, SECRET, NAME], env).config.mode).toBe(mode);
  });

  it("refuses WebSocket with a tunnel, a bad mode, and remoting options the agent sets itself, all at once", () => {
    const error = configError(
      ["-url", URL, "-webSocket", "-tunnel", "j:50000", "--mode", "java", SECRET, NAME],
      {
        REMOTING_OPTS: "-noReconnectAfter 15s -secret x",
        JENKINS_WEB_SOCKET: "maybe",
        JAVA_OPTS: "-Xmx1g | tee",
      },
    );
    expect(error.problems.map((p) => p.field).sort()).toEqual(
      [
        "--mode",
        "JAVA_OPTS",
        "JENKINS_WEB_SOCKET",
        "JENKINS_WEB_SOCKET",
        "REMOTING_OPTS",
        "REMOTING_OPTS",
      ].sort(),
    );
    expect(error.message).not.toContain(SECRET);
  });

  it("rejects a value given to a switch", () => {
    const error = configError(["-webSocket=true", "-url", URL, SECRET, NAME]);
    expect(error.problems).toEqual([
      { field: "-webSocket", message: "Expected `-webSocket` to be given without a value" },
    ]);
  });
});

describe("exec, help and version", () => {
  it.each([["bash"], ["/usr/local/bin/custom-entrypoint"], ["java"]])(
    "runs a single non-option argument %s",
    (arg) => {
      expect(parseLaunch([arg], { JENKINS_URL: URL }, readFile)).toEqual({ kind: "exec", argv: [arg] });
    },
  );

  it("does not exec options, @files or several arguments", () => {
    expect(configError(["-url"]).problems.map((p) => p.field)).toContain("-url");
    expect(parseLaunch([`@${argsFile}`], {}, readFile).kind).toBe("agent");
    expect(configError(["bash", "-c"]).problems.map((p) => p.field)).toContain("-c");
  });

  it.each([["--help"], ["-help"], ["-h"]])("%s asks for help, whatever else is wrong", (flag) => {
    expect(parseLaunch(["-bogus", flag, "@/does/not/exist"], {}, readFile)).toEqual({ kind: "help" });
  });

  it.each([["--version"], ["-version"]])("%s asks for the version", (flag) => {
    expect(parseLaunch([flag], {}, readFile)).toEqual({ kind: "version" });
  });

  it("documents every launch form, flag, variable and exit code", () => {
    const documented = [
      "-url",
      "--url",
      "-secret",
      "--secret",
      "-name",
      "--name",
      "-workDir",
      "--work-dir",
      "--labels",
      "--log-level",
      "--help",
      "--version",
      "-tunnel",
      "-webSocket",
      "-proxyCredentials",
      "@FILE",
      "SECRET NAME",
      "COMMAND",
      "JENKINS_URL",
      "JENKINS_SECRET",
      "JENKINS_AGENT_NAME",
      "JENKINS_NAME",
      "JENKINS_AGENT_WORKDIR",
      "JENKINS_TUNNEL",
      "JENKINS_WEB_SOCKET",
      "SLAVE_NODE_NAME",
      "SLAVE_NODE_SECRET",
      "AGENT_LABELS",
      "AGENT_LOG_LEVEL",
      "AGENT_RUNTIME",
      "AGENT_CONNECT_TIMEOUT_MS",
      "AGENT_IDLE_TIMEOUT_MS",
      "AGENT_GRACE_MS",
      "AGENT_DRAIN_MS",
      "AGENT_HEARTBEAT_INTERVAL_MS",
      "AGENT_HEARTBEAT_TIMEOUT_MS",
      "AGENT_ACK_TIMEOUT_MS",
      "AGENT_MAX_UNACKED_BYTES",
      "AGENT_FRAME_MAX_BYTES",
      "AGENT_FRAME_FLUSH_MS",
    ];
    for (const word of documented) expect(HELP_TEXT).toContain(word);
    for (const [name, code] of Object.entries(ExitCode)) {
      expect(HELP_TEXT).toMatch(new RegExp(`^ +${code} +${name} `, "m"));
    }
  });
});

describe("bad input", () => {
  it("lists url, secret and name when nothing is given", () => {
    const error = configError([], {});
    expect(error.code).toBe("AGENT_ERR_CONFIG");
    expect(error.problems).toEqual([
      { field: "url", message: "missing; give -url URL, --url=URL or JENKINS_URL" },
      {
        field: "secret",
        message: "missing; give -secret S, a positional SECRET, JENKINS_SECRET or SLAVE_NODE_SECRET",
      },
      {
        field: "name",
        message:
          "missing; give -name N, a positional NAME, JENKINS_AGENT_NAME (or JENKINS_NAME) or SLAVE_NODE_NAME",
      },
    ]);
  });

  it("reports an unknown option by name only", () => {
    const error = configError(["-url", URL, `--secrett=${SECRET}`, "-name", NAME, "-foo"]);
    expect(error.problems.map((p) => p.field)).toEqual(["--secrett", "-foo", "secret"]);
    expect(error.message).not.toContain(SECRET);
  });

  it("reports a missing value after a flag", () => {
    const atEnd = configError(["-url", URL, "-name", NAME, "-secret"]);
    expect(atEnd.problems).toEqual([
      { field: "-secret", message: "Expected a value after `-secret`, got nothing" },
      expect.objectContaining({ field: "secret" }),
    ]);
    const beforeOption = configError(["-url", "-secret", SECRET, "-name", NAME]);
    expect(beforeOption.problems).toEqual([
      { field: "-url", message: "Expected a value after `-url`, got the option `-secret`" },
      expect.objectContaining({ field: "url" }),
    ]);
  });

  it("reports too many positionals without showing them", () => {
    const error = configError(["-url", URL, SECRET, NAME, "extra"]);
    expect(error.problems).toEqual([
      { field: "arguments", message: "Expected at most 2 positional arguments (SECRET NAME), got 3" },
    ]);
    expect(error.message).not.toContain(SECRET);
  });

  it("reports positionals mixed with -secret/-name", () => {
    const error = configError(["-url", URL, "-secret", SECRET, "-name", NAME, "stray"]);
    expect(error.problems.map((p) => p.field)).toEqual(["arguments"]);
    expect(error.message).not.toContain(SECRET);
  });

  it("reports unreadable @files and secret files", () => {
    const missing = join(dir, "missing");
    const error = configError([`@${missing}`, "-url", URL, "-secret", `@${missing}`, "-name", NAME]);
    expect(error.problems.map((p) => p.field)).toEqual([`@${missing}`, "secret"]);
    expect(error.problems[0]?.message).toContain(`Cannot read the arguments file \`${missing}\``);
    expect(error.problems[1]?.message).toContain(`Cannot read the secret file \`${missing}\` (from -secret)`);
  });

  it("reports an empty secret file", async () => {
    const empty = join(dir, "empty-secret");
    await writeFile(empty, "\n  \n");
    const error = configError(["-url", URL, "-name", NAME], { JENKINS_SECRET: `@${empty}` });
    expect(error.problems).toEqual([
      {
        field: "secret",
        message: `Expected the secret file \`${empty}\` (from JENKINS_SECRET) to be non-empty`,
      },
    ]);
  });

  it("reports schema problems with their source, the secret masked", () => {
    const error = configError([
      "-url",
      "ftp://jenkins/",
      "-secret",
      `${SECRET}${"x".repeat(1024)}`,
      "-name",
      "bad/name",
    ]);
    expect(error.problems.map((p) => p.field)).toEqual(["url", "secret", "name"]);
    expect(error.problems[0]?.message).toContain("(from -url)");
    expect(error.problems[1]?.message).toContain("***");
    expect(error.message).not.toContain(SECRET);
  });

  it("does not garble a message with a secret too short to mask (as the log masker refuses it)", () => {
    // A one-letter secret used to turn every "s" of the message into ***.
    const error = configError(["-url", "ftp://jenkins/", "s", NAME]);
    // It is refused (too short to mask), and the other problems read as written.
    expect(error.problems.map((p) => p.field)).toEqual(["url", "secret"]);
    expect(error.problems[0]?.message).toMatch(/^must be an http\(s\):\/\/ or ws\(s\):\/\/ URL/);
    expect(error.problems[0]?.message).not.toContain("***");
    expect(error.problems[1]?.message).toMatch(/^must be at least 4 characters/);
  });

  it("lists every problem at once and never shows the secret, even where it does not belong", () => {
    const error = configError(["-url", SECRET, "-bogus", "--log-level", "loud", SECRET, NAME, "extra"], {
      JENKINS_SECRET: SECRET,
      AGENT_GRACE_MS: "-1",
      AGENT_DRAIN_MS: "soon",
      AGENT_RUNTIME: "mainframe",
    });
    expect(error.code).toBe("AGENT_ERR_CONFIG");
    expect(error.problems.map((p) => p.field).sort()).toEqual(
      [
        "-bogus",
        "--log-level",
        "arguments",
        "AGENT_GRACE_MS",
        "AGENT_DRAIN_MS",
        "AGENT_RUNTIME",
        "url",
      ].sort(),
    );
    expect(error.message).not.toContain(SECRET);
    expect(JSON.stringify(error.problems)).not.toContain(SECRET);
  });
});

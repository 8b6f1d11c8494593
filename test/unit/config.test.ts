import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AGENT_WS_PATH, agentSocketUrl, ConfigError, parseAgentConfig } from "../../agent-core/index.ts";

const SECRET = "s3cr3t-0123456789abcdef-TOKEN";
const minimal = { url: "http://127.0.0.1:8080/", secret: SECRET, name: "agent-1" };

function configError(input: unknown): ConfigError {
  try {
    parseAgentConfig(input);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("parseAgentConfig", () => {
  it("applies the defaults", () => {
    expect(parseAgentConfig(minimal)).toEqual({
      url: "http://127.0.0.1:8080/",
      secret: SECRET,
      name: "agent-1",
      labels: [],
      workDir: join(tmpdir(), "agent"),
      runtime: "local",
      deadlineAt: null,
      deadlineStepStartMinMs: 15_000,
      diskBudgetBytes: null,
      diskHeadroomBytes: 16 * 1_048_576,
      monitorIntervalMs: 250,
      connectTimeoutMs: 60_000,
      idleTimeoutMs: 600_000,
      heartbeatIntervalMs: 10_000,
      heartbeatTimeoutMs: 30_000,
      graceMs: 10_000,
      drainMs: 2_000,
      ackTimeoutMs: 30_000,
      frameMaxBytes: 262_144,
      frameFlushMs: 10,
      maxUnackedBytes: 4 * 1_048_576,
      maxSpoolBytes: 64 * 1_048_576,
      reconnectTimeoutMs: 60_000,
      maxPayloadBytes: 16 * 1_048_576,
      handshakeTimeoutMs: 10_000,
      maxArchiveEntries: 100_000,
      baseEnv: {},
      mode: "auto",
      jenkins: {
        webSocket: false,
        tunnel: null,
        direct: null,
        instanceIdentity: null,
        protocols: [],
        javaOpts: [],
        remotingOpts: [],
        javaBin: null,
        javaHome: null,
        agentFile: null,
        memoryMb: null,
        jarMaxBytes: 32 * 1_048_576,
        jarFetchTimeoutMs: 30_000,
        classDataSharing: true,
      },
    });
  });

  it("keeps the values given", () => {
    const config = parseAgentConfig({
      ...minimal,
      url: "wss://ctl.example/base/",
      labels: ["linux", "docker"],
      workDir: "/srv/agent",
      runtime: "lambda",
      deadlineAt: 1_700_000_000_000,
      diskBudgetBytes: 0,
      graceMs: 0,
      frameMaxBytes: 256,
      frameFlushMs: 0,
      baseEnv: { PATH: "/usr/bin" },
    });
    expect(config).toMatchObject({
      url: "wss://ctl.example/base/",
      labels: ["linux", "docker"],
      workDir: "/srv/agent",
      runtime: "lambda",
      deadlineAt: 1_700_000_000_000,
      diskBudgetBytes: 0,
      graceMs: 0,
      frameMaxBytes: 256,
      frameFlushMs: 0,
      baseEnv: { PATH: "/usr/bin" },
    });
  });

  it.each(["http://h/", "https://h/", "ws://h:1/", "wss://h/x"])("accepts the controller URL %s", (url) => {
    expect(parseAgentConfig({ ...minimal, url }).url).toBe(url);
  });

  it("accepts the node names the Jenkins Lambda plugin builds from label expressions", () => {
    expect(parseAgentConfig({ ...minimal, name: "git && bash.lambda-abcdef" }).name).toBe(
      "git && bash.lambda-abcdef",
    );
  });

  it("reports every invalid field at once", () => {
    const error = configError({
      url: "ftp://files.example/",
      secret: SECRET,
      name: "has/slash",
      labels: [""],
      runtime: "kubernetes",
      deadlineAt: -5,
      connectTimeoutMs: -1,
      heartbeatIntervalMs: 1,
      frameMaxBytes: 10,
      maxUnackedBytes: 1.5,
      baseEnv: { A: 1 },
    });
    expect(error.code).toBe("AGENT_ERR_CONFIG");
    const fields = error.problems.map((p) => p.field).sort();
    expect(fields).toEqual(
      [
        "url",
        "name",
        "labels.0",
        "runtime",
        "deadlineAt",
        "connectTimeoutMs",
        "heartbeatIntervalMs",
        "frameMaxBytes",
        "maxUnackedBytes",
        "baseEnv.A",
      ].sort(),
    );
    for (const field of fields) expect(error.message).toContain(field);
  });

  it("reports missing required fields", () => {
    const error = configError({});
    expect(error.problems.map((p) => p.field).sort()).toEqual(["name", "secret", "url"]);
  });

  it.each([
    ["null", null],
    ["a string", "http://h/"],
    ["an array", [minimal]],
  ])("rejects %s as the whole input", (_label, input) => {
    expect(configError(input).problems.length).toBeGreaterThan(0);
  });

  it("never shows the secret in the message", () => {
    const withOtherErrors = configError({ ...minimal, name: "a/b", url: "nope" });
    expect(withOtherErrors.problems.map((p) => p.field).sort()).toEqual(["name", "url"]);
    expect(withOtherErrors.message).not.toContain(SECRET);

    const tooLong = `${SECRET}-`.repeat(60); // over the 1024-character limit
    const secretItself = configError({ ...minimal, secret: tooLong });
    expect(secretItself.problems.map((p) => p.field)).toEqual(["secret"]);
    expect(secretItself.message).not.toContain(SECRET);
    expect(JSON.stringify(secretItself.problems)).not.toContain(SECRET);

    const wrongType = configError({ ...minimal, secret: 987_654_321_123 });
    expect(wrongType.problems.map((p) => p.field)).toEqual(["secret"]);
    expect(wrongType.message).not.toContain("987654321123");
  });
});

describe("secrets that cannot be masked, durations that cannot be timed", () => {
  it.each([
    ["1 character", "x"],
    ["3 characters", "abc"],
    ["empty", ""],
  ])("refuses an agent secret of %s (AGENT_ERR_CONFIG), without showing it", (_what, secret) => {
    const error = configError({ ...minimal, secret });
    expect(error.code).toBe("AGENT_ERR_CONFIG");
    expect(error.problems).toEqual([
      {
        field: "secret",
        message: "must be at least 4 characters: a shorter secret cannot be masked in logs, got ***",
      },
    ]);
  });

  it("accepts a secret of 4 characters", () => {
    expect(parseAgentConfig({ ...minimal, secret: "q7z!" }).secret).toBe("q7z!");
  });

  it.each([
    ["idleTimeoutMs", 2 ** 31],
    ["graceMs", 86_400_001],
    ["heartbeatIntervalMs", 30 * 86_400_000],
  ])("refuses %s = %i: tunables are at most one day", (field, value) => {
    const error = configError({ ...minimal, [field]: value });
    expect(error.problems).toEqual([
      { field, message: `must be at most 86400000 ms (one day), got \`${value}\` (number)` },
    ]);
  });
});

describe("agentSocketUrl", () => {
  it.each([
    ["http://h:1/", "ws://h:1/agents/v1"],
    ["http://h:1", "ws://h:1/agents/v1"],
    ["https://ctl.example/", "wss://ctl.example/agents/v1"],
    ["ws://h:1/", "ws://h:1/agents/v1"],
    ["wss://h/", "wss://h/agents/v1"],
    ["http://h:1/jenkins", "ws://h:1/jenkins/agents/v1"],
    ["http://h:1/jenkins/", "ws://h:1/jenkins/agents/v1"],
    ["https://h/a/b/", "wss://h/a/b/agents/v1"],
    ["http://h:1/jenkins?token=abc", "ws://h:1/jenkins/agents/v1"],
    ["http://h:1/?x=1#frag", "ws://h:1/agents/v1"],
  ])("maps %s to %s", (controllerUrl, expected) => {
    expect(agentSocketUrl(controllerUrl, AGENT_WS_PATH)).toBe(expected);
  });
});

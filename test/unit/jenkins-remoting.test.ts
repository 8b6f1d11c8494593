import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  type AgentJar,
  ArgsGate,
  type ConfigProblem,
  ExitCode,
  failureExitCode,
  heapFor,
  type JavaRuntime,
  jenkinsSettingsSchema,
  planClassDataSharing,
  RemotingLog,
  type RemotingRecord,
  type RemotingRun,
  type RemotingState,
  readJenkinsSettings,
  remotingCommand,
  remotingOutcome,
} from "../../agent-core/index.ts";
import { tempDir } from "../support/harness.ts";

const HEADER = "Nov 30, 2026 4:40:32 AM hudson.remoting.jnlp.Main$CuiListener status";

function feed(chunks: string[], stream: "stdout" | "stderr" = "stderr") {
  const records: RemotingRecord[] = [];
  const log = new RemotingLog((r) => records.push(r));
  for (const chunk of chunks) log.write(stream, Buffer.from(chunk));
  log.end();
  return { records, state: log.state };
}

describe("RemotingLog: remoting's status lines", () => {
  it("pairs java.util.logging header lines with their text and follows the connection", () => {
    const { records, state } = feed([
      `${HEADER}\nINFO: Using Remoting version: 3355.v1\n${HEADER}\nINFO: Connected\n`,
      `${HEADER}\nINFO: Terminated\n`,
    ]);
    expect(records).toEqual([
      {
        stream: "stderr",
        level: "INFO",
        source: "hudson.remoting.jnlp.Main$CuiListener status",
        text: "Using Remoting version: 3355.v1",
      },
      {
        stream: "stderr",
        level: "INFO",
        source: "hudson.remoting.jnlp.Main$CuiListener status",
        text: "Connected",
      },
      {
        stream: "stderr",
        level: "INFO",
        source: "hudson.remoting.jnlp.Main$CuiListener status",
        text: "Terminated",
      },
    ]);
    expect(state).toMatchObject({ version: "3355.v1", connected: true, terminated: true, refusal: null });
  });

  it("reads lines split across reads, multibyte characters included, and a last line without newline", () => {
    const text = `${HEADER}\nINFO: Connected\nbuild says héllo ✓\nno newline`;
    const bytes = Buffer.from(text);
    const { records, state } = (() => {
      const out: RemotingRecord[] = [];
      const log = new RemotingLog((r) => out.push(r));
      for (let i = 0; i < bytes.length; i += 3) log.write("stderr", bytes.subarray(i, i + 3));
      log.end();
      return { records: out, state: log.state };
    })();
    expect(records.map((r) => r.text)).toEqual(["Connected", "build says héllo ✓", "no newline"]);
    expect(state.connected).toBe(true);
  });

  it.each([
    ["Local headers refused by remote: Authorization failure", "refusal"],
    [
      "Could not locate server among [http://j/]: http://j/tcpSlaveAgentListener/ is invalid: 404 Not Found",
      "refusal",
    ],
    ["Failed to connect: Handshake error (Response code was not 101: 403).", "refusal"],
    [
      "Could not locate server among [http://j/]: Failed to connect to http://j/tcpSlaveAgentListener/: Connection refused",
      "failure",
    ],
    ["http://j/login is not ready: 503", "failure"],
  ] as const)("before it connects, %j is a %s", (text, kind) => {
    const { state } = feed([`${HEADER}\nINFO: ${text}\n`]);
    expect(state[kind]).toBe(text);
    expect(state.lastWords).toEqual([text]);
  });

  it("a refusal after the connection (the node removed, reconnect refused) does not count as never connected", () => {
    const { state } = feed([
      `${HEADER}\nINFO: Connected\n${HEADER}\nINFO: Terminated\n${HEADER}\nWARNING: Unknown client name: x\n`,
    ]);
    expect(state).toMatchObject({ connected: true, terminated: true, refusal: null });
  });

  it("recognises a usage error (printed on stderr, remoting then exits 0) with the line that says why", () => {
    const { state } = feed([
      '"-bogus" is not a valid option\njava -jar agent.jar [options...]\n -help : Show this help\n',
    ]);
    expect(state.usage).toBe('"-bogus" is not a valid option');
  });

  it("keeps stdout lines apart and never takes them for status lines", () => {
    const { records, state } = feed(["INFO: Connected\n"], "stdout");
    expect(records).toEqual([{ stream: "stdout", level: "INFO", source: null, text: "Connected" }]);
    expect(state.connected).toBe(true); // a JUL-shaped line on stdout still counts: remoting may log there with a custom config
  });
});

const base: RemotingState = {
  version: "1",
  connected: false,
  terminated: false,
  refusal: null,
  failure: null,
  usage: null,
  lastWords: [],
  logged: true,
  otherStderr: [],
};
const ctx = {
  url: "http://jenkins/",
  connectTimeoutMs: 60_000,
  runtime: "lambda" as const,
  deadlineAt: 1_800_000_000_000,
  graceMs: 10_000,
  interruptedBy: null,
};
const exited = (code: number | null, extra: Partial<RemotingRun> = {}): RemotingRun => ({
  reason: "exit",
  exitCode: code,
  signal: null,
  ...extra,
});

describe("remotingOutcome: every remoting ending on the agent's exit-code table", () => {
  it.each([
    [
      "connected, channel closed by the controller",
      exited(0),
      { connected: true, terminated: true },
      ExitCode.ok,
      undefined,
    ],
    [
      "connected, then died",
      exited(1),
      { connected: true },
      ExitCode.controllerFailure,
      "AGENT_ERR_CONNECTION_LOST",
    ],
    [
      "refused (exit 0 after 10 s)",
      exited(0),
      { refusal: "Local headers refused by remote: Authorization failure" },
      ExitCode.refused,
      "AGENT_ERR_CONTROLLER_REFUSED",
    ],
    [
      "refused, stopped by the agent",
      exited(null, { reason: "cancelled", signal: "SIGTERM", stoppedBecause: "refused" }),
      { refusal: "Failed to connect: Handshake error." },
      ExitCode.refused,
      "AGENT_ERR_CONTROLLER_REFUSED",
    ],
    [
      "unreachable (exit 1)",
      exited(1),
      { failure: "Could not locate server among [x]: Connection refused" },
      ExitCode.controllerFailure,
      "AGENT_ERR_CONTROLLER_UNREACHABLE",
    ],
    [
      "never connected within the timeout",
      exited(null, { reason: "cancelled", signal: "SIGKILL", stoppedBecause: "connect-timeout" }),
      { failure: "http://jenkins/login is not ready: 503" },
      ExitCode.controllerFailure,
      "AGENT_ERR_CONTROLLER_UNREACHABLE",
    ],
    [
      "usage error (exit 0)",
      exited(0),
      { usage: '"-x" is not a valid option' },
      ExitCode.badConfig,
      "AGENT_ERR_CONFIG",
    ],
    [
      "exit 0 with nothing said",
      exited(0),
      {},
      ExitCode.controllerFailure,
      "AGENT_ERR_CONTROLLER_UNREACHABLE",
    ],
    [
      "deadline",
      exited(null, { reason: "deadline", signal: "SIGKILL" }),
      { connected: true },
      ExitCode.deadline,
      undefined,
    ],
    [
      "disk budget",
      exited(null, { reason: "disk", signal: "SIGTERM", message: "over budget" }),
      { connected: true },
      ExitCode.disk,
      undefined,
    ],
    [
      "SIGTERM",
      exited(null, { reason: "interrupted", signal: "SIGTERM" }),
      { connected: true },
      ExitCode.sigterm,
      undefined,
    ],
    [
      "java refused its options before running remoting (exit 1, no record logged)",
      exited(1),
      {
        logged: false,
        otherStderr: [
          "Unrecognized VM option 'NoSuchOption'",
          "Error: Could not create the Java Virtual Machine.",
        ],
      },
      ExitCode.badConfig,
      "AGENT_ERR_CONFIG",
    ],
    [
      "a java too old for the jar (exit 1, no record logged)",
      exited(1),
      {
        logged: false,
        otherStderr: [
          "java.lang.UnsupportedClassVersionError: hudson/remoting/jnlp/Main has been compiled by a more recent version",
        ],
      },
      ExitCode.badConfig,
      "AGENT_ERR_NO_JAVA",
    ],
    [
      "a damaged jar (exit 1, no record logged)",
      exited(1),
      {
        logged: false,
        otherStderr: ["Error: Invalid or corrupt jarfile /tmp/cache/jenkins/x/agent-0123.jar"],
      },
      ExitCode.controllerFailure,
      "AGENT_ERR_AGENT_JAR",
    ],
    [
      "java could not start",
      exited(null, { reason: "error", message: "ENOENT" }),
      {},
      ExitCode.badConfig,
      "AGENT_ERR_NO_JAVA",
    ],
  ] as [string, RemotingRun, Partial<RemotingState>, number, string | undefined][])(
    "%s",
    (_what, run, state, exitCode, code) => {
      const outcome = remotingOutcome(run, { ...base, ...state }, ctx);
      expect(outcome.exitCode).toBe(exitCode);
      expect(outcome.error?.code).toBe(code);
    },
  );

  it("says remoting was not started, not that it was stopped, when too little time was left to start it", () => {
    const outcome = remotingOutcome(exited(null, { reason: "deadline", started: false }), base, ctx);
    expect(outcome.exitCode).toBe(ExitCode.deadline);
    expect(outcome.summary).toContain(
      "remoting was not started: less than AGENT_DEADLINE_STEP_START_MIN_MS remained",
    );
    expect(outcome.summary).not.toContain("stopped before it connected");
  });

  it.each([
    ["AGENT_ERR_NO_JAVA", ExitCode.badConfig],
    ["AGENT_ERR_CONFIG", ExitCode.badConfig],
    ["AGENT_ERR_INTERNAL", ExitCode.internal],
    ["AGENT_ERR_AGENT_JAR", ExitCode.controllerFailure],
    ["AGENT_ERR_CONTROLLER_UNREACHABLE", ExitCode.controllerFailure],
  ] as const)(
    "a failure before remoting ran with %s exits %i, as the README's tables say",
    (code, exitCode) => {
      expect(failureExitCode(code)).toBe(exitCode);
    },
  );

  it("keeps remoting's own words and adds what to do", () => {
    const refused = remotingOutcome(exited(0), { ...base, refusal: "Unknown client name: build-1" }, ctx);
    expect(refused.summary).toContain("Unknown client name: build-1");
    expect(refused.summary).toContain("single-use node already removed");
    const deadline = remotingOutcome(exited(null, { reason: "deadline" }), { ...base, connected: true }, ctx);
    expect(deadline.summary).toContain("The Lambda function's deadline (2027-01-15T08:00:00.000Z)");
    expect(deadline.summary).toContain("ECS/Fargate agent template");
    const signalled = remotingOutcome(exited(null, { reason: "interrupted" }), base, {
      ...ctx,
      interruptedBy: "SIGINT",
    });
    expect(signalled.exitCode).toBe(ExitCode.sigint);
  });
});

const java: JavaRuntime = {
  bin: "/opt/java/bin/java",
  from: "JAVA_HOME",
  version: "17.0.15",
  major: 17,
  key: "abc123",
};
const jar: AgentJar = {
  path: "/tmp/agent/cache/jenkins/j-1/agent-0123456789abcdef.jar",
  source: "controller",
  sha256: "0123456789abcdef".repeat(4),
  bytes: 1000,
  version: "3355.v1",
  revalidated: false,
};
const settings = (input: Record<string, unknown> = {}) => jenkinsSettingsSchema.parse(input);
const command = (input: Record<string, unknown> = {}, memoryMb: number | null = 512) =>
  remotingCommand({
    java,
    jar,
    settings: settings(input),
    url: "https://jenkins.example.com/",
    name: "build.lambda-abcdef",
    secretFile: "/tmp/agent/.remoting-secret-1",
    workDir: "/tmp/agent",
    memoryMb,
    cds: null,
    home: "/tmp/agent/home",
  });

describe("remotingCommand: the java command line", () => {
  it("runs the jar with the agent's JVM flags, a heap from the platform's memory, and the secret as @FILE", () => {
    const { argv, heapMb, secretFileLines } = command();
    expect(heapMb).toBe(128);
    expect(secretFileLines).toEqual([]);
    expect(argv).toEqual([
      "/opt/java/bin/java",
      "-XX:TieredStopAtLevel=1",
      "-XX:-UsePerfData",
      "-Xmx128m",
      "-Djava.awt.headless=true",
      "-Duser.home=/tmp/agent/home",
      "-jar",
      jar.path,
      "-url",
      "https://jenkins.example.com/",
      "-name",
      "build.lambda-abcdef",
      "-secret",
      "@/tmp/agent/.remoting-secret-1",
      "-workDir",
      "/tmp/agent",
      "-noreconnect",
    ]);
  });

  it("lets the user's JVM options win: their heap, their collector, and after ours", () => {
    const { argv, heapMb } = command({ javaOpts: ["-Xmx1g", "-XX:+UseG1GC"] });
    expect(heapMb).toBeNull();
    expect(argv.indexOf("-XX:+UseG1GC")).toBeGreaterThan(argv.indexOf("-XX:-UsePerfData"));
    expect(argv.indexOf("-Xmx1g")).toBeGreaterThan(argv.indexOf("-XX:-UsePerfData"));
  });

  it("adds WebSocket, tunnel and direct connections as remoting wants them, and keeps credentials out of argv", () => {
    expect(command({ webSocket: true }).argv).toContain("-webSocket");
    expect(command({ tunnel: "j:50000" }).argv.join(" ")).toContain("-tunnel j:50000");
    const direct = command({ direct: "j:50000", instanceIdentity: "ID", protocols: ["JNLP4-connect"] }).argv;
    expect(direct).not.toContain("-url"); // -direct forbids -url
    expect(direct.join(" ")).toContain("-direct j:50000 -instanceIdentity ID -protocols JNLP4-connect");
    const withCredentials = command({ remotingOpts: ["-proxyCredentials", "user:pw", "-noKeepAlive"] });
    expect(withCredentials.argv.join(" ")).not.toContain("user:pw");
    expect(withCredentials.argv).toContain("-noKeepAlive");
    expect(withCredentials.secretFileLines).toEqual(["-proxyCredentials", "user:pw"]);
  });

  it.each([
    [128, 32],
    [512, 128],
    [3008, 752],
    [10_240, 2560],
    [65_536, 4096],
  ])("a heap for %i MB is %i MB", (memory, heap) => {
    expect(heapFor(memory)).toBe(heap);
  });
});

describe("class-data sharing", () => {
  it("creates the archive at exit on JDK 17 (to a temporary name), lets JDK 19+ create it itself", () => {
    const seventeen = planClassDataSharing(jar, java, "/tmp/agent/cache/jenkins", "r1");
    expect(seventeen.action).toBe("create");
    expect(seventeen.archive).toBe("/tmp/agent/cache/jenkins/j-1/agent-0123456789abcdef.abc123.jsa");
    expect(seventeen.flags[0]).toBe(`-XX:ArchiveClassesAtExit=${seventeen.archive}.r1.tmp`);
    const twentyOne = planClassDataSharing(jar, { ...java, major: 21 }, "/tmp/agent/cache/jenkins", "r1");
    expect(twentyOne.flags).toEqual([
      "-XX:+AutoCreateSharedArchive",
      `-XX:SharedArchiveFile=${twentyOne.archive}`,
    ]);
  });
});

describe("readJenkinsSettings: the inbound-agent variables", () => {
  it("reads every variable, JENKINS_JAVA_OPTS before JAVA_OPTS, and the Lambda function's memory", () => {
    const problems: ConfigProblem[] = [];
    expect(
      readJenkinsSettings(
        {
          JENKINS_WEB_SOCKET: "true",
          JENKINS_TUNNEL: "j:50000",
          JENKINS_JAVA_OPTS: "-Xmx256m '-Dname=a b'",
          JAVA_OPTS: "-Xmx1g",
          REMOTING_OPTS: "-noKeepAlive",
          JENKINS_JAVA_BIN: "/opt/java/bin/java",
          JENKINS_AGENT_FILE: "/usr/share/jenkins/agent.jar",
          AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "1024",
          AGENT_JAVA_CDS: "off",
        },
        problems,
      ),
    ).toEqual({
      webSocket: true,
      tunnel: "j:50000",
      javaOpts: ["-Xmx256m", "-Dname=a b"],
      remotingOpts: ["-noKeepAlive"],
      javaBin: "/opt/java/bin/java",
      agentFile: "/usr/share/jenkins/agent.jar",
      memoryMb: 1024,
      classDataSharing: false,
    });
    expect(problems).toEqual([]);
  });

  it("names each bad variable, its rule and its value", () => {
    const problems: ConfigProblem[] = [];
    readJenkinsSettings(
      {
        JENKINS_WEB_SOCKET: "sometimes",
        AGENT_JAVA_CDS: "yes",
        REMOTING_OPTS: "-url http://x/",
        JAVA_OPTS: "a; b",
      },
      problems,
    );
    expect(problems.map((p) => p.field)).toEqual([
      "JENKINS_WEB_SOCKET",
      "AGENT_JAVA_CDS",
      "JAVA_OPTS",
      "REMOTING_OPTS",
    ]);
    expect(problems[0]?.message).toContain("`sometimes`");
  });
});

describe("ArgsGate: remoting's arguments behind a named pipe", () => {
  const dirs: { remove: () => void }[] = [];
  afterAll(() => {
    for (const dir of dirs) dir.remove();
  });
  const pipe = async () => {
    const dir = tempDir("args-gate-");
    dirs.push(dir);
    const gate = await ArgsGate.create(join(dir.path, "args"), ["unused"]);
    return gate;
  };

  it.skipIf(process.platform !== "linux")(
    "hands the lines to the reader that opens the pipe, then removes it",
    async () => {
      const gate = await pipe();
      expect(gate.gated).toBe(true);
      const reader = spawn("cat", [gate.path], { stdio: ["ignore", "pipe", "inherit"] });
      let read = "";
      reader.stdout.on("data", (chunk: Buffer) => {
        read += chunk.toString();
      });
      const gone = new Promise((resolve) => reader.once("close", resolve));
      expect(await gate.release(["s3cret-value", "-credentials", "u:p"], gone)).toBe(true);
      await gone;
      expect(read).toBe("s3cret-value\n-credentials\nu:p\n");
      expect(existsSync(gate.path)).toBe(false);
    },
  );

  it.skipIf(process.platform !== "linux")(
    "gives up, without blocking a thread, when the reader never comes and the pipe is removed",
    async () => {
      const gate = await pipe();
      // remoting's JVM died before it opened the pipe, and the pipe was removed meanwhile.
      const readerGone = new Promise((resolve) => setTimeout(resolve, 100)).then(() => gate.remove());
      const released = await Promise.race([
        gate.release(["s3cret-value"], readerGone),
        new Promise((resolve) => setTimeout(() => resolve("still waiting"), 3_000)),
      ]);
      expect(released).toBe(false);
      expect(existsSync(gate.path)).toBe(false);
    },
  );
});

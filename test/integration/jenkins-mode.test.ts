import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, request, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type AgentConfigInput,
  type AgentRunOutcome,
  cloudWatchSettings,
  ExitCode,
  parseAgentConfig,
  runAgent,
} from "../../agent-core/index.ts";
import { contextFor, createHandler } from "../../lambda-handler/index.ts";
import { startFakeCloudWatch } from "../support/fake-cloudwatch.ts";
import { FakeJenkins } from "../support/fake-jenkins.ts";
import { fakeRemotingJar, JAVAC_MISSING } from "../support/fake-remoting-jar.ts";
import { captureLogger, ENTRYPOINT, tempDir, until } from "../support/harness.ts";
import { httpProxy } from "../support/http-proxy.ts";

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";

const SECRET = "0f1e2d3c4b5a69788796a5b4c3d2e1f0-node-secret";
const PATH = process.env.PATH ?? "/usr/bin:/bin";

let jenkins: FakeJenkins;
let jar: string;
const dirs: { remove: () => void }[] = [];

function workDir(): string {
  const dir = tempDir("jenkins-mode-");
  dirs.push(dir);
  return dir.path;
}

/** Every process's command line on this machine, joined (to prove the secret is in none). */
function allCommandLines(): string {
  let text = "";
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      text += `${readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ")}\n`;
    } catch {
      // exited while we looked
    }
  }
  return text;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function runJenkins(
  name: string,
  overrides: Partial<AgentConfigInput> = {},
): Promise<{ outcome: AgentRunOutcome; log: ReturnType<typeof captureLogger> }> {
  const log = captureLogger();
  const config = parseAgentConfig({
    url: jenkins.url,
    secret: SECRET,
    name,
    workDir: workDir(),
    connectTimeoutMs: 15_000,
    graceMs: 500,
    drainMs: 300,
    monitorIntervalMs: 50,
    baseEnv: { PATH },
    ...overrides,
  });
  const outcome = await runAgent(config, { logger: log.logger });
  return { outcome, log };
}

/**
 * A gateway on loopback in front of the fake Jenkins (a reverse proxy, a load balancer): the
 * first `failing` requests get `answer`, the rest are passed to the controller as they are.
 */
async function gateway(
  target: () => string,
  failing: number,
  answer: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ url: string; seen: string[]; close: () => Promise<void> }> {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(req.url ?? "");
    if (seen.length <= failing) return answer(req, res);
    const upstream = new URL(req.url ?? "/", target());
    const forward = request(upstream, { method: req.method, headers: req.headers }, (reply) => {
      res.writeHead(reply.statusCode ?? 502, reply.headers);
      reply.pipe(res);
    });
    forward.on("error", () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    seen,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

const skipReason =
  JAVAC_MISSING === null ? "" : ` (skipped: ${JAVAC_MISSING}, the fake agent.jar cannot be built)`;

describe.skipIf(JAVAC_MISSING !== null)(`Jenkins mode against a fake Jenkins${skipReason}`, () => {
  beforeAll(async () => {
    jar = fakeRemotingJar();
    jenkins = await FakeJenkins.start({ jar });
  });
  afterAll(async () => {
    await jenkins.close();
    for (const dir of dirs) dir.remove();
  });

  describe("connected and finished", () => {
    it("auto mode finds Jenkins, fetches its agent.jar, connects over TCP and exits 0 when the controller closes the channel", async () => {
      jenkins.addNode("tcp-1", { secret: SECRET, script: ["echo hello from the build", "log building"] });
      let argvDuringRun = "";
      const watching = until(() => jenkins.sessions.some((s) => s.name === "tcp-1"), 20_000).then(() => {
        argvDuringRun = allCommandLines();
      });
      const { outcome, log } = await runJenkins("tcp-1");
      await watching;
      expect(outcome.exitCode, outcome.summary).toBe(ExitCode.ok);
      expect(outcome.mode).toBe("jenkins");
      expect(outcome.jenkins).toMatchObject({
        jenkinsVersion: jenkins.version,
        remotingVersion: "3355.v388858a_47b_33",
        transport: "tcp",
        connected: true,
        jar: { source: "controller", revalidated: false },
      });
      expect(jenkins.sessions.find((s) => s.name === "tcp-1")?.acks).toEqual([
        "ack echo hello from the build",
        "ack log building",
      ]);
      const discovery = jenkins.requests.find((r) => r.path === "/tcpSlaveAgentListener/");
      expect(discovery?.headers["node-name"]).toBe("tcp-1");
      // The secret is in no process's argv: remoting reads it from a 0600 file, removed afterwards.
      expect(argvDuringRun).toContain("-secret @");
      expect(argvDuringRun).not.toContain(SECRET);
      const argv = outcome.jenkins?.argv ?? [];
      expect(argv.join(" ")).not.toContain(SECRET);
      const secretArg = argv[argv.indexOf("-secret") + 1]!;
      expect(existsSync(secretArg.slice(1))).toBe(false);
      const messages = log.entries().map((e) => String(e.msg));
      expect(messages).toContain("remoting: Connected");
      expect(messages).toContain("remoting: Terminated");
      expect(log.entries().find((e) => e.msg === "starting remoting")).toMatchObject({
        remotingVersion: "3355.v388858a_47b_33",
      });
    });

    it("connects over WebSocket: GET /login, then the upgrade with Node-Name and Secret-Key", async () => {
      jenkins.addNode("ws-1", { secret: SECRET, script: ["echo over websocket"] });
      const { outcome } = await runJenkins("ws-1", {
        mode: "jenkins",
        jenkins: { webSocket: true, remotingOpts: ["-webSocketHeader", "X-Team=build"] },
      });
      expect(outcome.exitCode, outcome.summary).toBe(ExitCode.ok);
      expect(outcome.jenkins?.transport).toBe("websocket");
      const upgrade = jenkins.requests.find((r) => r.path === "/wsagents/" && r.status === 101);
      expect(upgrade?.headers).toMatchObject({
        "node-name": "ws-1",
        "secret-key": SECRET,
        "x-team": "build",
      });
      const login = jenkins.requests.findIndex((r) => r.path === "/login");
      expect(login).toBeGreaterThan(-1);
      expect(login).toBeLessThan(jenkins.requests.indexOf(upgrade!));
    });
  });

  describe("agent.jar and the class-data archive", () => {
    it("caches the jar per controller, revalidates it on a warm start, and fetches it again when it changed", async () => {
      const dir = workDir();
      const run = async (name: string) => {
        jenkins.addNode(name, { secret: SECRET, script: [] });
        return runJenkins(name, { workDir: dir });
      };
      const first = (await run("cache-1")).outcome;
      expect(first.exitCode, first.summary).toBe(ExitCode.ok);
      expect(first.jenkins?.jar).toMatchObject({ source: "controller" });
      expect(first.jenkins?.cds?.result).toBe("created");

      // Warm: remoting starts on the cached jar while the controller is asked (slowly, here), and
      // makes no request before the answer confirms the jar.
      jenkins.jarAnswerDelayMs = 1_500;
      const warm = await run("cache-2").finally(() => {
        jenkins.jarAnswerDelayMs = 0;
      });
      const second = warm.outcome;
      expect(second.exitCode, second.summary).toBe(ExitCode.ok);
      expect(second.jenkins?.jar).toMatchObject({
        source: "cache",
        revalidated: true,
        sha256: first.jenkins?.jar?.sha256,
      });
      expect(second.jenkins?.cds?.result).toBe("used");
      const conditional = jenkins.requests.filter((r) => r.path === "/jnlpJars/agent.jar").at(-1)!;
      expect(conditional.status).toBe(304);
      expect(conditional.headers["if-none-match"]).toBeDefined();
      const started = warm.log.entries().filter((e) => e.msg === "starting remoting");
      expect(started).toHaveLength(1);
      expect(started[0]?.waitsForAnswer).toBe(true);
      expect(Date.parse(String(started[0]?.time))).toBeLessThan(conditional.at);
      const discovery = jenkins.requests.filter(
        (r) => r.path === "/tcpSlaveAgentListener/" && r.headers["node-name"] === "cache-2",
      );
      expect(discovery).toHaveLength(1);
      expect(discovery[0]!.at).toBeGreaterThanOrEqual(conditional.at);

      // Changed: the early remoting on the old jar is stopped unused; the new jar runs.
      jenkins.setJar(fakeRemotingJar("3356.changed"));
      const changed = await run("cache-3").finally(() => jenkins.setJar(jar));
      const third = changed.outcome;
      expect(third.exitCode, third.summary).toBe(ExitCode.ok);
      expect(third.jenkins?.jar).toMatchObject({ source: "controller" });
      expect(
        changed.log
          .entries()
          .filter((e) => e.msg === "starting remoting")
          .map((e) => [e.remotingVersion, e.waitsForAnswer]),
      ).toEqual([
        ["3355.v388858a_47b_33", true],
        ["3356.changed", false],
      ]);
      expect(third.jenkins?.jar?.sha256).not.toBe(first.jenkins?.jar?.sha256);
      expect(changed.log.entries().map((e) => e.msg)).toContain(
        "stopping the remoting started ahead of the answer, unused",
      );
      expect(
        jenkins.requests.filter(
          (r) => r.path === "/tcpSlaveAgentListener/" && r.headers["node-name"] === "cache-3",
        ),
      ).toHaveLength(1);
      expect(existsSync(first.jenkins!.jar!.path)).toBe(false);
      expect(existsSync(third.jenkins!.jar!.path)).toBe(true);
      // No arguments file (it held the secret) is left behind.
      expect(readdirSync(dir).filter((name) => name.startsWith(".remoting-args-"))).toEqual([]);
    });

    it("a cached jar changed on disk since its download is fetched again, not confirmed by a 304 and run", async () => {
      const dir = workDir();
      jenkins.addNode("tampered-1", { secret: SECRET, script: [] });
      jenkins.addNode("tampered-2", { secret: SECRET, script: [] });
      const first = (await runJenkins("tampered-1", { workDir: dir })).outcome;
      expect(first.exitCode, first.summary).toBe(ExitCode.ok);
      const cached = first.jenkins!.jar!.path;
      // Same size, other bytes: a size check alone cannot tell.
      writeFileSync(cached, Buffer.alloc(readFileSync(cached).length, 0x41));
      const second = (await runJenkins("tampered-2", { workDir: dir })).outcome;
      expect(second.exitCode, second.summary).toBe(ExitCode.ok);
      expect(second.jenkins?.jar).toMatchObject({ source: "controller", sha256: first.jenkins?.jar?.sha256 });
      const asked = jenkins.requests.filter((r) => r.path === "/jnlpJars/agent.jar").at(-1)!;
      expect(asked.status).toBe(200);
      expect(asked.headers["if-none-match"]).toBeUndefined();
    });

    it("runs the image's jar in place of the same jar from the controller, started before the answer", async () => {
      jenkins.addNode("baked-same", { secret: SECRET, script: [] });
      const { outcome, log } = await runJenkins("baked-same", { jenkins: { agentFile: jar } });
      expect(outcome.exitCode, outcome.summary).toBe(ExitCode.ok);
      expect(outcome.jenkins?.jar).toMatchObject({ source: "image", path: jar, revalidated: true });
      const started = log.entries().filter((e) => e.msg === "starting remoting");
      expect(started.map((e) => e.waitsForAnswer)).toEqual([true]);
    });

    it("uses the image's jar when the controller serves none, and says why", async () => {
      jenkins.setJar(null);
      jenkins.addNode("baked-1", { secret: SECRET, script: [] });
      try {
        const { outcome } = await runJenkins("baked-1", { mode: "jenkins", jenkins: { agentFile: jar } });
        expect(outcome.exitCode, outcome.summary).toBe(ExitCode.ok);
        expect(outcome.jenkins?.jar).toMatchObject({ source: "image", path: jar });
        expect(outcome.jenkins?.jar?.fallbackReason).toContain("HTTP 404");
      } finally {
        jenkins.setJar(jar);
      }
    });

    it("refuses what is not a jar, and with no jar at all fails with AGENT_ERR_AGENT_JAR (exit 3)", async () => {
      const notJar = join(workDir(), "agent.jar");
      writeFileSync(notJar, "<html>a login page</html>");
      jenkins.setJar(notJar);
      try {
        const { outcome } = await runJenkins("nojar-1", { mode: "jenkins" });
        expect(outcome.exitCode).toBe(ExitCode.controllerFailure);
        expect(outcome.error?.code).toBe("AGENT_ERR_AGENT_JAR");
        expect(outcome.summary).toContain("did not send a jar");
      } finally {
        jenkins.setJar(jar);
      }
    });
  });

  describe("neither Jenkins nor the reference controller (yet)", () => {
    it.each([
      ["a gateway's 502 without X-Jenkins (auto mode)", "auto", 502, false],
      ["Jenkins' own 503 while it starts, with no jar at hand (jenkins mode)", "jenkins", 503, true],
    ] as const)(
      "%s is no answer yet: asked again until Jenkins answers",
      async (_what, mode, status, withXJenkins) => {
        const front = await gateway(
          () => jenkins.url,
          2,
          (_req, res) => {
            res.writeHead(status, {
              "Content-Type": "text/html",
              ...(withXJenkins ? { "X-Jenkins": "2.479.3" } : {}),
            });
            res.end("<html>Service Unavailable</html>");
          },
        );
        try {
          const name = `gateway-${status}`;
          jenkins.addNode(name, { secret: SECRET, script: ["echo behind a gateway"] });
          const { outcome } = await runJenkins(name, { url: front.url, mode, connectTimeoutMs: 15_000 });
          expect(outcome.exitCode, outcome.summary).toBe(ExitCode.ok);
          expect(outcome.mode).toBe("jenkins");
          expect(front.seen.slice(0, 3)).toEqual([
            "/jnlpJars/agent.jar",
            "/jnlpJars/agent.jar",
            "/jnlpJars/agent.jar",
          ]);
        } finally {
          await front.close();
        }
      },
    );

    it("a gateway that answers 502 until the connect timeout: exit 3 naming the 502", async () => {
      const front = await gateway(
        () => jenkins.url,
        Number.POSITIVE_INFINITY,
        (_req, res) => {
          res.writeHead(502, { "Content-Type": "text/html" });
          res.end("<html>Bad Gateway</html>");
        },
      );
      try {
        const { outcome } = await runJenkins("gateway-down", { url: front.url, connectTimeoutMs: 2_000 });
        expect(outcome.exitCode, outcome.summary).toBe(ExitCode.controllerFailure);
        expect(outcome.mode).toBeNull();
        expect(outcome.error?.code).toBe("AGENT_ERR_CONTROLLER_UNREACHABLE");
        expect(outcome.summary).toContain("answered HTTP 502 without X-Jenkins");
        expect(front.seen.length).toBeGreaterThan(1);
      } finally {
        await front.close();
      }
    });

    it("a jar that trickles in is cut off at the download bound, once, and named: the controller answered, it is not unreachable", async () => {
      const front = await gateway(
        () => jenkins.url,
        Number.POSITIVE_INFINITY,
        (_req, res) => {
          res.writeHead(200, { "X-Jenkins": "2.479.3", "Content-Type": "application/java-archive" });
          const timer = setInterval(() => res.write("P"), 100);
          res.on("close", () => clearInterval(timer));
        },
      );
      try {
        const started = Date.now();
        const { outcome } = await runJenkins("slow-jar", {
          url: front.url,
          connectTimeoutMs: 20_000,
          jenkins: { jarFetchTimeoutMs: 1_500 },
        });
        expect(outcome.mode).toBe("jenkins");
        expect(outcome.exitCode, outcome.summary).toBe(ExitCode.controllerFailure);
        expect(outcome.error?.code).toBe("AGENT_ERR_AGENT_JAR");
        expect(outcome.summary).toContain("did not send the whole jar within 1500 ms");
        expect(front.seen).toEqual(["/jnlpJars/agent.jar"]);
        expect(Date.now() - started).toBeLessThan(15_000);
      } finally {
        await front.close();
      }
    });
  });

  describe("proxies", () => {
    it("auto mode's one request and the jar download go through HTTP_PROXY (a controller only the proxy can reach)", async () => {
      const port = new URL(jenkins.url).port;
      // `controller.invalid` cannot resolve (RFC 6761): only the proxy reaches it.
      const proxy = await httpProxy({ "controller.invalid": "127.0.0.1" });
      const saved = process.env.HTTP_PROXY;
      process.env.HTTP_PROXY = proxy.url;
      try {
        jenkins.addNode("proxied-1", { secret: SECRET, script: [] });
        const { outcome } = await runJenkins("proxied-1", {
          url: `http://controller.invalid:${port}/`,
          connectTimeoutMs: 3_000,
        });
        expect(outcome.mode).toBe("jenkins");
        expect(outcome.jenkins?.jar).toMatchObject({ source: "controller" });
        expect(proxy.handled).toContainEqual({ kind: "forward", target: `controller.invalid:${port}` });
        // remoting's own connection follows its own proxy rules (none given here): it cannot resolve the name.
        expect(outcome.exitCode).toBe(ExitCode.controllerFailure);
      } finally {
        if (saved === undefined) delete process.env.HTTP_PROXY;
        else process.env.HTTP_PROXY = saved;
        await proxy.close();
      }
    });
  });

  describe("never connected: remoting's own words decide", () => {
    it.each([
      ["a wrong secret over TCP", "tcp", { secret: "another-secret-value" }, "Authorization failure"],
      ["an unknown node over TCP", "tcp", null, "Unknown client name"],
      ["a wrong secret over WebSocket", "websocket", { secret: "another-secret-value" }, "Handshake error"],
      ["an unknown node over WebSocket", "websocket", null, "Handshake error"],
    ] as const)("%s is refused: exit 6, at once", async (_what, transport, node, words) => {
      const name = `refused-${transport}-${node === null ? "unknown" : "secret"}`;
      if (node !== null) jenkins.addNode(name, { ...node, script: [] });
      const started = Date.now();
      const { outcome } = await runJenkins(name, {
        mode: "jenkins",
        jenkins: { webSocket: transport === "websocket" },
      });
      expect(outcome.exitCode, outcome.summary).toBe(ExitCode.refused);
      expect(outcome.error?.code).toBe("AGENT_ERR_CONTROLLER_REFUSED");
      expect(outcome.summary).toContain(words);
      // remoting would sleep 10 s (TCP) or retry forever (WebSocket): the agent ends it when it says no.
      expect(Date.now() - started).toBeLessThan(9_000);
    });

    it("a disabled TCP agent port is a refusal that names WebSocket as the way out", async () => {
      jenkins.tcpPortEnabled = false;
      try {
        const { outcome } = await runJenkins("no-tcp", { mode: "jenkins" });
        expect(outcome.exitCode).toBe(ExitCode.refused);
        expect(outcome.summary).toContain("tcpSlaveAgentListener/ is invalid: 404");
        expect(outcome.summary).toContain("JENKINS_WEB_SOCKET=true");
      } finally {
        jenkins.tcpPortEnabled = true;
      }
    });

    it("a controller that never gets ready is given up after the connect timeout: exit 3 with remoting's words", async () => {
      jenkins.loginStatus = 503;
      try {
        const { outcome } = await runJenkins("not-ready", {
          mode: "jenkins",
          connectTimeoutMs: 2_500,
          jenkins: { webSocket: true },
        });
        expect(outcome.exitCode).toBe(ExitCode.controllerFailure);
        expect(outcome.error?.code).toBe("AGENT_ERR_CONTROLLER_UNREACHABLE");
        expect(outcome.summary).toContain("did not connect within 2500 ms");
        expect(outcome.summary).toContain("login is not ready: 503");
      } finally {
        jenkins.loginStatus = 200;
      }
    });

    it("an unreachable controller: exit 3, whether auto mode or remoting finds out", async () => {
      const closed = await FakeJenkins.start({ jar });
      const url = closed.url;
      await closed.close();
      const auto = await runJenkins("unreachable-auto", { url, connectTimeoutMs: 1_000 });
      expect(auto.outcome.exitCode).toBe(ExitCode.controllerFailure);
      expect(auto.outcome.mode).toBeNull();
      expect(auto.outcome.error?.code).toBe("AGENT_ERR_CONTROLLER_UNREACHABLE");
      const forced = await runJenkins("unreachable-jenkins", {
        url,
        mode: "jenkins",
        jenkins: { agentFile: jar },
      });
      expect(forced.outcome.exitCode).toBe(ExitCode.controllerFailure);
      expect(forced.outcome.error?.code).toBe("AGENT_ERR_CONTROLLER_UNREACHABLE");
      expect(forced.outcome.summary).toContain("Connection refused");
    });

    it.each([
      [
        "a JVM option it does not know",
        { javaOpts: ["-XX:+NoSuchOption"] },
        "AGENT_ERR_CONFIG",
        "Unrecognized VM option",
      ],
      ["a Java too old for the jar", "old-java", "AGENT_ERR_NO_JAVA", "UnsupportedClassVersionError"],
    ] as const)(
      "java that cannot run remoting (%s) is exit 2 with the JVM's own words, not a hang nor an unreachable controller",
      async (_what, jenkinsSettings, code, words) => {
        let settings: Partial<AgentConfigInput["jenkins"]> = {};
        if (jenkinsSettings === "old-java") {
          // A Java 8 runtime: it starts, then cannot load remoting's classes (exit 1, no log record).
          const bin = join(workDir(), "java");
          writeFileSync(
            bin,
            "#!/bin/sh\necho 'Error: LinkageError occurred while loading main class hudson.remoting.jnlp.Main' >&2\necho 'java.lang.UnsupportedClassVersionError: hudson/remoting/jnlp/Main has been compiled by a more recent version of the Java Runtime (class file version 61.0)' >&2\nexit 1\n",
            { mode: 0o755 },
          );
          settings = { javaBin: bin };
        } else settings = { ...jenkinsSettings, javaOpts: [...jenkinsSettings.javaOpts] };
        const { outcome } = await runJenkins(`jvm-${code}`, { mode: "jenkins", jenkins: settings });
        expect(outcome.exitCode, outcome.summary).toBe(ExitCode.badConfig);
        expect(outcome.error?.code).toBe(code);
        expect(outcome.summary).toContain("java could not run remoting (exit code 1)");
        expect(outcome.summary).toContain(words);
      },
    );

    it("the JVM's own first lines (JAVA_TOOL_OPTIONS) do not take the arguments file away before remoting reads it", async () => {
      const dir = workDir();
      jenkins.addNode("tool-opts-1", { secret: SECRET, script: [] });
      jenkins.addNode("tool-opts-2", { secret: SECRET, script: [] });
      const env = { PATH, JAVA_TOOL_OPTIONS: "-Dagent.test=tool" };
      const cold = await runJenkins("tool-opts-1", { workDir: dir, baseEnv: env });
      expect(cold.outcome.exitCode, cold.outcome.summary).toBe(ExitCode.ok);
      // Warm: remoting starts on the cached jar and prints "Picked up JAVA_TOOL_OPTIONS" while
      // the controller's answer is still on its way.
      jenkins.jarAnswerDelayMs = 1_500;
      const warm = await runJenkins("tool-opts-2", { workDir: dir, baseEnv: env }).finally(() => {
        jenkins.jarAnswerDelayMs = 0;
      });
      expect(warm.log.entries().map((e) => e.msg)).toContain(
        "remoting: Picked up JAVA_TOOL_OPTIONS: -Dagent.test=tool",
      );
      expect(warm.outcome.exitCode, warm.outcome.summary).toBe(ExitCode.ok);
      expect(warm.outcome.jenkins?.jar).toMatchObject({ source: "cache", revalidated: true });
    });

    it("remoting's usage error (it exits 0) is a configuration error: exit 2", async () => {
      const { outcome } = await runJenkins("usage-1", {
        mode: "jenkins",
        jenkins: { remotingOpts: ["-bogus"] },
      });
      expect(outcome.exitCode).toBe(ExitCode.badConfig);
      expect(outcome.jenkins?.remotingExit).toEqual({ code: 0, signal: null });
      expect(outcome.summary).toContain('"-bogus" is not a valid option');
    });
  });

  describe("connected, then ended otherwise", () => {
    it("remoting dying mid-channel is a lost connection: exit 3", async () => {
      jenkins.addNode("halt-1", { secret: SECRET, script: ["halt 3"] });
      const { outcome } = await runJenkins("halt-1", { mode: "jenkins" });
      expect(outcome.exitCode).toBe(ExitCode.controllerFailure);
      expect(outcome.error?.code).toBe("AGENT_ERR_CONNECTION_LOST");
      expect(outcome.summary).toContain("exit code 3");
    });

    it("the deadline stops a connected remoting (SIGTERM, grace, SIGKILL) and says so in plain words: exit 4", async () => {
      jenkins.addNode("deadline-1", { secret: SECRET, script: ["ignore-sigterm", "hang"] });
      const { outcome } = await runJenkins("deadline-1", {
        mode: "jenkins",
        runtime: "lambda",
        deadlineAt: Date.now() + 4_000,
        deadlineStepStartMinMs: 0,
      });
      expect(outcome.exitCode, outcome.summary).toBe(ExitCode.deadline);
      expect(outcome.summary).toContain("The Lambda function's deadline");
      expect(outcome.summary).toContain("raise the function's timeout");
      expect(outcome.jenkins?.remotingExit?.signal).toBe("SIGKILL");
    });

    it("a process the build moved out of remoting's process group (setsid) is stopped when remoting ends", async () => {
      jenkins.addNode("escape-1", { secret: SECRET, script: ["spawn-detached 300"] });
      const { outcome, log } = await runJenkins("escape-1", { mode: "jenkins" });
      expect(outcome.exitCode, outcome.summary).toBe(ExitCode.ok);
      const line = log.entries().find((e) => /spawned pid \d+/.test(String(e.msg)));
      const pid = Number(/spawned pid (\d+)/.exec(String(line?.msg))?.[1]);
      expect(pid).toBeGreaterThan(0);
      await until(() => !pidAlive(pid), 5_000, "the detached process to be gone");
    });

    it("a build over the disk budget stops remoting: exit 5", async () => {
      jenkins.addNode("disk-1", { secret: SECRET, script: ["fill-disk 400000000", "hang"] });
      const { outcome } = await runJenkins("disk-1", {
        mode: "jenkins",
        diskBudgetBytes: 24 * 1_048_576,
      });
      expect(outcome.exitCode, outcome.summary).toBe(ExitCode.disk);
      expect(outcome.summary).toContain("disk budget");
    });
  });

  describe("no Java", () => {
    it.each([
      ["JENKINS_JAVA_BIN names no java", { javaBin: "/nonexistent/bin/java" }, "JENKINS_JAVA_BIN"],
      ["no java on PATH", {}, "no Java runtime found"],
    ])("%s: exit 2 naming the image variant with a JRE", async (_what, jenkinsSettings, words) => {
      jenkins.addNode("nojava", { secret: SECRET, script: [] });
      const { outcome } = await runJenkins("nojava", {
        mode: "jenkins",
        baseEnv: { PATH: "/nonexistent" },
        jenkins: jenkinsSettings,
      });
      expect(outcome.exitCode).toBe(ExitCode.badConfig);
      expect(outcome.error?.code).toBe("AGENT_ERR_NO_JAVA");
      expect(outcome.summary).toContain(words);
      expect(outcome.summary).toContain("Jenkins variant");
    });
  });

  describe("the secret in every sink", () => {
    it("is masked in the diagnostics, the CloudWatch copy and the outcome, even when remoting prints it", async () => {
      const cloud = await startFakeCloudWatch();
      try {
        jenkins.addNode("leaky-1", { secret: SECRET, script: ["print-secret"] });
        const log = captureLogger();
        const config = parseAgentConfig({
          url: jenkins.url,
          secret: SECRET,
          name: "leaky-1",
          workDir: workDir(),
          graceMs: 500,
          baseEnv: { PATH },
        });
        const settings = cloudWatchSettings(
          { AGENT_CLOUDWATCH: "on", AWS_REGION: "eu-west-1", AGENT_LOG_GROUP: "/jenkins" },
          "local",
          "leaky-1",
        );
        const outcome = await runAgent(config, {
          logger: log.logger,
          cloudWatch: { settings, clientConfig: cloud.clientConfig },
        });
        expect(outcome.exitCode, outcome.summary).toBe(ExitCode.ok);
        const copied = (cloud.events("/jenkins", "leaky-1") ?? []).map((e) => e.message);
        expect(copied).toContain("the secret is ***");
        expect(copied.some((line) => line.startsWith("=== Jenkins agent leaky-1"))).toBe(true);
        expect(log.lines.join("")).toContain("the secret is ***");
        for (const sink of [copied.join("\n"), log.lines.join(""), JSON.stringify(outcome)]) {
          expect(sink).not.toContain(SECRET);
        }
        expect(log.entries().find((e) => e.msg === "starting remoting")?.logCopy).toMatchObject({
          group: "/jenkins",
        });
      } finally {
        await cloud.close();
      }
    });
  });

  describe("launch forms", () => {
    let child: ChildProcess | undefined;
    afterEach(() => {
      child?.kill("SIGKILL");
      child = undefined;
    });

    it("amazon-ecs: -url U -tunnel H:P SECRET NAME with JENKINS_JAVA_OPTS; SIGTERM stops remoting and what the build left: exit 143", async () => {
      jenkins.addNode("ecs-1", { secret: SECRET, script: ["ignore-sigterm", "spawn 300", "hang"] });
      const dir = workDir();
      child = spawn(
        process.execPath,
        [ENTRYPOINT, "-url", jenkins.url, "-tunnel", `127.0.0.1:${jenkins.agentPort}`, SECRET, "ecs-1"],
        {
          env: {
            PATH,
            JENKINS_AGENT_WORKDIR: dir,
            JENKINS_JAVA_OPTS: "-Dagent.test=ecs -Xss1m",
            AGENT_GRACE_MS: "1000",
            AGENT_MODE: "jenkins",
          },
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let stderr = "";
      child.stderr!.on("data", (d: Buffer) => {
        stderr += d.toString();
      });
      const closed = new Promise<number | null>((resolve) => child!.once("close", (code) => resolve(code)));
      let exited = false;
      void closed.then(() => {
        exited = true;
      });
      await until(() => exited || /spawned pid (\d+)/.test(stderr), 45_000, "the build's background process");
      expect(exited, stderr.split("\n").slice(-8).join("\n")).toBe(false);
      const sleeper = Number(/spawned pid (\d+)/.exec(stderr)![1]);
      const argv = (
        JSON.parse(stderr.split("\n").find((l) => l.includes('"starting remoting"'))!) as { argv: string[] }
      ).argv;
      expect(argv).toEqual(
        expect.arrayContaining(["-tunnel", `127.0.0.1:${jenkins.agentPort}`, "-Dagent.test=ecs", "-Xss1m"]),
      );
      expect(argv.indexOf("-Dagent.test=ecs")).toBeGreaterThan(argv.indexOf("-XX:TieredStopAtLevel=1"));
      expect(allCommandLines()).not.toContain(SECRET);
      expect(pidAlive(sleeper)).toBe(true);
      child.kill("SIGTERM");
      const code = await closed;
      expect(code, stderr.split("\n").slice(-6).join("\n")).toBe(ExitCode.sigterm);
      expect(stderr).not.toContain(SECRET);
      await until(() => !pidAlive(sleeper), 5_000, "the build's background process to be gone");
    });

    it("the AWS Lambda Cloud plugin's payload: WebSocket from the function's environment, heap from its memory", async () => {
      jenkins.addNode("build.lambda-abcdef", { secret: SECRET, script: ["echo on lambda"] });
      const lines: string[] = [];
      const handler = createHandler({
        env: () => ({
          PATH,
          JENKINS_WEB_SOCKET: "true",
          AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "512",
          AGENT_DEADLINE_MARGIN_MS: "2000",
          AGENT_GRACE_MS: "500",
          AGENT_CLOUDWATCH: "off",
        }),
        write: (line) => lines.push(line),
      });
      const summary = await handler(
        { url: jenkins.url, node_secret: SECRET, node_name: "build.lambda-abcdef" },
        contextFor(
          {
            requestId: "req-jenkins",
            deadlineMs: Date.now() + 60_000,
            invokedFunctionArn: "arn:aws:lambda:eu-west-1:123456789012:function:jnlp-agent-git-bash",
            traceId: undefined,
            clientContext: undefined,
            identity: undefined,
            tenantId: undefined,
            body: "{}",
            notes: [],
          },
          { AWS_LAMBDA_FUNCTION_NAME: "jnlp-agent-git-bash", AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "512" },
        ),
      );
      expect(summary).toMatchObject({
        mode: "jenkins",
        result: "served",
        exitCode: 0,
        jenkins: { transport: "websocket", connected: true, heapMb: 128 },
      });
      const starting = lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((e) => e.msg === "starting remoting");
      expect(starting?.argv).toEqual(expect.arrayContaining(["-webSocket", "-Xmx128m", "-noreconnect"]));
      expect(lines.join("")).not.toContain(SECRET);
    });
  });
});

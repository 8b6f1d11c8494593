import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { cloudWatchSettings, ExitCode, runAgent } from "../../agent-core/index.ts";
import { startFakeCloudWatch } from "../support/fake-cloudwatch.ts";
import {
  agentConfigFor,
  captureLogger,
  spawnEntrypoint,
  startController,
  type TestController,
} from "../support/harness.ts";
import { httpProxy } from "../support/http-proxy.ts";
import { slowPeer } from "../support/slow-peer.ts";

/** Starts the real container entrypoint bundle with `env` (and nothing else of this process's environment). */
function entrypoint(args: string[], env: Record<string, string>) {
  const run = spawnEntrypoint(args, { AGENT_GRACE_MS: "300", ...env });
  return {
    child: run.child,
    done: run.done.then((result) => ({ ...result, last: result.lines.at(-1) ?? {} })),
  };
}

describe("every connection attempt is bounded in total time", () => {
  it("a peer that answers the upgrade one byte per second: the agent gives up at its connect timeout", async () => {
    const peer = await slowPeer(1_000);
    try {
      const { code, ms, last } = await entrypoint(
        ["-url", peer.url, "-secret", "s3cret-value", "-name", "tarpit"],
        {
          AGENT_CONNECT_TIMEOUT_MS: "2000",
        },
      ).done;
      expect(code).toBe(ExitCode.controllerFailure);
      expect(last).toMatchObject({ msg: "agent finished", code: "AGENT_ERR_CONTROLLER_UNREACHABLE" });
      // Bounded by the connect timeout: without a total deadline per attempt, the first attempt
      // alone never ends while the bytes keep coming. (Slack: a process start on a busy machine.)
      expect(ms).toBeLessThan(2_000 + 5_000);
      expect(peer.connections).toBeGreaterThanOrEqual(1);
    } finally {
      await peer.close();
    }
  });

  it("a single attempt (AGENT_CONNECT_TIMEOUT_MS=0) is bounded by the handshake timeout, not reset by each byte", async () => {
    const peer = await slowPeer(200);
    try {
      const { logger } = captureLogger();
      const started = Date.now();
      const outcome = await runAgent(
        agentConfigFor({ url: peer.url, secretFor: () => "fake-secret" } as never, "single", {
          connectTimeoutMs: 0,
          handshakeTimeoutMs: 1_000,
        }),
        { logger },
      );
      expect(outcome.error?.code).toBe("AGENT_ERR_CONTROLLER_UNREACHABLE");
      expect(Date.now() - started).toBeLessThan(1_000 + 1_500);
      expect(peer.connections).toBe(1);
    } finally {
      await peer.close();
    }
  });

  it("the cause named at the end is the last telling one, not a last attempt cut short by the connect timeout", async () => {
    // A gateway: 502 to the first upgrade, then no answer at all (every later attempt runs into the
    // end of the connect phase, shorter than the handshake timeout).
    let upgrades = 0;
    const sockets: Duplex[] = [];
    const gateway = createServer();
    gateway.on("upgrade", (_req, socket: Duplex) => {
      upgrades++;
      sockets.push(socket);
      socket.on("error", () => {});
      if (upgrades === 1) socket.end("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 11\r\n\r\nBad Gateway");
    });
    await new Promise<void>((resolve) => gateway.listen(0, "127.0.0.1", resolve));
    try {
      const { logger } = captureLogger();
      const url = `ws://127.0.0.1:${(gateway.address() as AddressInfo).port}/`;
      const outcome = await runAgent(
        agentConfigFor({ url, secretFor: () => "fake-secret" } as never, "gateway", {
          connectTimeoutMs: 1_500,
        }),
        { logger },
      );
      expect(outcome.error?.code).toBe("AGENT_ERR_CONTROLLER_UNREACHABLE");
      expect(upgrades).toBeGreaterThan(1);
      expect(outcome.summary).toContain("the controller answered HTTP 502: Bad Gateway");
      expect(outcome.summary).not.toContain("did not complete within");
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => gateway.close(resolve));
    }
  });

  it("SIGTERM while connecting to it exits at once (143), not through the last-resort timer", async () => {
    const peer = await slowPeer(1_000);
    try {
      const run = entrypoint(["-url", peer.url, "-secret", "s3cret-value", "-name", "tarpit-term"], {
        AGENT_CONNECT_TIMEOUT_MS: "60000",
        AGENT_GRACE_MS: "10000",
      });
      while (peer.connections === 0) await new Promise((r) => setTimeout(r, 10));
      const signalled = Date.now();
      run.child.kill("SIGTERM");
      const { code, last } = await run.done;
      expect(code).toBe(ExitCode.sigterm);
      // At once: not after the last-resort timer (grace 10 s + drain + 5 s), nor the 60 s connect timeout.
      expect(Date.now() - signalled).toBeLessThan(5_000);
      expect(last).toMatchObject({
        msg: "agent finished",
        exitCode: ExitCode.sigterm,
        code: "AGENT_ERR_INTERRUPTED",
      });
    } finally {
      await peer.close();
    }
  });
});

describe("proxies from the environment", () => {
  let ctl: TestController;
  let proxy: Awaited<ReturnType<typeof httpProxy>>;
  let port: string;
  beforeAll(async () => {
    ctl = await startController();
    port = new URL(ctl.controller.url).port;
    // `controller.invalid` cannot resolve (RFC 6761): only the proxy reaches it.
    proxy = await httpProxy({ "controller.invalid": "127.0.0.1", "logs.invalid": "127.0.0.1" });
  });
  afterAll(async () => {
    await proxy.close();
    await ctl.close();
  });
  afterEach(() => {
    proxy.handled.length = 0;
  });

  const launch = (name: string, env: Record<string, string>) =>
    entrypoint(
      [
        "-url",
        `http://controller.invalid:${port}/`,
        "-secret",
        ctl.controller.secretFor(name),
        "-name",
        name,
      ],
      { AGENT_CONNECT_TIMEOUT_MS: "2000", ...env },
    ).done;

  it.each([
    ["HTTP_PROXY", "HTTP_PROXY"],
    ["http_proxy (lower case)", "http_proxy"],
    ["ALL_PROXY", "ALL_PROXY"],
  ])("%s: a controller reachable only through a CONNECT proxy runs the job", async (what, variable) => {
    // Names are single-use: HTTP_PROXY and http_proxy must not share one.
    const name = `proxied-${what.replace(/\W+/g, "-").toLowerCase()}`;
    const record = ctl.controller.submit({ steps: [{ run: "echo through the proxy" }] });
    const { code } = await launch(name, { [variable]: proxy.url });
    expect(code).toBe(ExitCode.ok);
    expect(await ctl.controller.waitForJob(record.id)).toMatchObject({
      status: "succeeded",
      agent: { name },
    });
    expect((await ctl.client.log(record.id)).toString()).toBe("through the proxy\n");
    expect(proxy.handled).toContainEqual({ kind: "connect", target: `controller.invalid:${port}` });
  });

  it.each([
    ["NO_PROXY names the host", (p: string) => ({ HTTP_PROXY: p, NO_PROXY: "controller.invalid" })],
    ["no_proxy (lower case) by suffix", (p: string) => ({ http_proxy: p, no_proxy: ".invalid" })],
    ["only HTTPS_PROXY, for a plain ws:// controller", (p: string) => ({ HTTPS_PROXY: p })],
  ])("%s: the agent connects directly, and fails on the name", async (_what, env) => {
    const { code, last } = await launch("direct", { ...env(proxy.url), AGENT_CONNECT_TIMEOUT_MS: "500" });
    expect(code).toBe(ExitCode.controllerFailure);
    expect(last).toMatchObject({ code: "AGENT_ERR_CONTROLLER_UNREACHABLE" });
    expect(proxy.handled).toEqual([]);
  });

  it("a proxy variable that is not an http(s) URL is a configuration error (exit 2), naming it", async () => {
    const { code, stderr } = await launch("bad-proxy", { HTTPS_PROXY: "socks5://user:hunter2@proxy:1080" });
    expect(code).toBe(ExitCode.badConfig);
    expect(stderr).toMatch(/HTTPS_PROXY/);
    expect(stderr).not.toContain("hunter2");
  });

  it("the CloudWatch copy goes through the proxy too (the AWS SDK's requests)", async () => {
    const cloud = await startFakeCloudWatch();
    const saved = process.env.HTTP_PROXY;
    process.env.HTTP_PROXY = proxy.url;
    try {
      const name = "cw-proxied";
      ctl.controller.submit({ steps: [{ run: "echo copied through the proxy" }] });
      const endpoint = new URL(cloud.clientConfig.endpoint as string);
      const settings = cloudWatchSettings(
        { AGENT_CLOUDWATCH: "on", AWS_REGION: "eu-west-1", AGENT_LOG_GROUP: "/proxied" },
        "local",
        name,
      );
      const { logger } = captureLogger();
      // The controller is reached directly (NO_PROXY would say so; here its URL is loopback).
      process.env.NO_PROXY = "127.0.0.1";
      const outcome = await runAgent(agentConfigFor(ctl.controller, name), {
        logger,
        cloudWatch: {
          settings,
          clientConfig: { ...cloud.clientConfig, endpoint: `http://logs.invalid:${endpoint.port}` },
        },
      });
      expect(outcome.exitCode).toBe(ExitCode.ok);
      expect(outcome.logs?.summary).toMatchObject({ droppedEvents: 0 });
      expect((cloud.events("/proxied", name) ?? []).map((e) => e.message)).toContain(
        "copied through the proxy",
      );
      expect(proxy.handled.some((r) => r.target === `logs.invalid:${endpoint.port}`)).toBe(true);
      expect(proxy.handled.some((r) => r.target.startsWith("127.0.0.1"))).toBe(false);
    } finally {
      if (saved === undefined) delete process.env.HTTP_PROXY;
      else process.env.HTTP_PROXY = saved;
      delete process.env.NO_PROXY;
      await cloud.close();
    }
  });
});

describe("agent names beyond ASCII", () => {
  it.each([
    ["CJK and spaces", "构建 节点.lambda-abcdef"],
    ["emoji", "🚀 deploy 🐳.lambda-ghijkl"],
    ["a Jenkins label expression", "linux && docker.lambda-mnopqr"],
  ])("%s: carried to the controller, which runs the job for that name", async (_what, name) => {
    const ctl = await startController();
    try {
      const record = ctl.controller.submit({ steps: [{ run: 'printf "%s" "$AGENT_NAME"' }] });
      const { code } = await entrypoint(
        ["-url", ctl.controller.url, "-secret", ctl.controller.secretFor(name), "-name", name],
        {},
      ).done;
      expect(code).toBe(ExitCode.ok);
      expect(await ctl.controller.waitForJob(record.id)).toMatchObject({
        status: "succeeded",
        agent: { name },
      });
      expect((await ctl.client.log(record.id)).toString()).toBe(name);
    } finally {
      await ctl.close();
    }
  });
});

import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { detectController, discoveryUrl, ExitCode, runAgent, silentLogger } from "../../agent-core/index.ts";
import { agentConfigFor, startController, type TestController } from "../support/harness.ts";

let ctl: TestController;
beforeAll(async () => {
  ctl = await startController();
});
afterAll(async () => {
  await ctl.close();
});

async function server(headers: Record<string, string>, status = 404) {
  const http = createServer((_req, res) => {
    res.writeHead(status, headers);
    res.end("nothing here");
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/base`,
    close: () => new Promise((resolve) => http.close(resolve)),
  };
}

describe("auto mode: one request decides", () => {
  it("the reference controller answers its discovery route with the protocols it speaks", async () => {
    const res = await fetch(discoveryUrl(ctl.controller.url));
    expect(res.status).toBe(200);
    expect(res.headers.get("x-agent-protocols")).toBe("1");
    expect(await res.json()).toMatchObject({ controller: "reference", protocols: [1] });
    expect(
      await detectController(ctl.controller.url, { timeoutMs: 1_000, logger: silentLogger }),
    ).toMatchObject({
      kind: "native",
    });
  });

  it("any answer with X-Jenkins is Jenkins (even a 403), anything else is native", async () => {
    const jenkins = await server({ "X-Jenkins": "2.479.3" }, 403);
    const other = await server({});
    try {
      expect(await detectController(jenkins.url, { timeoutMs: 1_000, logger: silentLogger })).toMatchObject({
        kind: "jenkins",
        jenkinsVersion: "2.479.3",
      });
      expect(await detectController(other.url, { timeoutMs: 1_000, logger: silentLogger })).toMatchObject({
        kind: "native",
        how: "HTTP 404 without X-Jenkins (not a Jenkins controller)",
      });
    } finally {
      await jenkins.close();
      await other.close();
    }
  });

  it("asks below the controller's path, and a ws:// URL needs no request", async () => {
    expect(discoveryUrl("https://ci.example.com/base?x=1")).toBe(
      "https://ci.example.com/base/agents/v1/discovery",
    );
    expect(
      await detectController("ws://127.0.0.1:9/", { timeoutMs: 100, logger: silentLogger }),
    ).toMatchObject({
      kind: "native",
    });
  });

  it("an agent in auto mode runs natively against the reference controller", async () => {
    const config = agentConfigFor(ctl.controller, "auto-native", { idleTimeoutMs: 300, mode: "auto" });
    const outcome = await runAgent(config, { logger: silentLogger });
    expect(outcome.mode).toBe("native");
    expect(outcome.exitCode).toBe(ExitCode.idle);
  });
});

import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DISCOVERY_PATH,
  ExitCode,
  parseAgentConfig,
  runAgent,
  silentLogger,
  underController,
} from "../../agent-core/index.ts";
import { agentConfigFor, startController, type TestController, tempDir } from "../support/harness.ts";

let ctl: TestController;
const scratch = tempDir("mode-detection-");
beforeAll(async () => {
  ctl = await startController();
});
afterAll(async () => {
  await ctl.close();
  scratch.remove();
});

/** An HTTP server answering every request with `status` and `headers`; it records the paths asked. */
async function server(headers: Record<string, string>, status = 404) {
  const paths: string[] = [];
  const http = createServer((req: IncomingMessage, res) => {
    paths.push(req.url ?? "");
    res.writeHead(status, headers);
    res.end("nothing here");
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/base`,
    paths,
    close: () => new Promise((resolve) => http.close(resolve)),
  };
}

function autoConfig(url: string, name: string) {
  return parseAgentConfig({
    url,
    secret: "0123456789abcdef0123456789abcdef",
    name,
    workDir: scratch.path,
    connectTimeoutMs: 300,
    baseEnv: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
  });
}

describe("auto mode: one request decides, and it is the agent.jar request", () => {
  it("an answer with X-Jenkins is Jenkins, even a 403: the same request was its agent.jar request", async () => {
    const jenkins = await server({ "X-Jenkins": "2.479.3" }, 403);
    try {
      const outcome = await runAgent(autoConfig(jenkins.url, "auto-403"), { logger: silentLogger });
      expect(outcome.mode).toBe("jenkins");
      expect(outcome.jenkins?.jenkinsVersion).toBe("2.479.3");
      expect(outcome.error?.code).toBe("AGENT_ERR_AGENT_JAR");
      expect(outcome.summary).toContain("answered HTTP 403");
      expect(jenkins.paths).toEqual(["/base/jnlpJars/agent.jar"]);
    } finally {
      await jenkins.close();
    }
  });

  it("an answer without X-Jenkins is not Jenkins: the agent goes on natively", async () => {
    const other = await server({});
    try {
      const outcome = await runAgent(autoConfig(other.url, "auto-other"), { logger: silentLogger });
      expect(outcome.mode).toBe("native");
      expect(outcome.exitCode).not.toBe(ExitCode.ok);
      expect(other.paths[0]).toBe("/base/jnlpJars/agent.jar");
      expect(other.paths.filter((p) => p.includes("jnlpJars"))).toHaveLength(1);
    } finally {
      await other.close();
    }
  });

  it("a ws:// URL is native without a request", async () => {
    const outcome = await runAgent(autoConfig("ws://127.0.0.1:9/", "auto-ws"), { logger: silentLogger });
    expect(outcome.mode).toBe("native");
    expect(outcome.error?.code).toBe("AGENT_ERR_CONTROLLER_UNREACHABLE");
  });

  it("an agent in auto mode runs natively against the reference controller", async () => {
    const config = agentConfigFor(ctl.controller, "auto-native", { idleTimeoutMs: 300, mode: "auto" });
    const outcome = await runAgent(config, { logger: silentLogger });
    expect(outcome.mode).toBe("native");
    expect(outcome.exitCode).toBe(ExitCode.idle);
  });

  it("the reference controller also answers its discovery route with the protocols it speaks", async () => {
    const res = await fetch(underController(ctl.controller.url, DISCOVERY_PATH));
    expect(res.status).toBe(200);
    expect(res.headers.get("x-agent-protocols")).toBe("1");
    expect(res.headers.get("x-jenkins")).toBeNull();
    expect(await res.json()).toMatchObject({ controller: "reference", protocols: [1] });
  });
});

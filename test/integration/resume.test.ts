import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ExitCode, runAgent } from "../../agent-core/index.ts";
import { pattern } from "../fixtures/pattern.mjs";
import {
  agentConfigFor,
  captureLogger,
  ENTRYPOINT,
  FIXTURES,
  startController,
  type TestController,
} from "../support/harness.ts";
import { tcpProxy } from "../support/tcp-proxy.ts";

let ctl: TestController;
let proxy: Awaited<ReturnType<typeof tcpProxy>>;
beforeEach(async () => {
  ctl = await startController({ overrides: { heartbeatIntervalMs: 1_000 } });
  proxy = await tcpProxy(ctl.controller.url);
});
afterEach(async () => {
  await proxy.close();
  await ctl.close();
});

const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

describe("a resumable log stream", () => {
  it("survives the TCP connection being cut several times during 50 MB of output: byte for byte, no duplicates", async () => {
    const size = 50 * 1024 * 1024;
    const job = ctl.controller.submit({
      steps: [
        { argv: ["node", join(FIXTURES, "write-bytes-slowly.mjs"), String(size), "262144", "8"] },
        { run: "echo after" },
      ],
    });
    const { logger, entries } = captureLogger();
    const name = "resilient";
    const config = agentConfigFor(ctl.controller, name, {
      url: proxy.url,
      reconnectTimeoutMs: 20_000,
      maxUnackedBytes: 1_048_576,
    });
    const running = runAgent(config, { logger });
    // Cut whenever another ~8 MB have arrived, four times.
    for (let cut = 1; cut <= 4; cut++) {
      await expect
        .poll(() => ctl.controller.getJob(job.id)?.logBytes ?? 0, { timeout: 20_000, interval: 20 })
        .toBeGreaterThan(cut * 8 * 1024 * 1024);
      proxy.cut();
    }
    const outcome = await running;
    expect(outcome.exitCode).toBe(ExitCode.ok);
    const final = await ctl.controller.waitForJob(job.id);
    expect(final.status).toBe("succeeded");
    expect(final.reconnects).toBeGreaterThanOrEqual(4);
    const log = await ctl.client.log(job.id);
    expect(log.length).toBe(size + "after\n".length);
    expect(sha(log.subarray(0, size))).toBe(sha(pattern(size)));
    expect(log.subarray(size).toString()).toBe("after\n");
    expect(entries().filter((e) => e.msg === "session resumed").length).toBeGreaterThanOrEqual(4);
  });

  it("ends the job with a clear reason when the controller never comes back", async () => {
    const job = ctl.controller.submit({ steps: [{ run: "echo start; sleep 30" }] });
    const { logger } = captureLogger();
    const config = agentConfigFor(ctl.controller, "orphan", { url: proxy.url, reconnectTimeoutMs: 600 });
    const running = runAgent(config, { logger });
    await expect.poll(() => ctl.controller.getJob(job.id)?.logBytes ?? 0).toBeGreaterThan(0);
    await proxy.close(); // the controller is gone for good, as seen from the agent
    const outcome = await running;
    expect(outcome.exitCode).toBe(ExitCode.controllerFailure);
    expect(outcome.error?.code).toBe("AGENT_ERR_CONNECTION_LOST");
    expect(outcome.job?.steps[0]?.outcome.reason).toBe("error");
  });

  it("keeps the agent's memory bounded while the controller stalls under a 5 MB/s flood, and loses nothing", async () => {
    const seconds = 6;
    const size = 5 * 1024 * 1024 * seconds;
    const job = ctl.controller.submit({
      steps: [
        { argv: ["node", join(FIXTURES, "write-bytes-slowly.mjs"), String(size), String(512 * 1024), "100"] },
      ],
    });
    const name = "flooded";
    const agent = spawn(process.execPath, [ENTRYPOINT], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        JENKINS_URL: proxy.url,
        JENKINS_SECRET: ctl.controller.secretFor(name),
        JENKINS_AGENT_NAME: name,
        AGENT_HEARTBEAT_TIMEOUT_MS: "120000",
        AGENT_ACK_TIMEOUT_MS: "120000",
        AGENT_MAX_UNACKED_BYTES: String(4 * 1024 * 1024),
        AGENT_MAX_SPOOL_BYTES: String(16 * 1024 * 1024),
      },
      stdio: "ignore",
    });
    const exited = new Promise<number | null>((resolve) => agent.once("close", resolve));
    const rss = () =>
      Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${agent.pid}/status`, "utf8"))?.[1] ?? 0) * 1024;
    await expect
      .poll(() => ctl.controller.getJob(job.id)?.logBytes ?? 0, { timeout: 10_000 })
      .toBeGreaterThan(0);
    const before = rss();
    proxy.stall();
    let peak = before;
    const stalledUntil = Date.now() + 4_000;
    while (Date.now() < stalledUntil) {
      peak = Math.max(peak, rss());
      await new Promise((r) => setTimeout(r, 100));
    }
    proxy.unstall();
    expect(await exited).toBe(ExitCode.ok);
    // Memory window 4 MiB + socket buffers; the rest spilled to the spool file or paused the child.
    expect(peak - before).toBeLessThan(40 * 1024 * 1024);
    const log = await ctl.client.log(job.id);
    expect(log.length).toBe(size);
    expect(sha(log)).toBe(sha(pattern(size)));
  });
});

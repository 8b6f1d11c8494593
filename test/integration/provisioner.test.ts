import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ExitCode, runAgent } from "../../agent-core/index.ts";
import { LocalProvisioner } from "../../controller/index.ts";
import { agentConfigFor, captureLogger, startController, tempDir, until } from "../support/harness.ts";

describe("dispatch and the local provisioner", () => {
  it("launches the container entrypoint for a waiting job, which runs it and exits", async () => {
    const ctl = await startController({ provision: true });
    try {
      const record = ctl.controller.submit({
        name: "provisioned",
        labels: ["linux"],
        steps: [{ run: "echo on a fresh agent" }],
      });
      const final = await ctl.controller.waitForJob(record.id);
      expect(final).toMatchObject({ status: "succeeded", agent: { runtime: "local", labels: ["linux"] } });
      expect(final.queuedMs).toBeGreaterThanOrEqual(0);
      expect((await ctl.client.log(record.id)).toString()).toBe("on a fresh agent\n");
      const agentLog = join(ctl.dataDir, "agents", `${final.agent!.name}.log`);
      await until(
        () => readFileSync(agentLog, "utf8").includes('"msg":"agent finished"'),
        5_000,
        "the agent to finish",
      );
      const diagnostics = readFileSync(agentLog, "utf8");
      expect(diagnostics).not.toContain(ctl.controller.secretFor(final.agent!.name));
      // Launched as native (AGENT_MODE): no auto-mode request asked the controller what it is.
      expect(diagnostics).toContain('"msg":"connected to the controller"');
      expect(diagnostics).not.toContain('"msg":"mode detected"');
    } finally {
      await ctl.close();
    }
  });

  it("fails the job as a platform failure when no agent can start, after bounded attempts", async () => {
    const logs = tempDir("agent-logs-");
    const data = await startController({
      overrides: {
        retry: { infrastructure: 1 },
        provisioner: new LocalProvisioner({
          command: [process.execPath, "-e", "process.stderr.write('cannot start\\n'); process.exit(9)"],
          logDir: logs.path,
        }),
      },
    });
    try {
      const record = data.controller.submit({ steps: [{ run: "true" }] });
      const final = await data.controller.waitForJob(record.id);
      expect(final).toMatchObject({ status: "error", reason: "provision-failed", cause: "platform" });
      expect(final.message).toMatch(/after 2 attempts/);
      expect(final.message).toMatch(/exited with code 9/);
      expect(final.steps[0]?.status).toBe("skipped");
    } finally {
      await data.close();
      logs.remove();
    }
  });

  it("hands a job only to an agent whose labels include the job's labels", async () => {
    const ctl = await startController();
    try {
      const { logger } = captureLogger();
      const plain = runAgent(agentConfigFor(ctl.controller, "plain", { idleTimeoutMs: 1_500 }), { logger });
      await until(
        () => ctl.controller.listAgents().some((a) => a.name === "plain" && a.state === "idle"),
        5_000,
        "plain agent",
      );
      const record = ctl.controller.submit({ labels: ["gpu"], steps: [{ run: "echo on gpu" }] });
      const gpu = runAgent(agentConfigFor(ctl.controller, "gpu-1", { labels: ["gpu", "linux"] }), { logger });
      const final = await ctl.controller.waitForJob(record.id);
      expect(final.agent?.name).toBe("gpu-1");
      expect((await gpu).exitCode).toBe(ExitCode.ok);
      expect((await plain).exitCode).toBe(ExitCode.idle);
    } finally {
      await ctl.close();
    }
  });

  it("cancels a queued job at once", async () => {
    const ctl = await startController();
    try {
      const record = ctl.controller.submit({ steps: [{ run: "true" }] });
      const cancelled = await ctl.client.cancel(record.id);
      expect(cancelled).toMatchObject({ status: "cancelled", reason: "cancelled" });
      const events = [];
      for await (const event of ctl.client.events(record.id)) events.push(event.type);
      expect(events).toEqual(["status", "job-end"]);
    } finally {
      await ctl.close();
    }
  });
});

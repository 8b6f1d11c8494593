import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ExitCode, runAgent } from "../../agent-core/index.ts";
import {
  agentConfigFor,
  canMountTmpfs,
  captureLogger,
  FIXTURES,
  startController,
  type TestController,
  tempDir,
} from "../support/harness.ts";
import { tcpProxy } from "../support/tcp-proxy.ts";

let ctl: TestController;
let dir: ReturnType<typeof tempDir>;
beforeEach(async () => {
  ctl = await startController();
  dir = tempDir("spool-");
});
afterEach(async () => {
  await ctl.close();
  dir.remove();
});

describe("the output spool on a full filesystem", () => {
  it.skipIf(!canMountTmpfs)(
    "the spool is never charged to the job's disk budget, acknowledged-but-not-yet-removed bytes included (skipped where a tmpfs cannot be mounted: needs root)",
    async () => {
      // A private filesystem: the agent and its job are its only writers.
      const mountPoint = join(dir.path, "own");
      mkdirSync(mountPoint);
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=64m", "tmpfs", mountPoint]);
      const proxy = await tcpProxy(ctl.controller.url);
      try {
        const size = 24 * 1024 * 1024;
        const job = ctl.controller.submit({
          steps: [{ argv: ["node", join(FIXTURES, "write-bytes-slowly.mjs"), String(size), "262144", "4"] }],
        });
        const { logger } = captureLogger();
        const running = runAgent(
          agentConfigFor(ctl.controller, "spool-budget", {
            url: proxy.url,
            workDir: mountPoint,
            maxUnackedBytes: 65_536,
            maxSpoolBytes: 16 * 1024 * 1024,
            // Far less than the spool holds at its peak: only the job's own writes count.
            diskBudgetBytes: 2 * 1024 * 1024,
            diskHeadroomBytes: 0,
            monitorIntervalMs: 20,
            ackTimeoutMs: 60_000,
            heartbeatTimeoutMs: 60_000,
          }),
          { logger },
        );
        // Stall the controller now and then, so the spool fills and drains in parts.
        for (let i = 0; i < 3; i++) {
          await expect
            .poll(() => ctl.controller.getJob(job.id)?.logBytes ?? 0, { timeout: 20_000 })
            .toBeGreaterThan(i * 6 * 1024 * 1024);
          proxy.stall();
          await new Promise((r) => setTimeout(r, 400));
          proxy.unstall();
        }
        const outcome = await running;
        expect(outcome.exitCode).toBe(ExitCode.ok);
        expect(outcome.job?.diskUsedBytes).toBeLessThan(2 * 1024 * 1024);
        expect((await ctl.client.log(job.id)).length).toBe(size);
      } finally {
        await proxy.close();
        execFileSync("umount", ["-l", mountPoint]);
      }
    },
  );

  it.skipIf(!canMountTmpfs)(
    "ENOSPC while spilling is a typed failure (AGENT_ERR_IO), the job is still reported, reason disk, exit 5 (skipped where a tmpfs cannot be mounted: needs root)",
    async () => {
      const mountPoint = join(dir.path, "small");
      mkdirSync(mountPoint);
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mountPoint]);
      const proxy = await tcpProxy(ctl.controller.url);
      try {
        // The job fills most of the disk, then writes more output than the agent may hold in
        // memory while the controller is not reading: the spool takes the rest, then hits ENOSPC.
        const job = ctl.controller.submit({
          steps: [
            {
              run: `head -c 6291456 /dev/zero > filler && node ${join(FIXTURES, "write-bytes.mjs")} 8388608`,
            },
            { run: "echo never" },
          ],
        });
        const { logger, entries } = captureLogger();
        const running = runAgent(
          agentConfigFor(ctl.controller, "spool-full", {
            url: proxy.url,
            workDir: mountPoint,
            maxUnackedBytes: 65_536,
            diskHeadroomBytes: 0,
            ackTimeoutMs: 60_000,
            heartbeatTimeoutMs: 60_000,
          }),
          { logger },
        );
        await expect.poll(() => ctl.controller.getJob(job.id)?.status, { timeout: 10_000 }).toBe("running");
        proxy.stall();
        await expect
          .poll(() => entries().some((e) => String(e.msg).startsWith("the output spool failed")), {
            timeout: 20_000,
          })
          .toBe(true);
        proxy.unstall();
        const outcome = await running;
        expect(outcome.exitCode).toBe(ExitCode.disk);
        expect(outcome.error).toMatchObject({ code: "AGENT_ERR_IO", errno: "ENOSPC" });
        expect(outcome.job).toMatchObject({ status: "failed", reason: "disk", failedStepId: "1" });
        const final = await ctl.controller.waitForJob(job.id);
        expect(final).toMatchObject({ status: "failed", reason: "disk" });
        expect(final.message).toMatch(/cannot write the output spool .*no space left on device/i);
        expect(final.steps.map((s) => s.status)).toEqual(["failed", "skipped"]);
        // What the step wrote before it was stopped arrived whole (nothing dropped): a prefix of the pattern.
        expect(final.steps[0]?.stdoutBytes).toBe((await ctl.client.log(job.id)).length);
        // Nothing of the agent's is left on the small filesystem.
        expect(readdirSync(mountPoint).filter((name) => name.startsWith("spool-"))).toEqual([]);
      } finally {
        await proxy.close();
        execFileSync("umount", ["-l", mountPoint]);
      }
    },
  );
});

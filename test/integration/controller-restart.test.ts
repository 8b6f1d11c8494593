import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ExitCode, runAgent } from "../../agent-core/index.ts";
import { Controller, ControllerClient, type JobRecord, LocalProvisioner } from "../../controller/index.ts";
import { pattern } from "../fixtures/pattern.mjs";
import { type ServeProcess, startServe } from "../support/controller-process.ts";
import { agentConfigFor, captureLogger, FIXTURES, tempDir, until } from "../support/harness.ts";

const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function killPid(ref: string | undefined): void {
  const pid = Number(/^pid (\d+)$/.exec(ref ?? "")?.[1]);
  if (!Number.isInteger(pid)) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

describe("a controller restart", () => {
  it("is survived by a running job: the controller is killed mid-job, restarted, and the job completes byte for byte", async () => {
    const data = tempDir("ctl-restart-");
    cleanups.push(data.remove);
    let serve: ServeProcess = await startServe(["--port", "0", "--data-dir", data.path]);
    let client = new ControllerClient(serve.url);
    const size = 24 * 1024 * 1024;
    const job = await client.submit({
      steps: [
        { argv: ["node", join(FIXTURES, "write-bytes-slowly.mjs"), String(size), "131072", "10"] },
        { run: "echo after the restart" },
      ],
    });
    cleanups.push(async () =>
      killPid((await client.get(job.id).catch(() => undefined))?.attempts[0]?.platformRef),
    );
    cleanups.push(() => {
      serve.child.kill("SIGKILL");
    });
    await expect
      .poll(async () => (await client.get(job.id)).logBytes, { timeout: 20_000, interval: 50 })
      .toBeGreaterThan(4 * 1024 * 1024);

    serve.child.kill("SIGKILL");
    expect(await serve.exited).toBe("SIGKILL");

    serve = await startServe(["--port", String(serve.port), "--data-dir", data.path]);
    client = new ControllerClient(serve.url);
    let final: JobRecord | undefined;
    await until(
      () => {
        void client.get(job.id).then((record) => {
          final = record;
        });
        return final !== undefined && ["succeeded", "failed", "error", "cancelled"].includes(final.status);
      },
      40_000,
      "the job to end after the restart",
    );
    expect(final).toMatchObject({ status: "succeeded", reconnects: 1 });
    expect(final!.attempts).toHaveLength(1);
    expect(final!.attempts[0]).toMatchObject({ cause: "succeeded", platform: "local" });
    const log = await client.log(job.id);
    expect(log.length).toBe(size + "after the restart\n".length);
    expect(sha(log.subarray(0, size))).toBe(sha(pattern(size)));
    expect(log.subarray(size).toString()).toBe("after the restart\n");
    expect(final!.steps.map((s) => [s.status, s.stdoutBytes])).toEqual([
      ["succeeded", size],
      ["succeeded", "after the restart\n".length],
    ]);
    // Its sealed secrets are gone once the job ended.
    expect(existsSync(join(data.path, "jobs", job.id, "job.sealed"))).toBe(false);
  });

  it("keeps a queued job with its secrets, and an ended one with its log, across stop and start", async () => {
    const data = tempDir("ctl-restart-");
    cleanups.push(data.remove);
    const first = await Controller.start({ dataDir: data.path });
    const done = first.submit({ steps: [{ run: "echo done before" }] });
    const { logger } = captureLogger();
    expect((await runAgent(agentConfigFor(first, "before-restart"), { logger })).exitCode).toBe(ExitCode.ok);
    await first.waitForJob(done.id);
    const queued = first.submit({
      secrets: { TOKEN: "s3cr3t-value" },
      steps: [{ run: 'test "$TOKEN" = "$(printf s3cr3t-%s value)" && echo "token ok: $TOKEN"' }],
    });
    await first.stop();
    // The secret is on disk only sealed.
    for (const file of readdirSync(join(data.path, "jobs", queued.id))) {
      expect(readFileSync(join(data.path, "jobs", queued.id, file)).toString("latin1")).not.toContain(
        "s3cr3t-value",
      );
    }

    const second = await Controller.start({ dataDir: data.path });
    cleanups.push(() => second.stop({ endJobs: true }));
    const client = new ControllerClient(second.url);
    expect(await client.get(done.id)).toMatchObject({ status: "succeeded" });
    expect((await client.log(done.id)).toString()).toBe("done before\n");
    expect(second.getJob(queued.id)?.status).toBe("queued");
    expect((await runAgent(agentConfigFor(second, "after-restart"), { logger })).exitCode).toBe(ExitCode.ok);
    expect(await second.waitForJob(queued.id)).toMatchObject({ status: "succeeded" });
    expect((await client.log(queued.id)).toString()).toBe("token ok: ***\n");
  });

  it("refuses a name that ran a job that ended before the restart", async () => {
    const data = tempDir("ctl-restart-");
    cleanups.push(data.remove);
    const first = await Controller.start({ dataDir: data.path });
    first.submit({ steps: [{ run: "true" }] });
    const { logger } = captureLogger();
    expect((await runAgent(agentConfigFor(first, "used-once"), { logger })).exitCode).toBe(ExitCode.ok);
    await first.stop();
    const second = await Controller.start({ dataDir: data.path });
    cleanups.push(() => second.stop({ endJobs: true }));
    second.submit({ steps: [{ run: "true" }] });
    const outcome = await runAgent(agentConfigFor(second, "used-once"), { logger });
    expect(outcome.exitCode).toBe(ExitCode.refused);
    expect(outcome.error?.message).toMatch(/410/);
  });

  it("spends the names of attempts the journal ended after the record was last written", async () => {
    const data = tempDir("ctl-restart-");
    cleanups.push(data.remove);
    const hanging = new LocalProvisioner({
      command: [process.execPath, "-e", "setInterval(() => {}, 1000)"],
      logDir: join(data.path, "agents"),
    });
    const first = await Controller.start({ dataDir: data.path, provisioner: hanging, connectTimeoutMs: 300 });
    const job = first.submit({ steps: [{ run: "true" }] });
    await until(() => (first.getJob(job.id)?.attempts.length ?? 0) >= 2, 15_000, "a second attempt");
    const record = first.getJob(job.id)!;
    cleanups.push(() => {
      for (const attempt of record.attempts) killPid(attempt.platformRef);
    });
    const spentName = record.attempts[0]!.agent;
    expect(record.attempts[0]!.cause).toBe("never-connected");
    await first.stop();
    // The record as submitted: the controller died before its lazy write; the journal has it all.
    const path = join(data.path, "jobs", job.id, "job.json");
    const stored = JSON.parse(readFileSync(path, "utf8")) as JobRecord;
    writeFileSync(path, JSON.stringify({ ...stored, attempts: [], status: "queued" }));
    const second = await Controller.start({ dataDir: data.path });
    cleanups.push(() => second.stop({ endJobs: true }));
    expect(second.getJob(job.id)!.attempts[0]).toMatchObject({ agent: spentName, cause: expect.any(String) });
    const outcome = await runAgent(agentConfigFor(second, spentName), { logger: captureLogger().logger });
    expect(outcome.exitCode).toBe(ExitCode.refused);
    expect(outcome.error?.message).toMatch(/410/);
  });
});

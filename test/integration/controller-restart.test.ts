import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ExitCode, runAgent } from "../../agent-core/index.ts";
import { LOCK_FILE, LOCK_STALE_MS } from "../../controller/data-lock.ts";
import {
  CLI_EXIT,
  Controller,
  ControllerApiError,
  ControllerClient,
  type JobRecord,
  LocalProvisioner,
} from "../../controller/index.ts";
import { pattern } from "../fixtures/pattern.mjs";
import { CONTROLLER_BUNDLE, type ServeProcess, startServe } from "../support/controller-process.ts";
import { agentConfigFor, captureLogger, FIXTURES, runNode, tempDir, until } from "../support/harness.ts";

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

describe("one controller per data directory", () => {
  it("refuses a second controller on a directory in use, names the holder, and starts once it stopped", async () => {
    const data = tempDir("ctl-lock-");
    cleanups.push(data.remove);
    const first = await Controller.start({ dataDir: data.path });
    const lockFile = join(data.path, LOCK_FILE);
    expect(readFileSync(lockFile, "utf8")).toBe(`${process.pid} ${hostname()}\n`);
    const refused = await Controller.start({ dataDir: data.path }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ControllerApiError);
    expect(refused).toMatchObject({ status: 409, code: "CONTROLLER_ERR_DATA_IN_USE" });
    expect((refused as Error).message).toContain(
      `in use by another controller (pid ${process.pid}, this process)`,
    );
    // The refused start changed nothing: the first still holds the directory and answers.
    expect(readFileSync(lockFile, "utf8")).toBe(`${process.pid} ${hostname()}\n`);
    expect(await fetch(new URL("healthz", first.url)).then((res) => res.status)).toBe(200);
    await first.stop();
    expect(existsSync(lockFile)).toBe(false);
    const second = await Controller.start({ dataDir: data.path });
    await second.stop();
  });

  it("takes over the file of a controller that is gone; one of another host once it is no longer renewed", async () => {
    const data = tempDir("ctl-lock-");
    cleanups.push(data.remove);
    const lockFile = join(data.path, LOCK_FILE);
    // A process that ran and exited: its pid is free (and not reused within this test).
    const gone = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]);
    writeFileSync(lockFile, `${gone.stdout.toString()} ${hostname()}\n`);
    const controller = await Controller.start({ dataDir: data.path });
    expect(readFileSync(lockFile, "utf8")).toBe(`${process.pid} ${hostname()}\n`);
    await controller.stop();
    // Half-written or garbled: taken over too.
    writeFileSync(lockFile, "12");
    await (await Controller.start({ dataDir: data.path })).stop();

    // Our own pid, but no controller of this process holds it: a container's PID 1 restarted.
    writeFileSync(lockFile, `${process.pid} ${hostname()}\n`);
    await (await Controller.start({ dataDir: data.path })).stop();

    // Another host's (a shared filesystem, a container under a new name): its pid cannot be
    // checked, so it counts while it is renewed.
    writeFileSync(lockFile, "4242 other-host.example\n");
    await expect(Controller.start({ dataDir: data.path })).rejects.toThrow(
      /in use by a controller on other-host\.example \(pid 4242; its file is taken over once not renewed for 30 s\)/,
    );
    expect(readFileSync(lockFile, "utf8")).toBe("4242 other-host.example\n");
    const stale = new Date(Date.now() - LOCK_STALE_MS - 1_000);
    utimesSync(lockFile, stale, stale);
    await (await Controller.start({ dataDir: data.path })).stop();
  });

  it("`serve` on a directory another `serve` holds exits 2 and says which process; after a SIGKILL it starts, and stops cleanly on an early SIGTERM", async () => {
    const data = tempDir("ctl-lock-serve-");
    cleanups.push(data.remove);
    const first = await startServe(["--port", "0", "--data-dir", data.path, "--no-provision"]);
    const second = await runNode(CONTROLLER_BUNDLE, ["serve", "--port", "0", "--data-dir", data.path]);
    expect(second.code).toBe(CLI_EXIT.usage);
    expect(second.stderr).toContain(`is in use by another controller (pid ${first.child.pid})`);
    first.child.kill("SIGKILL");
    await first.exited;
    const third = await startServe(["--port", "0", "--data-dir", data.path, "--no-provision"]);
    // A SIGTERM as soon as it says it listens stops it cleanly (its handler is set before that
    // line is written), and it gives the directory back.
    third.child.kill("SIGTERM");
    expect(await third.exited).toBe(0);
    expect(third.stderr()).toContain('"msg":"stopping; unfinished jobs resume at the next start"');
    expect(existsSync(join(data.path, LOCK_FILE))).toBe(false);
  });
});

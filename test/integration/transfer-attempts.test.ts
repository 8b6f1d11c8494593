import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import {
  CloseCode,
  decodeControllerFrame,
  deriveAgentSecret,
  ExitCode,
  runAgent,
} from "../../agent-core/index.ts";
import { Controller, ControllerClient, type JobRecord } from "../../controller/index.ts";
import { fetchArtifacts } from "../../controller/workspace-cli.ts";
import { type ServeProcess, startServe } from "../support/controller-process.ts";
import { rawAgent } from "../support/fake-peers.ts";
import {
  agentConfigFor,
  captureLogger,
  startController,
  type TestController,
  tempDir,
  until,
} from "../support/harness.ts";
import { rawTar } from "../support/tar-builder.ts";
import { tcpProxy } from "../support/tcp-proxy.ts";

const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function scratch(prefix: string): string {
  const dir = tempDir(prefix);
  cleanups.push(dir.remove);
  return dir.path;
}

/** A small seed: one file whose text the steps print. */
function seedArchive(text: string): Buffer {
  return rawTar([
    { path: "src/", type: "Directory" },
    { path: "src/seed.txt", body: text },
  ]);
}

const ENDED = ["succeeded", "failed", "error", "cancelled"];

/** A raw agent ends its attempt as a SIGTERM would (`job-end` interrupted); the job goes back to the queue. */
async function interrupted(
  ctl: TestController,
  agent: Awaited<ReturnType<typeof rawAgent>>,
  seq: number,
  jobId: string,
): Promise<void> {
  agent.sendJson({
    v: 1,
    type: "job-end",
    seq,
    jobId,
    status: "failed",
    reason: "interrupted",
    durationMs: 5,
  });
  await until(() => ctl.controller.getJob(jobId)?.status === "queued", 10_000, "the job to be queued again");
}

describe("an artifact transfer across a controller restart", () => {
  it("keeps the acknowledged prefix when the controller is killed mid-transfer, and the resumed agent completes it byte for byte", async () => {
    const data = scratch("ctl-restart-artifacts-");
    const work = scratch("agent-work-");
    let serve: ServeProcess = await startServe(["--port", "0", "--data-dir", data, "--no-provision"]);
    cleanups.push(() => {
      serve.child.kill("SIGKILL");
    });
    // Agents reach the controller through a proxy that can stop forwarding: the kill then lands
    // while the artifacts are on their way, whatever the machine's speed.
    const proxy = await tcpProxy(serve.url);
    cleanups.push(() => proxy.close());
    let client = new ControllerClient(serve.url);
    const size = 24 * 1024 * 1024;
    const job = await client.submit({
      steps: [{ run: `head -c ${size} /dev/urandom > big.bin && sha256sum big.bin` }],
      artifacts: ["big.bin"],
    });
    const key = readFileSync(join(data, "controller.key"), "utf8").trim();
    const name = "artifacts-across-restart";
    const running = runAgent(
      agentConfigFor(
        { url: proxy.url, secretFor: (n: string) => deriveAgentSecret(key, n) } as Controller,
        name,
        {
          workDir: work,
          reconnectTimeoutMs: 30_000,
          maxUnackedBytes: 1_048_576,
        },
      ),
      { logger: captureLogger().logger },
    );
    const part = join(data, "jobs", job.id, "artifacts.tar.part");
    const partBytes = () => (existsSync(part) ? statSync(part).size : 0);
    await expect.poll(partBytes, { timeout: 30_000, interval: 2 }).toBeGreaterThan(2 * 1024 * 1024);
    proxy.stall();
    serve.child.kill("SIGKILL");
    expect(await serve.exited).toBe("SIGKILL");
    // Killed mid-transfer: a partial stream, nothing kept yet.
    const journal = readFileSync(join(data, "jobs", job.id, "events.jsonl"), "utf8");
    const committed = journal
      .split("\n")
      .filter((line) => line.includes('"type":"artifact"'))
      .reduce((sum, line) => sum + (JSON.parse(line) as { length: number }).length, 0);
    expect(committed).toBeGreaterThan(0);
    expect(committed).toBeLessThan(size);
    expect(journal).not.toContain('"type":"artifacts"');
    expect(existsSync(join(data, "jobs", job.id, "artifacts.tar"))).toBe(false);

    serve = await startServe(["--port", String(serve.port), "--data-dir", data, "--no-provision"]);
    proxy.cut();
    proxy.unstall();
    client = new ControllerClient(serve.url);
    const outcome = await running;
    expect(outcome.exitCode).toBe(ExitCode.ok);
    let final: JobRecord | undefined;
    await until(
      () => {
        void client.get(job.id).then((record) => {
          final = record;
        });
        return final !== undefined && ENDED.includes(final.status);
      },
      30_000,
      "the job to end after the restart",
    );
    expect(final).toMatchObject({ status: "succeeded", reconnects: 1 });
    expect(final!.attempts).toHaveLength(1);
    expect(final!.artifacts).toMatchObject({ status: "stored", entries: 1, attempt: 1 });
    const out = scratch("artifacts-out-");
    await fetchArtifacts(client, job.id, out);
    const printed = (await client.log(job.id)).toString().split(" ")[0];
    expect(statSync(join(out, "big.bin")).size).toBe(size);
    expect(sha(readFileSync(join(out, "big.bin")))).toBe(printed);
    expect(readdirSync(join(data, "jobs", job.id)).filter((f) => f.startsWith("artifacts"))).toEqual([
      "artifacts.tar",
    ]);
  });
});

describe("a workspace seed in the store", () => {
  it("survives a restart while its job is queued, seeds the job after it, and is removed once the job ended", async () => {
    const data = scratch("ctl-restart-seed-");
    const first = await Controller.start({ dataDir: data });
    const upload = await first.uploadWorkspace(Readable.from([seedArchive("seeded before the restart\n")]));
    const queued = first.submit({ workspace: { upload: upload.id }, steps: [{ run: "cat src/seed.txt" }] });
    expect(queued.workspace).toMatchObject({ bytes: upload.bytes, sha256: upload.sha256, entries: 2 });
    await first.stop();
    // The upload became the job's: nothing is left among the uploads.
    expect(readdirSync(join(data, "uploads"))).toEqual([]);
    expect(existsSync(join(data, "jobs", queued.id, "workspace.tar"))).toBe(true);

    const second = await Controller.start({ dataDir: data });
    cleanups.push(() => second.stop({ endJobs: true }));
    expect(second.getJob(queued.id)).toMatchObject({
      status: "queued",
      workspace: { sha256: upload.sha256 },
    });
    const work = scratch("agent-work-");
    const { logger } = captureLogger();
    const outcome = await runAgent(agentConfigFor(second, "after-restart", { workDir: work }), { logger });
    expect(outcome.exitCode).toBe(ExitCode.ok);
    const final = await second.waitForJob(queued.id);
    expect(final.status).toBe("succeeded");
    expect(final.transfers?.workspace).toMatchObject({ status: "done", sha256: upload.sha256 });
    expect((await new ControllerClient(second.url).log(queued.id)).toString()).toBe(
      "seeded before the restart\n",
    );
    expect(existsSync(join(data, "jobs", queued.id, "workspace.tar"))).toBe(false);
  });

  it("refuses to run again a seeded job once it ended (the seed is not kept), with a clear 409", async () => {
    const ctl = await startController();
    cleanups.push(() => ctl.close());
    const upload = await ctl.controller.uploadWorkspace(Readable.from([seedArchive("x\n")]));
    const job = ctl.controller.submit({ workspace: { upload: upload.id }, steps: [{ run: "true" }] });
    ctl.controller.cancel(job.id);
    expect(() => ctl.controller.retry(job.id)).toThrow(
      expect.objectContaining({
        status: 409,
        message: expect.stringMatching(/seeded with a workspace archive/),
      }),
    );
  });
});

describe("transfers and single-use names", () => {
  /** Workspace frames a raw agent received: offsets and lengths. */
  function workspaceFrames(socket: import("ws").WebSocket): { offset: number; length: number }[] {
    const frames: { offset: number; length: number }[] = [];
    socket.on("message", (data, isBinary) => {
      if (!isBinary) return;
      const frame = decodeControllerFrame(data as Buffer);
      frames.push({ offset: frame.offset, length: frame.data.length });
    });
    return frames;
  }

  it("serves the seed to the attempt's agent only: a spent name is refused, and a retry's agent pulls it from the start", async () => {
    const ctl = await startController();
    cleanups.push(() => ctl.close());
    const seed = seedArchive("y".repeat(300_000));
    const upload = await ctl.controller.uploadWorkspace(Readable.from([seed]));
    const job = ctl.controller.submit({
      workspace: { upload: upload.id },
      steps: [{ id: "s1", run: "true" }],
    });

    // Attempt 1: an agent takes the job, pulls part of the seed, then is interrupted.
    const first = await rawAgent(ctl.controller, "seed-first");
    const firstFrames = workspaceFrames(first.socket);
    first.hello();
    await first.next("job");
    first.sendJson({ v: 1, type: "workspace-pull", jobId: job.id, offset: 0, length: 65_536 });
    await expect.poll(() => firstFrames.reduce((n, f) => n + f.length, 0)).toBe(65_536);
    await interrupted(ctl, first, 1, job.id);
    expect(ctl.controller.getJob(job.id)!.attempts.map((a) => a.cause)).toEqual(["interrupted"]);
    // Its session is over (closed by the controller, or refusing what comes after job-end): a
    // pull on it is answered with nothing.
    if (first.socket.readyState === first.socket.OPEN)
      first.sendJson({ v: 1, type: "workspace-pull", jobId: job.id, offset: 65_536, length: 65_536 });
    expect([CloseCode.normal, CloseCode.outOfOrder]).toContain((await first.closed).code);
    expect(firstFrames.reduce((n, f) => n + f.length, 0)).toBe(65_536);

    // The spent name cannot come back for the seed: refused at the upgrade (410)...
    await expect(rawAgent(ctl.controller, "seed-first")).rejects.toThrow(/410/);
    // ...and let in only to resume: it hears that its attempt ended, and a pull gets nothing.
    const resumed = await rawAgent(ctl.controller, "seed-first", { "X-Agent-Resume": job.id });
    const resumedFrames = workspaceFrames(resumed.socket);
    resumed.hello([], job.id);
    resumed.sendJson({ v: 1, type: "workspace-pull", jobId: job.id, offset: 0, length: 65_536 });
    expect(await resumed.next("resume")).toMatchObject({ jobId: job.id, seq: 1, ended: true });
    expect((await resumed.closed).code).toBe(CloseCode.outOfOrder);
    expect(resumedFrames).toEqual([]);

    // Attempt 2: a new agent pulls the whole seed from its first byte.
    const second = await rawAgent(ctl.controller, "seed-second");
    const secondFrames = workspaceFrames(second.socket);
    second.hello();
    await second.next("job");
    second.sendJson({ v: 1, type: "workspace-pull", jobId: job.id, offset: 0, length: seed.length });
    await expect.poll(() => secondFrames.reduce((n, f) => n + f.length, 0)).toBe(seed.length);
    expect(secondFrames[0]!.offset).toBe(0);
    expect(ctl.controller.getJob(job.id)!.attempts.map((a) => a.agent)).toEqual([
      "seed-first",
      "seed-second",
    ]);
    second.socket.close();
  });
});

describe("artifacts of a retried attempt", () => {
  it("starts afresh: a partial stream of the interrupted attempt is dropped, never joined to the retry's", async () => {
    const ctl = await startController();
    cleanups.push(() => ctl.close());
    const job = ctl.controller.submit({ artifacts: ["dist"], steps: [{ id: "s1", run: "true" }] });
    const run = async (name: string) => {
      const agent = await rawAgent(ctl.controller, name);
      agent.hello();
      await agent.next("job");
      agent.emptyStep(job.id, "s1", 1);
      return agent;
    };
    // Attempt 1 sends 3 KiB of its artifacts, then is interrupted before their end.
    const first = await run("partial-first");
    first.artifact(3, 0, Buffer.alloc(2048, 1));
    first.artifact(4, 2048, Buffer.alloc(1024, 1));
    await interrupted(ctl, first, 5, job.id);
    expect(ctl.controller.getJob(job.id)?.artifacts).toBeUndefined();
    // Attempt 2 sends its own from offset 0: accepted, checked and kept alone.
    const second = await run("partial-second");
    const own = Buffer.alloc(1536, 2);
    second.artifact(3, 0, own);
    second.artifactsEnd(4, job.id, own.length, sha(own));
    await expect
      .poll(() => ctl.controller.getJob(job.id)?.artifacts)
      .toMatchObject({ status: "stored", bytes: own.length, attempt: 2 });
    expect(readFileSync(ctl.controller.artifactsOf(job.id).path).equals(own)).toBe(true);
    second.socket.close();
  });
});

describe("the per-job artifact cap", () => {
  it("fails a job whose artifacts are over maxArtifactBytes, clearly, and keeps none of them", async () => {
    const ctl = await startController({ overrides: { maxArtifactBytes: 256 * 1024 } });
    cleanups.push(() => ctl.close());
    const work = scratch("agent-work-");
    const job = ctl.controller.submit({
      steps: [{ run: "head -c 2097152 /dev/urandom > big.bin && echo written" }],
      artifacts: ["big.bin"],
    });
    const { logger } = captureLogger();
    const outcome = await runAgent(agentConfigFor(ctl.controller, "over-cap", { workDir: work }), { logger });
    expect(outcome.exitCode).toBe(ExitCode.ok);
    const final = await ctl.controller.waitForJob(job.id);
    expect(final).toMatchObject({
      status: "failed",
      reason: "artifact-limit",
      cause: "user",
      message: expect.stringMatching(
        /artifacts were over the store's cap of 262144 bytes \(maxArtifactBytes\)/,
      ),
      artifacts: { status: "failed", code: "CONTROLLER_ERR_ARTIFACTS_TOO_LARGE", attempt: 1 },
    });
    expect(final.attempts.map((a) => a.cause)).toEqual(["artifact-limit"]);
    // The step's output is kept; nothing of the artifacts is.
    expect((await ctl.client.log(job.id)).toString()).toBe("written\n");
    expect(() => ctl.controller.artifactsOf(job.id)).toThrow(expect.objectContaining({ status: 404 }));
    expect(readdirSync(join(ctl.dataDir, "jobs", job.id)).filter((f) => f.startsWith("artifacts"))).toEqual(
      [],
    );
  });
});

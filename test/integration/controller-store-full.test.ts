import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, rmSync, statfsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { ControllerClient, type JobRecord } from "../../controller/index.ts";
import { pattern } from "../fixtures/pattern.mjs";
import { type ServeProcess, startServe } from "../support/controller-process.ts";
import { canMountTmpfs, FIXTURES, tempDir, until } from "../support/harness.ts";
import { rawTar } from "../support/tar-builder.ts";

/**
 * The controller's data dir fills up while jobs run (a small tmpfs with a ballast file): the
 * controller must not crash, must not acknowledge what it could not store, and must carry on
 * once there is room again, the log byte for byte.
 */

const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const TERMINAL = ["succeeded", "failed", "error", "cancelled"];

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A tmpfs of `sizeMiB` with a ballast file of `ballastMiB` (removed to make room). */
function smallDisk(
  sizeMiB: number,
  ballastMiB: number,
): { path: string; freeBytes: () => number; fill: (leaveBytes?: number) => void; makeRoom: () => void } {
  const dir = tempDir("store-full-");
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${sizeMiB}m`, "tmpfs", dir.path]);
  cleanups.push(() => {
    execFileSync("umount", ["-l", dir.path]);
    dir.remove();
  });
  const ballast = join(dir.path, "ballast");
  writeFileSync(ballast, Buffer.alloc(ballastMiB * 1024 * 1024));
  const freeBytes = () => {
    const stats = statfsSync(dir.path);
    return stats.bavail * stats.bsize;
  };
  return {
    path: dir.path,
    freeBytes,
    /** Grows the ballast until `leaveBytes` are free. */
    fill: (leaveBytes = 1024) => {
      const held = existsSync(ballast) ? statSync(ballast).size : 0;
      writeFileSync(ballast, Buffer.alloc(Math.max(0, held + freeBytes() - leaveBytes)));
    },
    makeRoom: () => rmSync(ballast, { force: true }),
  };
}

async function serveOn(dataDir: string): Promise<{ serve: ServeProcess; client: ControllerClient }> {
  const serve = await startServe(["--port", "0", "--data-dir", dataDir]);
  cleanups.push(async () => {
    serve.child.kill("SIGKILL");
    await serve.exited;
  });
  return { serve, client: new ControllerClient(serve.url) };
}

async function ended(client: ControllerClient, id: string, timeoutMs = 60_000): Promise<JobRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const record = await client.get(id);
    if (TERMINAL.includes(record.status)) return record;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${record.status} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("a full data dir", () => {
  it.skipIf(!canMountTmpfs)(
    "holds a running job while the disk is full and completes it byte for byte once there is room (skipped: needs to mount a tmpfs)",
    async () => {
      const disk = smallDisk(8, 6);
      const dataDir = join(disk.path, "data");
      const { serve, client } = await serveOn(dataDir);
      const size = 4 * 1024 * 1024;
      const job = await client.submit({
        steps: [
          { argv: ["node", join(FIXTURES, "write-bytes-slowly.mjs"), String(size), "65536", "5"] },
          { run: "echo after" },
        ],
      });
      await until(() => disk.freeBytes() < 64 * 1024, 30_000, "the data dir to fill up");
      // Full for a while: the controller stays up and the job waits.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect(serve.child.exitCode, serve.stderr()).toBe(null);
      expect((await client.get(job.id)).status).toMatch(/running|assigned/);
      disk.makeRoom();
      const final = await ended(client, job.id);
      expect(final, serve.stderr()).toMatchObject({ status: "succeeded" });
      expect(final.attempts).toHaveLength(1);
      // What was dropped while a message was held came again through a resume.
      expect(final.reconnects).toBeGreaterThanOrEqual(1);
      const log = await client.log(job.id);
      expect(log.length).toBe(size + "after\n".length);
      expect(sha(log.subarray(0, size))).toBe(sha(pattern(size)));
      expect(final.steps.map((s) => [s.status, s.stdoutBytes])).toEqual([
        ["succeeded", size],
        ["succeeded", 6],
      ]);
      expect(serve.child.exitCode).toBe(null);
    },
  );

  it.skipIf(!canMountTmpfs)(
    "refuses a submission it cannot store with 507 and a clear code, leaves nothing behind, and takes the next once there is room (skipped: needs to mount a tmpfs)",
    async () => {
      const disk = smallDisk(2, 0);
      const dataDir = join(disk.path, "data");
      const { serve, client } = await serveOn(dataDir);
      disk.fill();
      const res = await fetch(new URL("api/v1/jobs", serve.url), {
        method: "POST",
        body: JSON.stringify({
          labels: ["nobody"],
          env: { PAD: "x".repeat(64 * 1024) },
          steps: [{ run: "true" }],
        }),
      });
      expect(res.status).toBe(507);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("CONTROLLER_ERR_STORE");
      expect(readdirSync(join(dataDir, "jobs"))).toEqual([]);
      disk.makeRoom();
      const record = await client.submit({ labels: ["nobody"], steps: [{ run: "true" }] });
      expect(record.status).toBe("queued");
      expect(serve.child.exitCode).toBe(null);
    },
  );

  it.skipIf(!canMountTmpfs)(
    "holds artifacts the disk has no room for and stores every byte once there is room (skipped: needs to mount a tmpfs)",
    async () => {
      const disk = smallDisk(8, 6);
      const { serve, client } = await serveOn(join(disk.path, "data"));
      const size = 4 * 1024 * 1024;
      const job = await client.submit({
        steps: [{ run: `head -c ${size} /dev/urandom > big.bin && sha256sum big.bin` }],
        artifacts: ["big.bin"],
      });
      // Artifact frames are up to 256 KiB: the one that finds no room leaves less than that.
      await until(() => disk.freeBytes() < 256 * 1024, 30_000, "the data dir to fill up");
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect((await client.get(job.id)).status).toMatch(/running|assigned/);
      disk.makeRoom();
      const final = await ended(client, job.id);
      expect(final, serve.stderr()).toMatchObject({
        status: "succeeded",
        artifacts: { status: "stored", entries: 1 },
      });
      const printed = (await client.log(job.id)).toString().split(" ")[0];
      const artifacts = await client.artifacts(job.id);
      const chunks: Buffer[] = [];
      for await (const chunk of artifacts.stream) chunks.push(Buffer.from(chunk));
      const tar = Buffer.concat(chunks);
      expect(sha(tar)).toBe(artifacts.sha256);
      // The archive's one member, after its 512-byte header.
      expect(sha(tar.subarray(512, 512 + size))).toBe(printed);
      expect(serve.child.exitCode).toBe(null);
    },
  );

  it.skipIf(!canMountTmpfs)(
    "refuses a workspace upload it cannot store with 507, and gives a seed back to its upload when the job cannot be stored (skipped: needs to mount a tmpfs)",
    async () => {
      const disk = smallDisk(4, 0);
      const dataDir = join(disk.path, "data");
      const { serve, client } = await serveOn(dataDir);
      const archive = rawTar([{ path: "seed.txt", body: "x".repeat(256 * 1024) }]);
      disk.fill();
      await expect(client.uploadWorkspace(Readable.from([archive]))).rejects.toMatchObject({
        status: 507,
        code: "CONTROLLER_ERR_STORE",
      });
      expect(readdirSync(join(dataDir, "uploads"))).toEqual([]);
      disk.makeRoom();
      const upload = await client.uploadWorkspace(Readable.from([archive]));
      disk.fill();
      const job = {
        workspace: { upload: upload.id },
        env: { PAD: "x".repeat(64 * 1024) },
        steps: [{ run: "wc -c < seed.txt" }],
      };
      await expect(client.submit(job)).rejects.toMatchObject({ status: 507, code: "CONTROLLER_ERR_STORE" });
      expect(readdirSync(join(dataDir, "jobs"))).toEqual([]);
      disk.makeRoom();
      // The upload is still there: the same submission works once there is room.
      const record = await client.submit(job);
      const final = await ended(client, record.id);
      expect(final, serve.stderr()).toMatchObject({ status: "succeeded" });
      expect((await client.log(record.id)).toString()).toBe(`${256 * 1024}\n`);
    },
  );

  it.skipIf(!canMountTmpfs)(
    "serve on a full data dir says so and exits with the usage code, without a stack (skipped: needs to mount a tmpfs)",
    async () => {
      const disk = smallDisk(1, 0);
      disk.fill(0);
      const dataDir = join(disk.path, "data");
      const failed = await startServe(["--port", "0", "--data-dir", dataDir]).then(
        () => undefined,
        (error: Error) => error.message,
      );
      expect(failed).toContain("exited (2)");
      expect(failed).toContain(
        `controller: the controller cannot use its data dir ${dataDir}: no space left`,
      );
      expect(failed).not.toMatch(/internal error|\n\s+at /);
    },
  );
});

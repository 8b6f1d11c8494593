import { createHash, randomBytes } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CacheStore, ExitCode, runAgent } from "../../agent-core/index.ts";
import { fetchArtifacts, uploadDirectory } from "../../controller/workspace-cli.ts";
import {
  agentConfigFor,
  captureLogger,
  startController,
  type TestController,
  tempDir,
} from "../support/harness.ts";
import { rawTar } from "../support/tar-builder.ts";
import { tcpProxy } from "../support/tcp-proxy.ts";

let ctl: TestController;
let dir: ReturnType<typeof tempDir>;
beforeEach(async () => {
  ctl = await startController({ overrides: { heartbeatIntervalMs: 1_000 } });
  dir = tempDir("transfers-e2e-");
});
afterEach(async () => {
  await ctl.close();
  dir.remove();
});

const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** Every path under `root` with what it is: a file's mode and hash, a link's target, a directory. */
function describeTree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rel of readdirSync(root, { recursive: true }).map(String).sort()) {
    const stats = lstatSync(join(root, rel));
    if (stats.isSymbolicLink()) out[rel] = `link -> ${readlinkSync(join(root, rel))}`;
    else if (stats.isDirectory()) out[rel] = "dir";
    else out[rel] = `file ${(stats.mode & 0o777).toString(8)} ${sha(readFileSync(join(root, rel)))}`;
  }
  return out;
}

function sourceTree(): string {
  const src = join(dir.path, "src");
  mkdirSync(join(src, "bin"), { recursive: true });
  mkdirSync(join(src, "empty/nested"), { recursive: true });
  mkdirSync(join(src, "ünïcødé 日本"), { recursive: true });
  writeFileSync(join(src, "bin/data.bin"), randomBytes(2 * 1024 * 1024 + 3));
  writeFileSync(join(src, "bin/run.sh"), "#!/bin/sh\necho ran\n", { mode: 0o755 });
  writeFileSync(join(src, "ünïcødé 日本/ファイル ✓.txt"), "unicode ✓\n");
  symlinkSync("bin/run.sh", join(src, "run-link"));
  symlinkSync("../bin", join(src, "ünïcødé 日本/bin-dir"));
  return src;
}

function agent(name: string, overrides: Parameters<typeof agentConfigFor>[2] = {}) {
  return agentConfigFor(ctl.controller, name, { workDir: join(dir.path, `work-${name}`), ...overrides });
}

describe("workspace seed and artifacts over the session", () => {
  it("a tree with binary files, links, empty dirs and unicode names goes in and comes back the same", async () => {
    const src = sourceTree();
    const upload = await uploadDirectory(ctl.client, src, [], captureLogger().logger);
    const job = ctl.controller.submit({
      workspace: { upload: upload.id },
      steps: [
        {
          run: 'test -L run-link && test -d empty/nested && ./run-link && cat "ünïcødé 日本/ファイル ✓.txt"',
        },
      ],
      artifacts: { paths: ["**"], when: "always" },
    });
    const outcome = await runAgent(agent("roundtrip"), { logger: captureLogger().logger });
    expect(outcome.exitCode).toBe(ExitCode.ok);
    const record = await ctl.controller.waitForJob(job.id);
    expect(record.status).toBe("succeeded");
    expect(record.workspace).toMatchObject({ bytes: upload.bytes, sha256: upload.sha256 });
    expect(record.transfers?.workspace).toMatchObject({ status: "done", sha256: upload.sha256 });
    expect(record.artifacts).toMatchObject({ status: "stored" });
    expect((await ctl.client.log(job.id)).toString()).toContain("ran\nunicode ✓\n");
    const out = join(dir.path, "out");
    const fetched = await fetchArtifacts(ctl.client, job.id, out);
    expect(fetched.digest.sha256).toBe(record.artifacts?.status === "stored" ? record.artifacts.sha256 : "");
    expect(describeTree(out)).toEqual(describeTree(src));
    // The seed is not kept once the job ended.
    expect(existsSync(join(ctl.dataDir, "jobs", job.id, "workspace.tar"))).toBe(false);
  });

  it("keeps artifacts after a failed step when asked (on-failure), and the job stays failed", async () => {
    const job = ctl.controller.submit({
      steps: [{ run: "mkdir -p out && echo partial > out/report.txt && exit 3" }, { run: "echo never" }],
      artifacts: { paths: ["out"], when: "on-failure" },
    });
    const outcome = await runAgent(agent("failing"), { logger: captureLogger().logger });
    expect(outcome.exitCode).toBe(ExitCode.jobFailed);
    const record = await ctl.controller.waitForJob(job.id);
    expect(record).toMatchObject({
      status: "failed",
      reason: "exit",
      artifacts: { status: "stored", entries: 2 },
    });
    const out = join(dir.path, "out");
    await fetchArtifacts(ctl.client, job.id, out);
    expect(readFileSync(join(out, "out/report.txt"), "utf8")).toBe("partial\n");
  });

  it("refuses a seed over the agent's disk budget before the first step, and says which entry", async () => {
    const src = join(dir.path, "big");
    mkdirSync(src);
    writeFileSync(join(src, "blob.bin"), randomBytes(200_000));
    const upload = await uploadDirectory(ctl.client, src, [], captureLogger().logger);
    const job = ctl.controller.submit({ workspace: { upload: upload.id }, steps: [{ run: "echo never" }] });
    const outcome = await runAgent(agent("small", { diskBudgetBytes: 50_000 }), {
      logger: captureLogger().logger,
    });
    expect(outcome.exitCode).toBe(ExitCode.disk);
    const record = await ctl.controller.waitForJob(job.id);
    expect(record).toMatchObject({
      status: "failed",
      reason: "disk",
      transfers: { workspace: { status: "failed", code: "AGENT_ERR_ARCHIVE_TOO_LARGE", entry: "blob.bin" } },
    });
    expect(record.steps[0]?.status).toBe("skipped");
  });

  it("refuses an upload agents would refuse, naming the rule and the entry", async () => {
    const tar = rawTar([
      { path: "ok.txt", body: "x" },
      { path: "../../etc/cron.d/x", body: "evil" },
    ]);
    await expect(ctl.client.uploadWorkspace(Readable.from([tar]))).rejects.toMatchObject({
      status: 400,
      code: "CONTROLLER_ERR_BAD_ARCHIVE",
      message: expect.stringContaining('AGENT_ERR_ARCHIVE_PARENT_PATH, entry "../../etc/cron.d/x"'),
    });
  });
});

describe("an artifact transfer cut by the connection dropping", () => {
  it("resumes where the controller stopped and stores every byte once", async () => {
    const proxy = await tcpProxy(ctl.controller.url);
    try {
      const size = 48 * 1024 * 1024;
      const job = ctl.controller.submit({
        steps: [{ run: `head -c ${size} /dev/urandom > big.bin && sha256sum big.bin` }],
        artifacts: ["big.bin"],
      });
      const running = runAgent(
        agent("cut", { url: proxy.url, reconnectTimeoutMs: 20_000, maxUnackedBytes: 1_048_576 }),
        {
          logger: captureLogger().logger,
        },
      );
      const part = join(ctl.dataDir, "jobs", job.id, "artifacts.tar.part");
      const partBytes = () => (existsSync(part) ? statSync(part).size : 0);
      await expect.poll(partBytes, { timeout: 30_000, interval: 2 }).toBeGreaterThan(4 * 1024 * 1024);
      proxy.cut();
      const outcome = await running;
      expect(outcome.exitCode).toBe(ExitCode.ok);
      const record = await ctl.controller.waitForJob(job.id);
      expect(record.reconnects).toBeGreaterThanOrEqual(1);
      expect(record.artifacts).toMatchObject({ status: "stored", entries: 1 });
      const out = join(dir.path, "out");
      await fetchArtifacts(ctl.client, job.id, out);
      const printed = (await ctl.client.log(job.id)).toString().split(" ")[0];
      expect(statSync(join(out, "big.bin")).size).toBe(size);
      expect(sha(readFileSync(join(out, "big.bin")))).toBe(printed);
    } finally {
      await proxy.close();
    }
  });
});

describe("warm caches across jobs of one process", () => {
  it("the second job of the same repository and protected branch hits what the first wrote; an unprotected branch does not", async () => {
    const workDir = join(dir.path, "work-warm");
    const caches = new CacheStore({ root: join(workDir, "caches") });
    const run = async (branch: string, script: string) => {
      const job = ctl.controller.submit({
        repository: "github.com/acme/app",
        branch,
        caches: ["npm"],
        steps: [{ run: script }],
      });
      const outcome = await runAgent(agentConfigFor(ctl.controller, `warm-${job.id}`, { workDir }), {
        logger: captureLogger().logger,
        caches,
      });
      return { outcome, record: await ctl.controller.waitForJob(job.id) };
    };
    const first = await run(
      "main",
      'test "$npm_config_cache" = "$AGENT_CACHE_NPM" && echo warm > "$AGENT_CACHE_NPM/marker"',
    );
    expect(first.record).toMatchObject({
      status: "succeeded",
      cacheTrust: "github.com/acme/app@protected",
      caches: { hits: [], misses: ["npm"] },
    });
    const second = await run("main", 'test "$(cat "$AGENT_CACHE_NPM/marker")" = warm');
    expect(second.record).toMatchObject({ status: "succeeded", caches: { hits: ["npm"], misses: [] } });
    const pr = await run("feature/x", 'test ! -e "$AGENT_CACHE_NPM/marker"');
    expect(pr.record).toMatchObject({
      status: "succeeded",
      cacheTrust: "github.com/acme/app@unprotected",
      caches: { hits: [], misses: ["npm"], evictions: [expect.objectContaining({ reason: "trust" })] },
    });
  });
});

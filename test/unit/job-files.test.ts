import { createHash } from "node:crypto";
import { appendFileSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { JobFiles, type ReadEvent } from "../../controller/job-files.ts";
import type { JobRecord } from "../../controller/job-record.ts";
import { tempDir } from "../support/harness.ts";

const dirs: { remove: () => void }[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) dir.remove();
});

function jobDir(): string {
  const dir = tempDir("job-files-");
  dirs.push(dir);
  return join(dir.path, "job");
}

function writeSome(files: JobFiles): void {
  files.appendEvent({ type: "status", status: "queued", at: "2026-01-01T00:00:00.000Z" });
  files.appendOutput({ stepId: "1", stream: "stdout", data: Buffer.from("hello "), seq: 2, attempt: 1 });
  files.appendOutput({ stepId: "1", stream: "stderr", data: Buffer.from("wörld\n"), seq: 3, attempt: 1 });
}

async function readAll(files: JobFiles): Promise<ReadEvent[]> {
  const events: ReadEvent[] = [];
  for await (const event of files.read({ follow: false })) events.push(event);
  return events;
}

describe("JobFiles: the journal is the commit point", () => {
  it("reopens a job's files with every committed event and its output", async () => {
    const dir = jobDir();
    const files = JobFiles.create(dir);
    writeSome(files);
    files.close();
    const { files: reopened, events } = JobFiles.open(dir, { ended: false });
    expect(events.map((e) => e.type)).toEqual(["status", "output", "output"]);
    expect(reopened.outputBytes).toBe(Buffer.byteLength("hello wörld\n"));
    const read = await readAll(reopened);
    expect(read.map((e) => e.data?.toString() ?? e.event.type)).toEqual(["status", "hello ", "wörld\n"]);
    reopened.close();
  });

  it.each([
    ["a torn last journal line", (dir: string) => appendFileSync(join(dir, "events.jsonl"), '{"type":"outp')],
    [
      "output bytes written before their journal line",
      (dir: string) => appendFileSync(join(dir, "output.log"), "uncommitted bytes"),
    ],
    [
      "both, with a line that is not JSON",
      (dir: string) => {
        appendFileSync(join(dir, "output.log"), "x".repeat(5000));
        appendFileSync(join(dir, "events.jsonl"), "not json at all\n");
      },
    ],
  ])("repairs %s after the process died", async (_what, crash) => {
    const dir = jobDir();
    const files = JobFiles.create(dir);
    writeSome(files);
    files.close();
    const committedEvents = statSync(join(dir, "events.jsonl")).size;
    crash(dir);
    const { files: reopened, events } = JobFiles.open(dir, { ended: false });
    expect(events).toHaveLength(3);
    expect(statSync(join(dir, "events.jsonl")).size).toBe(committedEvents);
    expect(readFileSync(join(dir, "output.log")).toString()).toBe("hello wörld\n");
    // Appending after the repair continues where the committed log ended.
    reopened.appendOutput({ stepId: "1", stream: "stdout", data: Buffer.from("more\n"), seq: 4, attempt: 1 });
    reopened.close();
    expect(readFileSync(join(dir, "output.log")).toString()).toBe("hello wörld\nmore\n");
    const { events: after } = JobFiles.open(dir, { ended: true });
    expect(after.at(-1)).toMatchObject({ type: "output", offset: 13, length: 5, seq: 4 });
  });

  it("lets a follower wait for new events and end when the log closes", async () => {
    const files = JobFiles.create(jobDir());
    const seen: string[] = [];
    const following = (async () => {
      for await (const { event, data } of files.read({ follow: true }))
        seen.push(data?.toString() ?? event.type);
    })();
    files.appendEvent({ type: "status", status: "running", at: "2026-01-01T00:00:00.000Z" });
    await expect.poll(() => seen.length).toBe(1);
    files.appendOutput({ stepId: "1", stream: "stdout", data: Buffer.from("live"), seq: 1, attempt: 1 });
    await expect.poll(() => seen.length).toBe(2);
    files.close();
    await following;
    expect(seen).toEqual(["status", "live"]);
  });

  it("stops a follower when its signal aborts", async () => {
    const files = JobFiles.create(jobDir());
    const abort = new AbortController();
    const following = (async () => {
      let count = 0;
      for await (const _ of files.read({ follow: true, signal: abort.signal })) count++;
      return count;
    })();
    abort.abort();
    expect(await following).toBe(0);
    files.close();
  });
});

describe("JobRecorder.recover: the journal wins over a record written lazily", () => {
  it("rebuilds an attempt and its assignment the record missed, and the stream a resuming agent continues", async () => {
    const { JobRecorder } = await import("../../controller/job-recorder.ts");
    const dir = jobDir();
    const files = JobFiles.create(dir);
    const at = "2026-01-01T00:00:00.000Z";
    files.appendEvent({ type: "status", status: "queued", at });
    files.appendEvent({
      type: "attempt",
      attempt: 1,
      at,
      agent: "j-1-abc",
      platform: "ecs",
      template: "fargate",
      labels: ["fargate"],
      logOffset: 0,
    });
    files.appendEvent({ type: "status", status: "assigned", at, agent: "j-1-abc" });
    files.appendEvent({ type: "step-start", stepId: "a", index: 1, total: 2, at, seq: 1, attempt: 1 });
    files.appendOutput({ stepId: "a", stream: "stdout", data: Buffer.from("hello\n"), seq: 2, attempt: 1 });
    files.close();
    // The record as last written: before the attempt began.
    const record = {
      id: "j",
      labels: ["fargate"],
      status: "queued" as const,
      retry: { infrastructure: 2 },
      attempts: [],
      submittedAt: at,
      logBytes: 0,
      steps: [
        { id: "a", status: "pending" as const },
        { id: "b", status: "pending" as const },
      ],
    };
    const { files: reopened, events } = JobFiles.open(dir, { ended: false });
    const recorder = new JobRecorder(record, reopened, {
      clock: () => new Date(),
      maxLogBytes: 1024,
      maxArtifactBytes: 1024,
    });
    const job = {
      id: "j",
      env: {},
      mask: [],
      steps: [{ id: "a", run: "x", env: {}, continueOnError: false }],
    };
    const stream = recorder.recover(events, job as never);
    expect(record.attempts).toEqual([
      {
        n: 1,
        agent: "j-1-abc",
        platform: "ecs",
        template: "fargate",
        launchedAt: at,
        assignedAt: at,
        labels: ["fargate"],
        logOffset: 0,
      },
    ]);
    expect(record.status).toBe("assigned");
    expect(stream).toMatchObject({
      lastSeq: 2,
      nextStep: 1,
      runningStep: "a",
      offsets: { stdout: 6, stderr: 0 },
    });
    expect(record.steps[0]).toMatchObject({ status: "running", startedAt: at });
    reopened.close();
  });
});

describe("JobRecorder.recover: the current attempt's artifacts", () => {
  const at = "2026-01-01T00:00:00.000Z";
  const job = {
    id: "j",
    env: {},
    mask: [],
    steps: [{ id: "a", run: "x", env: {}, continueOnError: false }],
    artifacts: { paths: ["dist"], exclude: [], when: "on-success" },
  };

  /** A journal of two attempts: the first sent 100 artifact bytes, the second 300 (of which 100 past a cap of 250). */
  function journal(dir: string, extra: (files: JobFiles) => void = () => {}): JobFiles {
    const files = JobFiles.create(dir);
    for (const attempt of [1, 2]) {
      files.appendEvent({
        type: "attempt",
        attempt,
        at,
        agent: `j-${attempt}`,
        platform: "local",
        labels: [],
        logOffset: 0,
      });
      files.appendEvent({ type: "status", status: "assigned", at, agent: `j-${attempt}` });
    }
    files.appendEvent({ type: "artifact", offset: 0, length: 200, seq: 3, attempt: 2 });
    files.appendEvent({ type: "artifact", offset: 200, length: 100, dropped: true, seq: 4, attempt: 2 });
    extra(files);
    files.close();
    return files;
  }

  async function recovered(dir: string) {
    const { JobRecorder } = await import("../../controller/job-recorder.ts");
    const record: JobRecord = {
      id: "j",
      labels: [],
      status: "assigned",
      retry: { infrastructure: 2 },
      attempts: [],
      submittedAt: at,
      logBytes: 0,
      steps: [{ id: "a", status: "pending" }],
    };
    const { files, events } = JobFiles.open(dir, { ended: false });
    const recorder = new JobRecorder(record, files, {
      clock: () => new Date(),
      maxLogBytes: 1024,
      maxArtifactBytes: 250,
    });
    const stream = recorder.recover(events, job as never);
    return { recorder, stream, record, files };
  }

  it("continues the stream after the last committed frame: later bytes cut, the cap remembered", async () => {
    const dir = jobDir();
    journal(dir);
    // 200 bytes committed, then 50 written before the controller died.
    writeFileSync(join(dir, "artifacts.tar.part"), Buffer.alloc(250, 7));
    const { recorder, stream, files } = await recovered(dir);
    expect(stream).toMatchObject({ lastSeq: 4, artifactBytes: 300, artifactsEnded: false });
    expect(statSync(join(dir, "artifacts.tar.part")).size).toBe(200);
    expect(recorder.artifactsOverCap).toBe(true);
    files.close();
  });

  it("takes back an archive kept just before the controller died, its end not yet journaled", async () => {
    const dir = jobDir();
    const files = JobFiles.create(dir);
    files.appendEvent({
      type: "attempt",
      attempt: 1,
      at,
      agent: "j-1",
      platform: "local",
      labels: [],
      logOffset: 0,
    });
    files.appendEvent({ type: "status", status: "assigned", at, agent: "j-1" });
    files.appendEvent({ type: "artifact", offset: 0, length: 100, seq: 1, attempt: 1 });
    files.close();
    writeFileSync(join(dir, "artifacts.tar"), Buffer.alloc(100, 7));
    const { recorder, stream, record, files: reopened } = await recovered(dir);
    expect(stream).toMatchObject({ artifactBytes: 100, artifactsEnded: false });
    expect(existsSync(join(dir, "artifacts.tar"))).toBe(false);
    // The agent's resend of artifacts-end checks the taken-back bytes and keeps them.
    const data = Buffer.alloc(100, 7);
    const result = recorder.artifactsEnd({
      v: 1,
      type: "artifacts-end",
      seq: 2,
      jobId: "j",
      bytes: 100,
      sha256: createHash("sha256").update(data).digest("hex"),
      entries: 1,
      skipped: [],
      skippedCount: 0,
      unmatched: [],
    });
    expect(result).toMatchObject({ status: "stored", bytes: 100 });
    expect(record.artifacts).toMatchObject({ status: "stored", attempt: 1 });
    expect(readFileSync(join(dir, "artifacts.tar")).equals(data)).toBe(true);
    reopened.close();
  });

  it("rebuilds an ended stream from its journaled end, and drops what an earlier attempt left", async () => {
    const dir = jobDir();
    journal(dir, (files) =>
      files.appendEvent({
        type: "artifacts",
        status: "failed",
        code: "CONTROLLER_ERR_ARTIFACTS_TOO_LARGE",
        message: "over",
        entry: null,
        entries: 1,
        skipped: [],
        skippedCount: 0,
        unmatched: [],
        attempt: 2,
        at,
        seq: 5,
      }),
    );
    writeFileSync(join(dir, "artifacts.tar.part"), Buffer.alloc(10));
    const { stream, record, recorder, files } = await recovered(dir);
    expect(stream).toMatchObject({ lastSeq: 5, artifactsEnded: true });
    expect(record.artifacts).toMatchObject({ status: "failed", attempt: 2 });
    expect(recorder.artifactsOverCap).toBe(true);
    expect(existsSync(join(dir, "artifacts.tar.part"))).toBe(false);
    files.close();
  });
});

describe("JobFiles.watch", () => {
  it("tells a watcher of each output frame with its bytes and their text, decoded as UTF-8", () => {
    const files = JobFiles.create(jobDir());
    const seen: { type: string; text?: string; data?: string; json: string }[] = [];
    const unwatch = files.watch((event, data) =>
      seen.push({
        type: event.type,
        ...(event.type === "output" ? { text: event.text } : {}),
        ...(data ? { data: data.toString("hex") } : {}),
        json: JSON.stringify(event),
      }),
    );
    writeSome(files);
    unwatch();
    files.appendOutput({ stepId: "1", stream: "stdout", data: Buffer.from("unseen"), seq: 4, attempt: 1 });
    files.close();
    expect(seen.map((e) => [e.type, e.text, e.data])).toEqual([
      ["status", undefined, undefined],
      ["output", "hello ", Buffer.from("hello ").toString("hex")],
      ["output", "wörld\n", Buffer.from("wörld\n").toString("hex")],
    ]);
    // The text is part of the event as any field is (spread, JSON), not only through its getter.
    expect(JSON.parse(seen[2]!.json)).toEqual({
      type: "output",
      stepId: "1",
      stream: "stderr",
      text: "wörld\n",
    });
  });
});

import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync } from "node:fs";
import { Agent, request } from "node:http";
import { createServer } from "node:net";
import { join } from "node:path";
import { Readable } from "node:stream";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CloseCode } from "../../agent-core/index.ts";
import { API_ROUTES, CLI_EXIT } from "../../controller/index.ts";
import { pattern } from "../fixtures/pattern.mjs";
import { CONTROLLER_BUNDLE } from "../support/controller-process.ts";
import { rawAgent } from "../support/fake-peers.ts";
import { ENTRYPOINT, FIXTURES, startController, type TestController, tempDir } from "../support/harness.ts";
import { rawTar } from "../support/tar-builder.ts";

let ctl: TestController;
beforeEach(async () => {
  ctl = await startController();
});
afterEach(async () => {
  await ctl.close();
});

const url = (path: string) => new URL(path, ctl.controller.url);

setFlagsFromString("--expose-gc");
const collectGarbage = runInNewContext("gc") as () => void;

/** Bytes of Buffers this process still holds after a full garbage collection. */
function heldBuffers(): number {
  collectGarbage();
  collectGarbage();
  return process.memoryUsage().arrayBuffers;
}

describe("the HTTP API's faults", () => {
  it.each([
    "/api/v1/jobs/no-such-job",
    "/api/v1/jobs/no-such-job/log",
    "/api/v1/jobs/no-such-job/log?follow=1",
    "/api/v1/jobs/no-such-job/events",
    "/api/v1/jobs/no-such-job/events?follow=1",
  ])("answers GET %s for an unknown job with a 404 JSON error", async (path) => {
    const res = await fetch(url(path));
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toMatch(/application\/json/);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("CONTROLLER_ERR_NOT_FOUND");
  });

  it("answers POST cancel of an unknown job with 404", async () => {
    const res = await fetch(url("/api/v1/jobs/nope/cancel"), { method: "POST" });
    expect(res.status).toBe(404);
  });

  it.each([
    ["DELETE", "/api/v1/jobs/some-id", "GET, HEAD"],
    ["GET", "/api/v1/jobs/some-id/cancel", "POST"],
    ["PUT", "/api/v1/jobs", "GET, HEAD, POST"],
    ["POST", "/api/v1/agents", "GET, HEAD"],
    ["POST", "/healthz", "GET, HEAD"],
  ])("answers %s %s with 405 and Allow: %s", async (method, path, allow) => {
    const res = await fetch(url(path), { method });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe(allow);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("CONTROLLER_ERR_BAD_REQUEST");
  });

  it("answers every other method on every path with 405 and Allow, and HEAD as GET without a body", async () => {
    const record = ctl.controller.submit({ labels: ["nobody-serves"], steps: [{ run: "true" }] });
    const served = new Map<string, Set<string>>();
    for (const route of API_ROUTES) {
      const path = route.path.replace(":id", record.id);
      served.set(path, (served.get(path) ?? new Set()).add(route.method));
    }
    const methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    for (const [path, allowed] of served) {
      const expectedAllow = [...allowed].flatMap((m) => (m === "GET" ? ["GET", "HEAD"] : [m]));
      for (const method of methods) {
        if (allowed.has(method) && method !== "GET") continue;
        if (method === "GET" && allowed.has("GET")) continue;
        const res = await fetch(url(path), { method });
        const what = `${method} ${path}`;
        if (method === "HEAD" && allowed.has("GET")) {
          // The status GET has (a job without artifacts answers 404 to both), without a body.
          expect(res.status, what).toBe((await fetch(url(path))).status);
          expect((await res.arrayBuffer()).byteLength, what).toBe(0);
          continue;
        }
        expect(res.status, what).toBe(405);
        expect(res.headers.get("allow")?.split(", ").sort(), what).toEqual(expectedAllow.sort());
        if (method !== "HEAD")
          expect(((await res.json()) as { error: { code: string } }).error.code, what).toBe(
            "CONTROLLER_ERR_BAD_REQUEST",
          );
      }
    }
  });

  it("answers HEAD of a followed log at once, with the headers of the GET", async () => {
    const record = ctl.controller.submit({ labels: ["nobody-serves"], steps: [{ run: "true" }] });
    for (const path of ["log?follow=1", "events?follow=1", "log", "events"]) {
      const res = await fetch(url(`/api/v1/jobs/${record.id}/${path}`), {
        method: "HEAD",
        signal: AbortSignal.timeout(5_000),
      });
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type"), path).toMatch(
        path.startsWith("log") ? /text\/plain/ : /ndjson/,
      );
    }
    const missing = await fetch(url("/api/v1/jobs/nope/log?follow=1"), { method: "HEAD" });
    expect(missing.status).toBe(404);
  });

  it("refuses an upload over maxUploadBytes with 413 while it streams, the client reads the refusal, and its connection serves the next request", async () => {
    const small = await startController({ overrides: { maxUploadBytes: 64 * 1024 } });
    try {
      const body = Readable.from([rawTar([{ path: "big.bin", body: randomBytes(4 * 1024 * 1024) }])]);
      await expect(small.client.uploadWorkspace(body)).rejects.toMatchObject({
        status: 413,
        code: "CONTROLLER_ERR_TOO_LARGE",
      });
      await expect(small.client.text("/api/v1/jobs")).resolves.toMatch(/\[/);
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      const post = (size: number) =>
        new Promise<number>((resolve, reject) => {
          const req = request(
            new URL("/api/v1/jobs", small.controller.url),
            { method: "POST", agent },
            (res) => {
              res.resume();
              res.on("end", () => resolve(res.statusCode ?? 0));
            },
          );
          req.on("error", reject);
          req.end(Buffer.alloc(size, " "));
        });
      // A JSON body over 1 MiB, then a request on the same kept-alive connection.
      expect(await post(3 * 1024 * 1024)).toBe(413);
      expect(await post(1)).toBe(400);
      agent.destroy();
    } finally {
      await small.close();
    }
  });

  it("answers an unknown path with 404 whatever the method", async () => {
    for (const method of ["GET", "POST", "DELETE"]) {
      expect((await fetch(url("/api/v1/nothing/here"), { method })).status).toBe(404);
    }
  });

  it.each([
    ["20,000 levels of arrays", (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`, 20_000],
    [
      "20,000 levels of objects in a step's env",
      (depth: number) =>
        `{"steps":[{"run":"true","env":{"A":${'{"a":'.repeat(depth)}1${"}".repeat(depth)}}}]}`,
      20_000,
    ],
    [
      "33 levels, one past the limit",
      (depth: number) => `{"name":${"[".repeat(depth)}${"]".repeat(depth)}}`,
      32,
    ],
  ])("refuses a submission nested %s with 400, and keeps serving", async (_what, body, depth) => {
    const res = await fetch(url("/api/v1/jobs"), {
      method: "POST",
      body: body(depth),
      headers: { "Content-Type": "application/json" },
    });
    expect(res.status).toBe(400);
    const error = ((await res.json()) as { error: { code: string; message: string } }).error;
    expect(error.code).toBe("CONTROLLER_ERR_INVALID_JOB");
    expect(error.message).toMatch(/nested at most 32 levels/);
    expect((await ctl.client.submit({ steps: [{ run: "true" }] })).status).toBe("queued");
  });

  it("reads a follower's log at the follower's pace: a stalled reader does not grow the controller's memory, and loses nothing", async () => {
    const size = 96 * 1024 * 1024;
    const job = ctl.controller.submit({
      steps: [{ argv: ["node", join(FIXTURES, "write-bytes-slowly.mjs"), String(size), "1048576", "1"] }],
    });
    const name = "flood";
    const agent = spawn(process.execPath, [ENTRYPOINT], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        JENKINS_URL: ctl.controller.url,
        JENKINS_SECRET: ctl.controller.secretFor(name),
        JENKINS_AGENT_NAME: name,
      },
      stdio: "ignore",
    });
    const agentExited = new Promise((resolve) => agent.once("exit", resolve));
    // A follower that reads nothing until the job is over.
    const received: Buffer[] = [];
    const response = await new Promise<import("node:http").IncomingMessage>((resolve, reject) => {
      const req = request(url(`/api/v1/jobs/${job.id}/log?follow=1`), resolve);
      req.on("error", reject);
      req.end();
    });
    response.pause();
    const baseline = heldBuffers();
    await ctl.controller.waitForJob(job.id);
    expect(ctl.controller.getJob(job.id)?.logBytes).toBe(size);
    // Let the follower run into its stalled socket, then count what the controller still holds.
    await new Promise((resolve) => setTimeout(resolve, 300));
    // A follower whose bytes were queued in memory would hold the whole log (96 MiB) here.
    expect(heldBuffers() - baseline).toBeLessThan(16 * 1024 * 1024);
    const body = await new Promise<Buffer>((resolve) => {
      response.on("data", (chunk: Buffer) => received.push(chunk));
      response.on("end", () => resolve(Buffer.concat(received)));
      response.resume();
    });
    expect(body.length).toBe(size);
    const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");
    expect(sha(body)).toBe(sha(pattern(size)));
    await agentExited;
  });
});

describe("what an agent reports", () => {
  it("checks the job before the seq: a used seq that names another job closes 4001, not acked as a duplicate", async () => {
    const record = ctl.controller.submit({ steps: [{ id: "s1", run: "true" }] });
    const agent = await rawAgent(ctl.controller, "two-jobs");
    agent.hello();
    await agent.next("job");
    agent.sendJson({
      v: 1,
      type: "step-start",
      seq: 1,
      jobId: record.id,
      stepId: "s1",
      startedAt: Date.now(),
    });
    agent.sendJson({
      v: 1,
      type: "step-start",
      seq: 1,
      jobId: "another-job",
      stepId: "s1",
      startedAt: Date.now(),
    });
    const closed = await agent.closed;
    expect(closed.code).toBe(CloseCode.invalidMessage);
    expect(closed.reason).toMatch(/names job another-job/);
  });

  it.each([
    ["an hour ahead", 3_600_000],
    ["an hour behind", -3_600_000],
  ])(
    "records times from the controller's clock when the agent's is %s, and keeps the agent's apart",
    async (_what, skewMs) => {
      const record = ctl.controller.submit({
        retry: { infrastructure: 0 },
        steps: [{ id: "s1", run: "true" }],
      });
      const agent = await rawAgent(ctl.controller, `skewed${skewMs > 0 ? "-ahead" : "-behind"}`);
      agent.hello();
      await agent.next("job");
      const agentNow = Date.now() + skewMs;
      agent.sendJson({
        v: 1,
        type: "step-start",
        seq: 1,
        jobId: record.id,
        stepId: "s1",
        startedAt: agentNow,
      });
      agent.sendJson({
        v: 1,
        type: "step-end",
        seq: 2,
        jobId: record.id,
        stepId: "s1",
        exitCode: 0,
        signal: null,
        durationMs: 5,
        reason: "exit",
        stdoutBytes: 0,
        stderrBytes: 0,
      });
      agent.sendJson({
        v: 1,
        type: "job-end",
        seq: 3,
        jobId: record.id,
        status: "succeeded",
        reason: "exit",
        durationMs: 7,
      });
      const final = await ctl.controller.waitForJob(record.id);
      const times = [final.submittedAt, final.assignedAt!, final.startedAt!, final.endedAt!].map(Date.parse);
      expect([...times].sort((a, b) => a - b)).toEqual(times);
      expect(final.queuedMs).toBeGreaterThanOrEqual(0);
      expect(final.queuedMs).toBeLessThan(60_000);
      expect(final.steps[0]!.agentStartedAt).toBe(new Date(agentNow).toISOString());
      expect(Math.abs(Date.parse(final.steps[0]!.startedAt!) - Date.now())).toBeLessThan(60_000);
      agent.socket.close();
    },
  );
});

describe("controller serve", () => {
  /** Runs `serve ARGS` to its exit; resolves with its code and stderr. */
  async function serveExit(args: string[], user?: string): Promise<{ code: unknown; stderr: string }> {
    const data = tempDir("serve-listen-");
    chmodSync(data.path, 0o777);
    try {
      const argv = [CONTROLLER_BUNDLE, "serve", ...args, "--data-dir", data.path];
      const child =
        user === undefined
          ? spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "pipe"] })
          : spawn("runuser", ["-u", user, "--", process.execPath, ...argv], {
              stdio: ["ignore", "pipe", "pipe"],
            });
      let stderr = "";
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      const exited = new Promise((resolve) => child.once("exit", resolve));
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return { code, stderr };
    } finally {
      data.remove();
    }
  }

  it("on a port in use prints a clear message and exits with the usage code", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as import("node:net").AddressInfo).port;
    try {
      const { code, stderr } = await serveExit(["--port", String(port)]);
      expect(code).toBe(CLI_EXIT.usage);
      expect(stderr).toContain(
        `cannot listen on 127.0.0.1:${port}: the port is in use by another process (EADDRINUSE)`,
      );
      expect(stderr).not.toMatch(/internal error|\n\s+at /);
    } finally {
      blocker.close();
    }
  });

  it.each([
    ["a host name that does not resolve", "no-such-host.invalid"],
    ["an IPv4 address out of range", "256.1.1.1"],
    ["an address not of this machine", "10.255.254.253"],
  ])("on %s prints a clear message naming the host and exits with the usage code", async (_what, host) => {
    const { code, stderr } = await serveExit(["--host", host, "--port", "0", "--insecure"]);
    expect(code).toBe(CLI_EXIT.usage);
    expect(stderr).toMatch(
      new RegExp(`^controller: cannot listen on ${host.replaceAll(".", "\\.")}:0: .+ \\([A-Z_]+\\)`),
    );
    expect(stderr).not.toMatch(/internal error|\n\s+at /);
  });

  it("refuses an empty --host as a usage error", async () => {
    const { code, stderr } = await serveExit(["--host", "", "--port", "0", "--insecure"]);
    expect(code).toBe(CLI_EXIT.usage);
    expect(stderr).toMatch(/^controller serve: Expected --host to be a host name or an IP address, got ""/);
  });

  it.skipIf(process.getuid?.() !== 0)(
    "on a privileged port without the privilege (run as nobody; skipped: needs root to switch user)",
    async () => {
      const { code, stderr } = await serveExit(["--port", "80"], "nobody");
      expect(code).toBe(CLI_EXIT.usage);
      expect(stderr).toContain("cannot listen on 127.0.0.1:80: permission denied");
      expect(stderr).not.toMatch(/internal error|\n\s+at /);
    },
  );
});

import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ExitCode, runAgent } from "../../agent-core/index.ts";
import { pattern } from "../fixtures/pattern.mjs";
import {
  agentConfigFor,
  captureLogger,
  FIXTURES,
  startController,
  type TestController,
  tempDir,
} from "../support/harness.ts";

let ctl: TestController;
beforeEach(async () => {
  ctl = await startController();
});
afterEach(async () => {
  await ctl.close();
});

/** Submits a job, runs one in-process agent for it, and returns the agent outcome and the job record. */
async function runJobWithAgent(
  job: unknown,
  name = `agent-${Math.random().toString(36).slice(2, 8)}`,
  overrides = {},
) {
  const record = ctl.controller.submit(job);
  const { logger, entries } = captureLogger();
  const outcome = await runAgent(agentConfigFor(ctl.controller, name, overrides), { logger });
  const final = await ctl.controller.waitForJob(record.id);
  return { outcome, record: final, log: await ctl.client.log(record.id), diagnostics: entries };
}

describe("a job end to end (real controller, real processes)", () => {
  it("runs every step in order and succeeds", async () => {
    const { outcome, record, log } = await runJobWithAgent({
      name: "ok",
      env: { WHO: "world" },
      steps: [
        { run: "echo hello $WHO" },
        { argv: ["node", "-e", "process.stdout.write('from node\\n')"] },
        { run: "echo err >&2", name: "stderr" },
      ],
    });
    expect(outcome.exitCode).toBe(ExitCode.ok);
    expect(record.status).toBe("succeeded");
    expect(record.steps.map((s) => s.status)).toEqual(["succeeded", "succeeded", "succeeded"]);
    expect(record.steps[2]).toMatchObject({ stderrBytes: 4, stdoutBytes: 0, exitCode: 0, reason: "exit" });
    expect(log.toString()).toBe("hello world\nfrom node\nerr\n");
  });

  it("stops at a failing step: later steps are skipped, the result names the step and exit code", async () => {
    const { outcome, record } = await runJobWithAgent({
      steps: [{ run: "echo one" }, { id: "boom", run: "echo failing; exit 3" }, { run: "echo never" }],
    });
    expect(outcome.exitCode).toBe(ExitCode.jobFailed);
    expect(record).toMatchObject({ status: "failed", reason: "exit", cause: "user" });
    expect(record.steps.map((s) => s.status)).toEqual(["succeeded", "failed", "skipped"]);
    expect(record.steps[1]).toMatchObject({ id: "boom", exitCode: 3, reason: "exit" });
    expect((await ctl.client.log(record.id)).toString()).toBe("one\nfailing\n");
  });

  it("continues past a failing step marked continueOnError", async () => {
    const { record } = await runJobWithAgent({
      steps: [{ run: "exit 1", continueOnError: true }, { run: "echo after" }],
    });
    expect(record.status).toBe("succeeded");
    expect(record.steps.map((s) => s.status)).toEqual(["failed", "succeeded"]);
  });

  it("delivers 32 MiB of output byte for byte", async () => {
    const size = 32 * 1024 * 1024;
    const { record, log } = await runJobWithAgent({
      steps: [{ argv: ["node", join(FIXTURES, "write-bytes.mjs"), String(size)] }],
    });
    expect(record.status).toBe("succeeded");
    expect(log.length).toBe(size);
    const expected = createHash("sha256").update(pattern(size)).digest("hex");
    expect(createHash("sha256").update(log).digest("hex")).toBe(expected);
    expect(record.steps[0]?.stdoutBytes).toBe(size);
  });

  it("keeps multibyte characters whole when they are split across reads", async () => {
    const { record } = await runJobWithAgent({
      steps: [{ argv: ["node", join(FIXTURES, "split-multibyte.mjs")] }],
    });
    const events = [];
    for await (const event of ctl.client.events(record.id, false)) events.push(event);
    const texts = events.flatMap((e) => (e.type === "output" ? [e.text] : []));
    expect(texts.join("")).toBe("α→β ✓ 𝄞 emoji 😀 done\n");
    for (const text of texts) expect(text).not.toContain("\uFFFD");
  });

  it("ends a step that outlives its timeout with reason timeout", async () => {
    const { outcome, record } = await runJobWithAgent({
      steps: [{ run: "echo start; sleep 30", timeout: "300ms" }],
    });
    expect(outcome.exitCode).toBe(ExitCode.jobFailed);
    expect(record.steps[0]).toMatchObject({ status: "failed", reason: "timeout", signal: "SIGTERM" });
    expect((await ctl.client.log(record.id)).toString()).toBe("start\n");
  });

  it("SIGKILLs a child that ignores SIGTERM after the grace period", async () => {
    const { record } = await runJobWithAgent(
      { steps: [{ argv: ["node", join(FIXTURES, "ignore-sigterm.mjs")], timeout: "500ms" }] },
      undefined,
      {
        graceMs: 300,
      },
    );
    expect(record.steps[0]).toMatchObject({ reason: "timeout", signal: "SIGKILL" });
    expect((await ctl.client.log(record.id)).toString()).toBe("ready\ngot SIGTERM, ignoring it\n");
  });

  it("does not hang on a grandchild that holds stdout open", async () => {
    const started = Date.now();
    const { record } = await runJobWithAgent({
      steps: [{ argv: [join(FIXTURES, "grandchild-holds-stdout.sh")] }, { run: "echo next" }],
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(record.status).toBe("succeeded");
    expect(record.steps[0]?.message).toMatch(/output stayed open/);
    expect((await ctl.client.log(record.id)).toString()).toBe("parent starting\nparent exiting\nnext\n");
  });

  it("ends, with the job, what its steps started outside their process groups (setsid, a double fork)", async () => {
    // A warm Lambda sandbox runs the next job beside whatever this one leaves behind: a process
    // that left the step's group (setsid) must not outlive the job. Each writes its pid first.
    const dir = tempDir("leftovers-");
    const pids = () =>
      readdirSync(dir.path).map((file) => Number(readFileSync(join(dir.path, file), "utf8").trim()));
    // Running: the pid exists and is not a zombie (dead, waiting for whichever process adopted it).
    const alive = (pid: number) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
      } catch {
        return false;
      }
    };
    try {
      const { record, diagnostics } = await runJobWithAgent({
        env: { PIDS: dir.path },
        steps: [
          { run: `setsid sh -c 'echo $$ > "$PIDS/setsid"; exec sleep 300' </dev/null >/dev/null 2>&1 &` },
          {
            run: `(setsid sh -c 'trap "" TERM; echo $$ > "$PIDS/daemon"; while :; do sleep 1; done' </dev/null >/dev/null 2>&1 &)`,
          },
          { run: 'until [ -s "$PIDS/setsid" ] && [ -s "$PIDS/daemon" ]; do sleep 0.05; done' },
        ],
      });
      expect(record.status).toBe("succeeded");
      expect(pids()).toHaveLength(2);
      for (const pid of pids()) expect(alive(pid), `pid ${pid}`).toBe(false);
      // The setsid'd sleep, the daemon's shell and maybe its sleep of the moment.
      const ended = diagnostics().find((d) => d.msg === "stopped processes the job left running");
      expect((ended?.pids as number[] | undefined)?.length).toBeGreaterThanOrEqual(2);
    } finally {
      for (const pid of pids()) if (alive(pid)) process.kill(pid, "SIGKILL");
      dir.remove();
    }
  });

  it("cancels a running job through the API", async () => {
    const record = ctl.controller.submit({
      steps: [{ run: "echo started; sleep 30" }, { run: "echo never" }],
    });
    const { logger } = captureLogger();
    const running = runAgent(agentConfigFor(ctl.controller, "agent-cancel"), { logger });
    for await (const event of ctl.client.events(record.id)) {
      if (event.type === "output") break;
    }
    ctl.controller.cancel(record.id);
    const outcome = await running;
    const final = await ctl.controller.waitForJob(record.id);
    expect(outcome.exitCode).toBe(ExitCode.jobFailed);
    expect(final).toMatchObject({ status: "cancelled", reason: "cancelled" });
    expect(final.steps.map((s) => s.status)).toEqual(["failed", "skipped"]);
    expect((await ctl.client.log(record.id)).toString()).toBe("started\n");
  });

  it("gives steps a clean environment without the agent's secret and removes the workspace", async () => {
    const { record, log, outcome } = await runJobWithAgent(
      { steps: [{ run: 'echo "secret=${JENKINS_SECRET:-none} ci=$CI ws=$AGENT_WORKSPACE"; pwd' }] },
      "agent-env",
    );
    const [line, pwd] = log.toString().trim().split("\n");
    expect(line).toMatch(/^secret=none ci=true ws=\//);
    expect(pwd).toBe(line!.split("ws=")[1]);
    expect(existsSync(pwd!)).toBe(false);
    expect(record.agent?.name).toBe("agent-env");
    expect(outcome.timings.connectedAt).toBeGreaterThan(0);
  });
});

describe("steps that cannot start", () => {
  let ctl2: TestController;
  beforeEach(async () => {
    ctl2 = await startController();
  });
  afterEach(async () => {
    await ctl2.close();
  });

  it.each([
    ["a program that does not exist", { argv: ["/nonexistent/program"] }, /could not start/],
    [
      "a working directory outside the workspace",
      { run: "true", workingDir: "../.." },
      /outside the workspace/,
    ],
    ["a working directory that does not exist", { run: "true", workingDir: "missing/dir" }, /does not exist/],
  ])("reports %s as reason error with a message", async (_what, step, message) => {
    const record = ctl2.controller.submit({ steps: [{ run: "echo first" }, step, { run: "echo never" }] });
    const { logger } = captureLogger();
    const outcome = await runAgent(agentConfigFor(ctl2.controller, `agent-${record.id}`), { logger });
    const final = await ctl2.controller.waitForJob(record.id);
    expect(outcome.exitCode).toBe(ExitCode.jobFailed);
    expect(final).toMatchObject({ status: "failed", reason: "error" });
    expect(final.steps[1]).toMatchObject({ status: "failed", reason: "error", exitCode: null });
    expect(final.steps[1]?.message).toMatch(message);
    expect(final.steps[2]?.status).toBe("skipped");
    expect((await ctl2.client.log(record.id)).toString()).toBe("first\n");
  });
});

describe("job-level stops", () => {
  let ctl3: TestController;
  beforeEach(async () => {
    ctl3 = await startController();
  });
  afterEach(async () => {
    await ctl3.close();
  });

  it("a job timeout during a continueOnError step still stops the job, naming that step", async () => {
    const record = ctl3.controller.submit({
      timeout: "400ms",
      steps: [{ id: "long", run: "sleep 30", continueOnError: true }, { run: "echo never" }],
    });
    const { logger } = captureLogger();
    const outcome = await runAgent(agentConfigFor(ctl3.controller, "agent-jobtimeout"), { logger });
    expect(outcome.exitCode).toBe(ExitCode.jobFailed);
    expect(outcome.job).toMatchObject({ status: "failed", reason: "timeout", failedStepId: "long" });
    const final = await ctl3.controller.waitForJob(record.id);
    expect(final.steps.map((s) => s.status)).toEqual(["failed", "skipped"]);
  });
});

import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ExitCode, GroupRssSampler, groupRssBytes, runAgent } from "../../agent-core/index.ts";
import {
  agentConfigFor,
  canMountTmpfs,
  captureLogger,
  ENTRYPOINT,
  FIXTURES,
  startController,
  type TestController,
  tempDir,
} from "../support/harness.ts";

let ctl: TestController;
let dir: ReturnType<typeof tempDir>;
beforeEach(async () => {
  ctl = await startController();
  dir = tempDir("limits-");
});
afterEach(async () => {
  await ctl.close();
  dir.remove();
});

const named = (prefix: string) => `${prefix}-${Math.random().toString(36).slice(2, 8)}`;

describe("the deadline", () => {
  it("stops a step mid-output: everything written before the kill arrives, reason deadline, exit before the limit", async () => {
    const record = join(dir.path, "record.txt");
    // bash, not node: a step that starts writing at once even on a loaded machine. Each line goes
    // to stdout, then to the record: whatever reached stdout is in the record, or one line more.
    const tick = `i=0; while :; do line="tick $i ${"x".repeat(100)}"; echo "$line"; echo "$line" >> ${record}; i=$((i+1)); sleep 0.002; done`;
    const job = ctl.controller.submit({ steps: [{ run: tick }, { run: "echo never" }] });
    // Room for the agent to connect and start the step on a loaded machine; the step never ends
    // by itself, so only the deadline can stop it.
    const deadlineAt = Date.now() + 3_000;
    const { logger } = captureLogger();
    const outcome = await runAgent(
      agentConfigFor(ctl.controller, named("dl"), { deadlineAt, graceMs: 300, deadlineStepStartMinMs: 0 }),
      { logger },
    );
    expect(outcome.exitCode).toBe(ExitCode.deadline);
    const final = await ctl.controller.waitForJob(job.id);
    expect(final).toMatchObject({ status: "failed", reason: "deadline", cause: "platform" });
    expect(final.steps.map((s) => [s.status, s.reason])).toEqual([
      ["failed", "deadline"],
      ["skipped", undefined],
    ]);
    // Stopped by the deadline's signals (SIGTERM at deadline - grace, SIGKILL at the deadline):
    // the step was gone by the deadline, as the agent's own clock measured it (the same clock as
    // deadlineAt; the exit is seen a moment after the kill).
    const step = final.steps[0]!;
    expect(["SIGTERM", "SIGKILL"]).toContain(step.signal);
    expect(Date.parse(step.agentStartedAt!) + step.durationMs!).toBeLessThan(deadlineAt + 1_000);
    expect(final.message).toMatch(/deadline/);
    expect(final.message).toMatch(/split the job/);
    const log = (await ctl.client.log(job.id)).toString();
    const written = readFileSync(record, "utf8");
    expect(written.length).toBeGreaterThan(0);
    // stdout is written before the record: the log holds the record, and at most one line more.
    expect(log.startsWith(written)).toBe(true);
    expect(log.slice(written.length).split("\n").length).toBeLessThanOrEqual(2);
  });

  it("does not start a step when less than the threshold remains", async () => {
    const job = ctl.controller.submit({
      steps: [
        { id: "first", run: "sleep 1.2" },
        { id: "second", run: "echo never" },
      ],
    });
    const { logger, entries } = captureLogger();
    const outcome = await runAgent(
      agentConfigFor(ctl.controller, named("th"), {
        deadlineAt: Date.now() + 2_500,
        graceMs: 200,
        deadlineStepStartMinMs: 1_500,
      }),
      { logger },
    );
    expect(outcome.exitCode).toBe(ExitCode.deadline);
    const final = await ctl.controller.waitForJob(job.id);
    expect(final).toMatchObject({ status: "failed", reason: "deadline" });
    expect(final.steps.map((s) => s.status)).toEqual(["succeeded", "skipped"]);
    expect(final.message).toMatch(/Step second was not started/);
    expect(entries().some((e) => e.msg === "not enough time left before the deadline to start a step")).toBe(
      true,
    );
  });
});

describe("the disk budget", () => {
  it("ends a step that writes past the budget with reason disk, naming the path, figures and largest directories", async () => {
    const job = ctl.controller.submit({
      steps: [
        {
          run: "mkdir -p data/blobs; for i in $(seq 1 400); do head -c 1048576 /dev/zero >> data/blobs/big.bin; sleep 0.01; done",
        },
      ],
    });
    const { logger } = captureLogger();
    const outcome = await runAgent(
      agentConfigFor(ctl.controller, named("disk"), {
        workDir: dir.path,
        diskBudgetBytes: 24 * 1_048_576,
        monitorIntervalMs: 20,
      }),
      { logger },
    );
    expect(outcome.exitCode).toBe(ExitCode.disk);
    const final = await ctl.controller.waitForJob(job.id);
    expect(final).toMatchObject({ status: "failed", reason: "disk", cause: "platform" });
    expect(final.steps[0]?.message).toMatch(new RegExp(`filesystem of ${dir.path}`));
    expect(final.steps[0]?.message).toMatch(/disk budget of 24\.0 MiB/);
    expect(final.steps[0]?.message).toMatch(/data\/blobs \(\d+\.\d MiB\)/);
    expect(final.diskUsedBytes).toBeGreaterThan(24 * 1_048_576);
    // The workspace is gone: the space is back.
    expect(readdirSync(join(dir.path, "workspace"))).toEqual([]);
  });

  it.skipIf(!canMountTmpfs)(
    "reports a disk filled to the brim as disk, and still reports the job (skipped where a tmpfs cannot be mounted: needs root)",
    async () => {
      const mountPoint = join(dir.path, "small");
      mkdirSync(mountPoint);
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=48m", "tmpfs", mountPoint]);
      try {
        const job = ctl.controller.submit({
          steps: [{ run: "echo filling; cat /dev/zero > fill.bin" }, { run: "echo never" }],
        });
        const { logger } = captureLogger();
        const outcome = await runAgent(
          agentConfigFor(ctl.controller, named("brim"), {
            workDir: mountPoint,
            diskHeadroomBytes: 4 * 1_048_576,
          }),
          { logger },
        );
        expect(outcome.exitCode).toBe(ExitCode.disk);
        const final = await ctl.controller.waitForJob(job.id);
        expect(final).toMatchObject({ status: "failed", reason: "disk" });
        expect(final.steps.map((s) => s.status)).toEqual(["failed", "skipped"]);
        expect(final.steps[0]?.message).toMatch(/over its disk budget/);
        expect((await ctl.client.log(job.id)).toString()).toMatch(/^filling\n/);
        expect(readdirSync(join(mountPoint, "workspace"))).toEqual([]);
      } finally {
        execFileSync("umount", ["-l", mountPoint]);
      }
    },
  );
});

describe.skipIf(!canMountTmpfs)(
  "the headroom at high write rates (skipped where a tmpfs cannot be mounted: needs root)",
  () => {
    let mountPoint: string;
    beforeEach(() => {
      mountPoint = join(dir.path, "tmp64");
      mkdirSync(mountPoint);
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=64m", "tmpfs", mountPoint]);
    });
    afterEach(() => {
      execFileSync("umount", ["-l", mountPoint]);
    });

    it.each([
      // Ignoring SIGTERM, it writes on through its grace until the disk is full: the reserve must hold.
      ["cat /dev/zero, SIGTERM ignored (gigabytes per second)", "trap '' TERM; cat /dev/zero > fill"],
      [
        "dd at 1 MiB blocks, about 150 MB/s",
        "for i in $(seq 1 80); do dd if=/dev/zero bs=1M count=1 2>/dev/null >> fill; sleep 0.006; done",
      ],
    ])(
      "a step filling a 64 MiB /tmp with %s: exit 5, the reserve held, and the message says what happened",
      async (_what, command) => {
        const job = ctl.controller.submit({
          steps: [
            {
              // When the write fails, show that the agent's reserve was still there.
              run: `${command} || { stat -c 'reserve %s' "$AGENT_WORKSPACE.headroom"; exit 1; }`,
            },
            { run: "echo never" },
          ],
        });
        const { logger } = captureLogger();
        const outcome = await runAgent(
          agentConfigFor(ctl.controller, named("fast"), { workDir: mountPoint }),
          {
            logger,
          },
        );
        expect(outcome.exitCode).toBe(ExitCode.disk);
        const final = await ctl.controller.waitForJob(job.id);
        expect(final).toMatchObject({ status: "failed", reason: "disk" });
        expect(final.steps.map((s) => s.status)).toEqual(["failed", "skipped"]);
        const message = final.steps[0]?.message ?? "";
        const log = (await ctl.client.log(job.id)).toString();
        if (log.includes("No space left on device") || command.startsWith("trap")) {
          // Filled between two checks: said so, and half the 16 MiB headroom was still reserved.
          expect(message).toMatch(/The filesystem filled up before the step could be stopped/);
          expect(log).toContain("reserve 8388608");
        } else {
          expect(message).toMatch(/The step was stopped with \d+(\.\d)? (B|KiB|MiB) still free/);
          expect(message).not.toMatch(/filled up/);
        }
        expect(readdirSync(join(mountPoint, "workspace"))).toEqual([]);
      },
    );
  },
);

describe("memory", () => {
  it("reports the step's peak resident memory and the agent's own", async () => {
    const job = ctl.controller.submit({
      steps: [
        {
          argv: [
            "node",
            "-e",
            "const b = Buffer.alloc(80e6, 1); setTimeout(() => console.log(b.length), 800)",
          ],
        },
      ],
    });
    const { logger } = captureLogger();
    await runAgent(agentConfigFor(ctl.controller, named("mem"), { monitorIntervalMs: 50 }), { logger });
    const final = await ctl.controller.waitForJob(job.id);
    expect(final.steps[0]?.peakRssBytes).toBeGreaterThan(80e6);
    expect(final.agentPeakRssBytes).toBeGreaterThan(10e6);
  });

  it("a kept sampler counts group members started after its first sample, and never processes of other sessions", async () => {
    // A step's shape: a leader in its own session and group, that starts a big child later.
    const holdBig = "const b = Buffer.alloc(60e6, 1); console.log('ready'); setInterval(() => b[0]++, 1000)";
    const leader = spawn("sh", ["-c", `read go; ${JSON.stringify(process.execPath)} -e "${holdBig}"`], {
      detached: true,
      stdio: ["pipe", "pipe", "ignore"],
    });
    // Big too, but in a session of its own: never a member.
    const outsider = spawn(process.execPath, ["-e", holdBig], {
      detached: true,
      stdio: ["ignore", "pipe", "ignore"],
    });
    const ready = (child: ReturnType<typeof spawn>) =>
      new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()));
    try {
      await ready(outsider);
      const sampler = new GroupRssSampler(leader.pid!);
      const before = sampler.sample();
      expect(before).toBeGreaterThan(0);
      expect(before).toBeLessThan(30e6);
      leader.stdin!.write("go\n");
      await ready(leader);
      expect(sampler.sample()).toBeGreaterThan(60e6);
      expect(sampler.sample()).toBeLessThan(120e6);
      // The one-shot form agrees.
      expect(groupRssBytes(leader.pid!)).toBeGreaterThan(60e6);
    } finally {
      process.kill(-leader.pid!, "SIGKILL");
      outsider.kill("SIGKILL");
    }
  });
});

describe("signals", () => {
  function launch(name: string, env: Record<string, string> = {}, wrapper: string[] = []) {
    const command = [...wrapper, process.execPath, ENTRYPOINT];
    const child = spawn(command[0]!, command.slice(1), {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        JENKINS_URL: ctl.controller.url,
        JENKINS_SECRET: ctl.controller.secretFor(name),
        JENKINS_AGENT_NAME: name,
        AGENT_LOG_LEVEL: "debug",
        ...env,
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<{ code: number | null; stderr: string }>((resolve) =>
      child.once("close", (code) => resolve({ code, stderr })),
    );
    return { child, exited };
  }

  async function firstOutput(jobId: string) {
    for await (const event of ctl.client.events(jobId)) if (event.type === "output") return;
  }

  it("a second SIGTERM skips the grace: a step that ignores SIGTERM is killed at once", async () => {
    // No retry: the interrupted attempt ends the job (by default the controller would retry it).
    const job = ctl.controller.submit({
      retry: { infrastructure: 0 },
      steps: [{ argv: ["node", join(FIXTURES, "ignore-sigterm.mjs")] }],
    });
    const agent = launch(named("sig2"), { AGENT_GRACE_MS: "60000" });
    await firstOutput(job.id);
    agent.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 200));
    const secondAt = Date.now();
    agent.child.kill("SIGTERM");
    const { code, stderr } = await agent.exited;
    expect(code).toBe(ExitCode.sigterm);
    expect(Date.now() - secondAt).toBeLessThan(5_000);
    expect(stderr).toMatch(/second signal: killing the step now/);
    const final = await ctl.controller.waitForJob(job.id);
    expect(final).toMatchObject({ status: "failed", reason: "interrupted" });
    expect(final.steps[0]).toMatchObject({ reason: "interrupted", signal: "SIGKILL" });
    expect((await ctl.client.log(job.id)).toString()).toBe("ready\ngot SIGTERM, ignoring it\n");
  });

  it("the first SIGTERM gives a step that ignores it the grace period, then kills it, and exits 143", async () => {
    // No retry: the interrupted attempt ends the job (by default the controller would retry it).
    const job = ctl.controller.submit({
      retry: { infrastructure: 0 },
      steps: [{ argv: ["node", join(FIXTURES, "ignore-sigterm.mjs")] }],
    });
    const agent = launch(named("sig1"), { AGENT_GRACE_MS: "700" });
    await firstOutput(job.id);
    const sentAt = Date.now();
    agent.child.kill("SIGTERM");
    const { code } = await agent.exited;
    expect(code).toBe(ExitCode.sigterm);
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(650);
    const final = await ctl.controller.waitForJob(job.id);
    expect(final.steps[0]).toMatchObject({ reason: "interrupted", signal: "SIGKILL" });
  });

  const canUnshare = (() => {
    try {
      execFileSync("unshare", ["--pid", "--fork", "--mount-proc", "true"], { stdio: "ignore" });
      return existsSync("/usr/bin/tini") || existsSync("/sbin/tini");
    } catch {
      return false;
    }
  })();
  const zombieJob = {
    steps: [
      // The subshell's parent exits at once: its child is re-parented to PID 1 and exits soon after.
      { run: "sh -c '(sleep 0.2; exit 0) &'" },
      { run: "sleep 0.8; ps -eo stat= | grep -c '^Z' || true" },
    ],
  };

  it.skipIf(!canUnshare)(
    "as PID 1 under tini, orphaned grandchildren are reaped (skipped without unshare and tini)",
    async () => {
      const job = ctl.controller.submit(zombieJob);
      const tini = existsSync("/usr/bin/tini") ? "/usr/bin/tini" : "/sbin/tini";
      const agent = launch(named("tini"), {}, ["unshare", "--pid", "--fork", "--mount-proc", tini, "--"]);
      expect((await agent.exited).code).toBe(ExitCode.ok);
      expect((await ctl.client.log(job.id)).toString().trim()).toBe("0");
    },
  );

  it.skipIf(!canUnshare)(
    "without an init, node as PID 1 leaves zombies and warns about it (skipped without unshare)",
    async () => {
      const job = ctl.controller.submit(zombieJob);
      const agent = launch(named("pid1"), {}, ["unshare", "--pid", "--fork", "--mount-proc"]);
      const { code, stderr } = await agent.exited;
      expect(code).toBe(ExitCode.ok);
      expect(stderr).toMatch(/running as PID 1 without an init/);
      expect(Number((await ctl.client.log(job.id)).toString().trim())).toBeGreaterThanOrEqual(1);
    },
  );
});

describe("warm reuse", () => {
  it("runs two jobs in one process, leaving no process, timer, socket or file behind", async () => {
    const workDir = join(dir.path, "work");
    // What an agent could leave behind: child processes, their pipes, sockets, timers.
    const kinds = new Set(["ProcessWrap", "PipeWrap", "TCPSocketWrap", "TCPWrap", "Timeout"]);
    const counts = () => {
      const tally: Record<string, number> = {};
      for (const kind of process.getActiveResourcesInfo())
        if (kinds.has(kind)) tally[kind] = (tally[kind] ?? 0) + 1;
      return tally;
    };
    /** Kinds of which there are more now than before the first job. */
    const grown = () => Object.entries(counts()).filter(([kind, n]) => n > (baseline[kind] ?? 0));
    const { logger } = captureLogger();
    const baseline = counts();
    for (const round of [1, 2]) {
      const job = ctl.controller.submit({
        steps: [{ run: "head -c 3000000 /dev/zero > blob; sleep 30 & echo round $AGENT_JOB_ID" }],
      });
      const outcome = await runAgent(agentConfigFor(ctl.controller, `warm-${round}`, { workDir }), {
        logger,
      });
      expect(outcome.exitCode).toBe(ExitCode.ok);
      expect((await ctl.client.log(job.id)).toString()).toBe(`round ${job.id}\n`);
      expect(readdirSync(join(workDir, "workspace"))).toEqual([]);
      const du = Number(execFileSync("du", ["-sb", workDir]).toString().split("\t")[0]);
      expect(du).toBeLessThan(1_048_576);
      await expect.poll(grown, { timeout: 3_000 }).toEqual([]);
    }
    rmSync(workDir, { recursive: true, force: true });
  });
});

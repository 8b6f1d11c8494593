import { execFileSync, spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvokeCommand, LambdaClient } from "@aws-sdk/client-lambda";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ExitCode, runAgent } from "../../agent-core/index.ts";
import { type RunStepOptions, runStep, type StepResult } from "../../agent-core/runner/run-step.ts";
import { closeFds, FifoSupport, StepPipes } from "../../agent-core/runner/step-pipes.ts";
import { startFakeLambda } from "../support/fake-lambda.ts";
import { ackEverything, fakeController, waitForType } from "../support/fake-peers.ts";
import {
  agentConfigFor,
  canMountTmpfs,
  captureLogger,
  ROOT,
  startController,
  type TestController,
  tempDir,
  until,
} from "../support/harness.ts";

const PATH = process.env.PATH ?? "/usr/bin:/bin";
/** Why the test run as another user cannot run here, or null. */
const SETPRIV_MISSING =
  process.getuid?.() !== 0
    ? "not root: cannot switch to another user"
    : spawnSync("setpriv", ["--version"]).error
      ? "no setpriv (util-linux)"
      : null;

let dir: ReturnType<typeof tempDir>;
let pipesParent: ReturnType<typeof tempDir>;
let log: ReturnType<typeof captureLogger>;
beforeEach(() => {
  dir = tempDir("step-pipes-ws-");
  pipesParent = tempDir("step-pipes-tmp-");
  log = captureLogger();
});
afterEach(() => {
  dir.remove();
  pipesParent.remove();
});

interface Ran extends StepResult {
  stdout: string;
  stderr: string;
}

/** runStep through `pipes`, collecting each stream. */
async function run(
  pipes: StepPipes | undefined,
  command: RunStepOptions["command"],
  extra: Partial<RunStepOptions> = {},
): Promise<Ran> {
  const out = { stdout: "", stderr: "" };
  const result = await runStep({
    command,
    cwd: dir.path,
    env: { PATH },
    graceMs: 200,
    drainMs: 300,
    onOutput: (stream, chunk) => {
      out[stream] += chunk.toString();
      return true;
    },
    ...(pipes ? { pipes } : {}),
    ...extra,
  });
  return { ...result, ...out };
}

/**
 * Runs `step` (a shell script) through a StepPipes over `parent`, closes it, in a process of its
 * own as uid/gid 65534 (the image's agent is not root): the step's exit code and its output.
 */
function runStepAsNobody(parent: string, step: string): { exitCode: number | null; out: string } {
  const script = [
    `import { runStep } from ${JSON.stringify(join(ROOT, "agent-core/runner/run-step.ts"))};`,
    `import { StepPipes } from ${JSON.stringify(join(ROOT, "agent-core/runner/step-pipes.ts"))};`,
    "const logger = { warn() {}, debug() {}, info() {}, error() {}, child() { return logger; } };",
    `const pipes = new StepPipes({ logger, parentDirs: [${JSON.stringify(parent)}] });`,
    "let out = '';",
    `const result = await runStep({ command: { run: ${JSON.stringify(step)} }, cwd: '/tmp', env: { PATH: process.env.PATH }, graceMs: 200, drainMs: 300, pipes, onOutput: (_s, c) => { out += c; return true; } });`,
    "await pipes.close();",
    "process.stdout.write(JSON.stringify({ exitCode: result.exitCode, out }));",
  ].join("\n");
  const ran = spawnSync(
    "setpriv",
    [
      "--reuid=65534",
      "--regid=65534",
      "--clear-groups",
      process.execPath,
      "--import",
      "tsx",
      "--input-type=module",
      "-e",
      script,
    ],
    { cwd: ROOT, env: { PATH, HOME: "/tmp" }, encoding: "utf8", timeout: 30_000 },
  );
  expect(ran.stderr).toBe("");
  return JSON.parse(ran.stdout) as { exitCode: number | null; out: string };
}

/** What this process's descriptors point at (`pipe:[N]`, `socket:[N]`, paths). */
function openFds(): string[] {
  return readdirSync("/proc/self/fd").flatMap((fd) => {
    try {
      return [readlinkSync(`/proc/self/fd/${fd}`)];
    } catch {
      return []; // the directory's own descriptor, closed by now
    }
  });
}

/** The kind of file a step's stdout and stderr are, as the step sees them. */
const KIND =
  'for f in 1 2; do if [ -p /dev/fd/$f ]; then echo "$f:fifo"; elif [ -S /dev/fd/$f ]; then echo "$f:socket"; else echo "$f:other"; fi; done';

describe("a step's output through FIFOs", () => {
  it("stdout and stderr are two distinct pipes, read in full and kept apart", async () => {
    const pipes = new StepPipes({ logger: log.logger, parentDirs: [pipesParent.path] });
    try {
      const result = await run(pipes, {
        run: `${KIND}; echo out; echo err >&2; head -c 100000 /dev/zero | tr '\\0' x`,
      });
      expect(result).toMatchObject({ reason: "exit", exitCode: 0 });
      expect(result.stdout).toBe(`1:fifo\n2:fifo\nout\n${"x".repeat(100_000)}`);
      expect(result.stderr).toBe("err\n");
      expect(pipes.unavailable).toBeUndefined();
      expect(log.lines).toEqual([]);
    } finally {
      await pipes.close();
    }
  });

  it("a step can reopen /dev/stdout and /dev/stderr (`tee /dev/stderr`), which a socketpair refuses with ENXIO", async () => {
    const pipes = new StepPipes({ logger: log.logger, parentDirs: [pipesParent.path] });
    try {
      const piped = await run(pipes, { run: "echo to-out > /dev/stdout; echo both | tee /dev/stderr" });
      expect(piped).toMatchObject({
        reason: "exit",
        exitCode: 0,
        stdout: "to-out\nboth\n",
        stderr: "both\n",
      });
      // The same script over the socketpair: what steps got before (and still get without mkfifo).
      const socket = await run(undefined, { run: "echo to-out > /dev/stdout" });
      expect(socket.exitCode).not.toBe(0);
      expect(socket.stderr).toMatch(/No such device or address/);
    } finally {
      await pipes.close();
    }
  });

  it("the FIFOs live in a private directory (0300: no listing) outside the workspace, under random names, are unlinked once open, and the directory goes at close", async () => {
    const pipes = new StepPipes({ logger: log.logger, parentDirs: [pipesParent.path] });
    const result = await run(pipes, { run: "echo hi" });
    expect(result.stdout).toBe("hi\n");
    const [made, ...others] = readdirSync(pipesParent.path);
    expect(others).toEqual([]);
    const privateDir = join(pipesParent.path, made!);
    expect(statSync(privateDir).mode & 0o777).toBe(0o300);
    expect(made).toMatch(new RegExp(`^agent-step-pipes-${process.pid}-\\d+-`));
    // The batch made ahead waits for the next steps (root may list the directory; its owner may not).
    const fifos = readdirSync(privateDir);
    expect(fifos.length).toBeGreaterThan(0);
    for (const name of fifos) {
      expect(name).toMatch(/^[0-9a-f]{24}\.(out|err)$/);
      expect(statSync(join(privateDir, name)).isFIFO()).toBe(true);
      expect(statSync(join(privateDir, name)).mode & 0o777).toBe(0o600);
    }
    expect(new Set(fifos.map((name) => name.slice(0, 24))).size).toBe(fifos.length / 2);
    await pipes.close();
    expect(readdirSync(pipesParent.path)).toEqual([]);
  });

  it("without mkfifo every step falls back to the socketpair, logged once with the reason; a later job of the process looks for it no more and does not warn again", async () => {
    const support = new FifoSupport();
    const pipes = new StepPipes({
      logger: log.logger,
      parentDirs: [pipesParent.path],
      mkfifo: "/nonexistent/mkfifo",
      support,
    });
    try {
      for (let i = 0; i < 3; i++) {
        const result = await run(pipes, { run: `${KIND}; echo err >&2` });
        expect(result).toMatchObject({
          reason: "exit",
          exitCode: 0,
          stdout: "1:socket\n2:socket\n",
          stderr: "err\n",
        });
      }
      expect(pipes.unavailable).toMatch(/"\/nonexistent\/mkfifo" was not found \(ENOENT\)/);
      const warnings = log.entries().filter((e) => e.level === "warn");
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({
        msg: "cannot make FIFOs for the steps' output; steps use a socketpair",
        error: expect.stringMatching(/ENOENT/),
      });
    } finally {
      await pipes.close();
    }
    // The next job of the same process: known at once (no mkfifo run), said at debug level only.
    const next = new StepPipes({
      logger: log.logger,
      parentDirs: [pipesParent.path],
      mkfifo: "/nonexistent/mkfifo",
      support,
    });
    try {
      expect(next.unavailable).toMatch(/ENOENT/);
      expect((await run(next, { run: KIND })).stdout).toBe("1:socket\n2:socket\n");
      expect(log.entries().filter((e) => e.level === "warn")).toHaveLength(1);
      expect(log.entries().filter((e) => e.level === "debug")).toMatchObject([
        { msg: "cannot make FIFOs for the steps' output; steps use a socketpair" },
      ]);
    } finally {
      await next.close();
    }
    expect(readdirSync(pipesParent.path)).toEqual([]);
  });

  it("the directory goes in the first parent that takes one (/dev/shm, else the temp dir); with none, the socketpair, logged once", async () => {
    const fallback = new StepPipes({
      logger: log.logger,
      parentDirs: ["/nonexistent/shm", pipesParent.path],
      support: new FifoSupport(),
    });
    try {
      expect((await run(fallback, { run: KIND })).stdout).toBe("1:fifo\n2:fifo\n");
      expect(readdirSync(pipesParent.path)).toHaveLength(1);
    } finally {
      await fallback.close();
    }
    const none = new StepPipes({
      logger: log.logger,
      parentDirs: ["/nonexistent/shm", "/proc/self"],
      support: new FifoSupport(),
    });
    try {
      for (let i = 0; i < 2; i++)
        expect((await run(none, { run: KIND })).stdout).toBe("1:socket\n2:socket\n");
      expect(none.unavailable).toMatch(/\/proc\/self\/agent-step-pipes-/);
      expect(log.entries().filter((e) => e.level === "warn")).toHaveLength(1);
    } finally {
      await none.close();
    }
  });

  it("the directories of agents that died without removing theirs are removed; a live agent's stay", async () => {
    const dead = spawnSync("true").pid;
    const orphan = join(pipesParent.path, `agent-step-pipes-${dead}-Ab12Cd`);
    const live = join(pipesParent.path, "agent-step-pipes-1-Ef34Gh");
    for (const path of [orphan, live]) {
      mkdirSync(path, { mode: 0o700 });
      execFileSync("mkfifo", [join(path, "7.out")]);
    }
    const pipes = new StepPipes({ logger: log.logger, parentDirs: [pipesParent.path] });
    try {
      expect((await run(pipes, { run: KIND })).stdout).toBe("1:fifo\n2:fifo\n");
      const left = readdirSync(pipesParent.path);
      expect(left).toContain("agent-step-pipes-1-Ef34Gh");
      expect(left).not.toContain(`agent-step-pipes-${dead}-Ab12Cd`);
      expect(left.filter((name) => name.startsWith(`agent-step-pipes-${process.pid}-`))).toHaveLength(1);
    } finally {
      await pipes.close();
    }
    expect(readdirSync(pipesParent.path)).toEqual(["agent-step-pipes-1-Ef34Gh"]);
  });

  it("a pid reused since its agent died (a container restarted in place) does not keep that agent's directory", async () => {
    // Our own pid, another start time: the directory of an earlier process that had this pid.
    const stale = join(pipesParent.path, `agent-step-pipes-${process.pid}-12345-Ab12Cd`);
    // pid 1 is alive, but started at another time than this name says: also gone.
    const reused = join(pipesParent.path, "agent-step-pipes-1-7-Ef34Gh");
    for (const path of [stale, reused]) mkdirSync(path, { mode: 0o300 });
    const pipes = new StepPipes({ logger: log.logger, parentDirs: [pipesParent.path] });
    try {
      expect((await run(pipes, { run: KIND })).stdout).toBe("1:fifo\n2:fifo\n");
      const left = readdirSync(pipesParent.path);
      expect(left).toHaveLength(1);
      expect(left[0]).toMatch(new RegExp(`^agent-step-pipes-${process.pid}-\\d+-`));
      expect(left[0]).not.toBe(`agent-step-pipes-${process.pid}-12345-Ab12Cd`);
    } finally {
      await pipes.close();
    }
    expect(readdirSync(pipesParent.path)).toEqual([]);
  });

  it.skipIf(SETPRIV_MISSING !== null)(
    "as a user other than root (the image's agent user): a step cannot list the FIFO directory, and close and the sweep still remove it (skipped where the test cannot run as another user: needs root and setpriv)",
    () => {
      // The agent's code as uid/gid 65534 in a process of its own; the parent is writable by it.
      const parent = tempDir("step-pipes-user-");
      try {
        chmodSync(parent.path, 0o777);
        const dead = spawnSync("true").pid;
        const orphan = join(parent.path, `agent-step-pipes-${dead}-99-Xy12Zw`);
        mkdirSync(orphan);
        execFileSync("mkfifo", [join(orphan, "left.out")]);
        chownSync(orphan, 65534, 65534);
        chownSync(join(orphan, "left.out"), 65534, 65534);
        chmodSync(orphan, 0o300);
        const result = runStepAsNobody(
          parent.path,
          `ls ${parent.path}/agent-step-pipes-*/ 2>&1 || echo "rc=$?"`,
        );
        expect(result, result.out).toMatchObject({ exitCode: 0 });
        expect(result.out).toMatch(/Permission denied/);
        expect(result.out).toMatch(/rc=[12]\n/);
        expect(result.out).not.toMatch(/[0-9a-f]{24}\.(out|err)/);
        // Its own directory went at close, the dead agent's in the sweep, both 0300 until then.
        expect(readdirSync(parent.path)).toEqual([]);
      } finally {
        parent.remove();
      }
    },
  );

  it.skipIf(SETPRIV_MISSING !== null)(
    "as a user other than root: what a step leaves in the FIFO directory (a subdirectory of mode 000, a file, a directory made unlistable again) does not keep it from being removed at close (skipped where the test cannot run as another user: needs root and setpriv)",
    () => {
      const parent = tempDir("step-pipes-user-");
      try {
        chmodSync(parent.path, 0o777);
        const step = [
          `d=$(echo ${parent.path}/agent-step-pipes-*)`,
          'mkdir "$d/sub" "$d/sub/deeper" && touch "$d/file" "$d/sub/deeper/f"',
          'chmod 000 "$d/sub/deeper" "$d/sub"',
          'chmod 000 "$d"',
          "echo done",
        ].join("; ");
        expect(runStepAsNobody(parent.path, step)).toEqual({ exitCode: 0, out: "done\n" });
        expect(readdirSync(parent.path)).toEqual([]);
      } finally {
        parent.remove();
      }
    },
  );

  it("a step cannot write into a later step's output through the agent's descriptors (/proc/<agent>/fd): no later step's FIFO is open while a step runs", async () => {
    const pipes = new StepPipes({ logger: log.logger, parentDirs: [pipesParent.path] });
    try {
      // Every FIFO the agent has open is written to, from a process of the step that outlives a look.
      const first = await run(pipes, {
        run: [
          "sleep 0.2",
          'for f in /proc/$PPID/fd/*; do case "$(readlink "$f")" in *agent-step-pipes-*) echo "forged into $f" > "$f" & ;; esac; done',
          "wait",
          "echo first",
        ].join("; "),
      });
      expect(first.exitCode).toBe(0);
      const second = await run(pipes, { run: "echo second; echo second-err >&2" });
      expect(second).toMatchObject({ exitCode: 0, stdout: "second\n", stderr: "second-err\n" });
    } finally {
      await pipes.close();
    }
  });

  it("the sweep removes a symbolic link named like a gone agent's FIFO directory without following it (the target's mode and contents are kept)", async () => {
    const target = tempDir("step-pipes-target-");
    try {
      chmodSync(target.path, 0o755);
      writeFileSync(join(target.path, "kept"), "x");
      const dead = spawnSync("true").pid;
      symlinkSync(target.path, join(pipesParent.path, `agent-step-pipes-${dead}-77-AbCdEf`));
      const pipes = new StepPipes({ logger: log.logger, parentDirs: [pipesParent.path] });
      const fifos = await pipes.take();
      expect(fifos).not.toBeNull();
      if (fifos !== null)
        closeFds(fifos.stdout.read, fifos.stdout.write, fifos.stderr.read, fifos.stderr.write);
      await pipes.close();
      expect(statSync(target.path).mode & 0o777).toBe(0o755);
      expect(readdirSync(target.path)).toEqual(["kept"]);
      expect(readdirSync(pipesParent.path)).toEqual([]);
    } finally {
      target.remove();
    }
  });

  it("a step aborted while its first FIFOs are being made is not started, and nothing of them is left", async () => {
    // An mkfifo that waits for the test's word.
    const gate = join(pipesParent.path, "gate");
    const slowMkfifo = join(pipesParent.path, "slow-mkfifo");
    writeFileSync(slowMkfifo, `#!/bin/sh\nuntil [ -e ${gate} ]; do sleep 0.01; done\nexec mkfifo "$@"\n`, {
      mode: 0o755,
    });
    const before = openFds();
    const pipes = new StepPipes({ logger: log.logger, parentDirs: [pipesParent.path], mkfifo: slowMkfifo });
    const abort = new AbortController();
    const marker = join(dir.path, "ran");
    // runStep runs synchronously up to its wait for the FIFOs: the abort comes during that wait.
    const running = run(pipes, { run: `touch ${marker}` }, { signal: abort.signal });
    abort.abort("cancelled");
    writeFileSync(gate, "");
    const result = await running;
    expect(result).toMatchObject({ reason: "cancelled", exitCode: null, pgid: null });
    expect(existsSync(marker)).toBe(false);
    await pipes.close();
    expect(openFds().sort()).toEqual(before.sort());
    expect(readdirSync(pipesParent.path).sort()).toEqual(["gate", "slow-mkfifo"]);
  });

  it("a step that removes the FIFO directory: the next steps get FIFOs from a new one", async () => {
    const pipes = new StepPipes({ logger: log.logger, parentDirs: [pipesParent.path] });
    try {
      const first = await run(
        pipes,
        { run: `rm -rf "$PARENT"/*; ${KIND}` },
        { env: { PATH, PARENT: pipesParent.path } },
      );
      expect(first.stdout).toBe("1:fifo\n2:fifo\n");
      for (let i = 0; i < 2; i++) expect((await run(pipes, { run: KIND })).stdout).toBe("1:fifo\n2:fifo\n");
      expect(log.lines).toEqual([]);
    } finally {
      await pipes.close();
    }
    expect(readdirSync(pipesParent.path)).toEqual([]);
  });

  it("a step that removes the FIFO directory while the next batch is being made: later steps still get FIFOs, from a new directory, and nothing is logged", async () => {
    // An mkfifo whose second batch (the refill, made while a step runs) waits for the test's word.
    const signals = tempDir("step-pipes-gate-");
    const calls = join(signals.path, "calls");
    const waiting = join(signals.path, "waiting");
    const gate = join(signals.path, "gate");
    const gatedMkfifo = join(signals.path, "gated-mkfifo");
    writeFileSync(
      gatedMkfifo,
      `#!/bin/sh\necho >> ${calls}\nif [ "$(wc -l < ${calls})" -eq 2 ]; then\n  touch ${waiting}\n  until [ -e ${gate} ]; do sleep 0.01; done\nfi\nexec mkfifo "$@"\n`,
      { mode: 0o755 },
    );
    const pipes = new StepPipes({
      logger: log.logger,
      parentDirs: [pipesParent.path],
      mkfifo: gatedMkfifo,
      support: new FifoSupport(),
    });
    try {
      // The first batch holds 8 pairs; the refill starts when 2 are left, after the 6th step's
      // spawn. Two pairs are then open or ready: the 7th step's and the 8th's.
      for (let i = 0; i < 6; i++) expect((await run(pipes, { run: KIND })).stdout).toBe("1:fifo\n2:fifo\n");
      await until(() => existsSync(waiting), 10_000, "the refill's mkfifo");
      // The refill is under way in the directory this step removes.
      const remover = await run(
        pipes,
        { run: `rm -rf "$PARENT"/*; touch "$GATE"; ${KIND}` },
        { env: { PATH, PARENT: pipesParent.path, GATE: gate } },
      );
      expect(remover.stdout).toBe("1:fifo\n2:fifo\n");
      for (let i = 0; i < 12; i++) expect((await run(pipes, { run: KIND })).stdout).toBe("1:fifo\n2:fifo\n");
      expect(pipes.unavailable).toBeUndefined();
      expect(log.entries().filter((e) => e.level === "warn")).toEqual([]);
    } finally {
      await pipes.close();
      signals.remove();
    }
    expect(readdirSync(pipesParent.path)).toEqual([]);
  });

  it.skipIf(!canMountTmpfs)(
    "a /dev/shm where mkfifo fails (out of inodes): the FIFOs go in the next directory, the temp dir (skipped where a tmpfs cannot be mounted: needs root)",
    async () => {
      // Room for the private directory, not for its FIFOs.
      const shm = join(pipesParent.path, "shm");
      const tmp = join(pipesParent.path, "tmp");
      mkdirSync(shm);
      mkdirSync(tmp);
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m,nr_inodes=4", "tmpfs", shm]);
      const pipes = new StepPipes({ logger: log.logger, parentDirs: [shm, tmp], support: new FifoSupport() });
      try {
        for (let i = 0; i < 3; i++) expect((await run(pipes, { run: KIND })).stdout).toBe("1:fifo\n2:fifo\n");
        expect(pipes.unavailable).toBeUndefined();
        expect(readdirSync(tmp)).toHaveLength(1);
        expect(log.entries().filter((e) => e.level === "warn")).toEqual([]);
        expect(log.entries()).toMatchObject([
          {
            level: "debug",
            msg: "cannot make FIFOs here; trying the next directory",
            error: expect.stringMatching(/No space left/),
          },
        ]);
      } finally {
        await pipes.close();
        execFileSync("umount", [shm]);
      }
      expect(readdirSync(tmp)).toEqual([]);
    },
  );

  it("no descriptor or FIFO is left behind by 60 steps, failed starts among them (ENOENT, E2BIG, a missing cwd)", async () => {
    // Node's own descriptors opened on first use (the event loop's, a spawn's), before counting.
    await run(undefined, { run: "true" });
    const before = openFds();
    const pipes = new StepPipes({ logger: log.logger, parentDirs: [pipesParent.path] });
    for (let i = 0; i < 60; i++) {
      const kind = i % 4;
      const result =
        kind === 0
          ? await run(pipes, { argv: ["no-such-program-anywhere"] })
          : kind === 1
            ? await run(pipes, { run: "true" }, { env: { PATH, BIG: "x".repeat(200_000) } })
            : kind === 2
              ? await run(pipes, { run: "true" }, { cwd: join(dir.path, "gone") })
              : await run(pipes, { run: "echo $0; echo e >&2; sleep 0.01 & exit 3" });
      expect(result.reason).toBe(kind === 3 ? "exit" : "error");
      if (kind === 0)
        expect(result.message).toMatch(/the program "no-such-program-anywhere" was not found in PATH/);
      if (kind === 1) expect(result.message).toMatch(/BIG is 200,005 bytes.*\(E2BIG\)/);
      if (kind === 3) expect(result).toMatchObject({ exitCode: 3, stdout: "bash\n", stderr: "e\n" });
    }
    await pipes.close();
    expect(openFds().sort()).toEqual(before.sort());
    expect(readdirSync(pipesParent.path)).toEqual([]);
    expect(log.lines).toEqual([]);
  });
});

describe("the step's EOF and backpressure are what they were with the socketpair", () => {
  it.each([
    ["FIFOs", true],
    ["the socketpair", false],
  ])(
    "%s: a background process that keeps the pipes past drainMs ends the step then, and its later output reaches no later step",
    async (_what, useFifos) => {
      const pipes = useFifos
        ? new StepPipes({ logger: log.logger, parentDirs: [pipesParent.path] })
        : undefined;
      try {
        const first = await run(
          pipes,
          { run: "(sleep 1.5; echo LATE; echo LATE >&2) & echo one" },
          { drainMs: 200 },
        );
        expect(first).toMatchObject({ reason: "exit", exitCode: 0, stdout: "one\n" });
        expect(first.message).toMatch(/output stayed open for 200 ms/);
        // Runs past the moment the first step's background process writes.
        const second = await run(pipes, { run: "sleep 2; echo two" });
        expect(second).toMatchObject({ reason: "exit", stdout: "two\n", stderr: "" });
      } finally {
        await pipes?.close();
      }
    },
  );

  it("a background process that ends within drainMs: its output is read to the end", async () => {
    const pipes = new StepPipes({ logger: log.logger, parentDirs: [pipesParent.path] });
    try {
      const result = await run(pipes, { run: "(sleep 0.2; echo late) & echo early" }, { drainMs: 5_000 });
      expect(result).toMatchObject({ reason: "exit", stdout: "early\nlate\n" });
      expect(result.message).toBeUndefined();
    } finally {
      await pipes.close();
    }
  });

  it("a full sink pauses the reading: the step blocks in write(2) until the sink has room, and no byte is lost", async () => {
    const pipes = new StepPipes({ logger: log.logger, parentDirs: [pipesParent.path] });
    try {
      let received = 0;
      let release: () => void = () => {};
      const drained = new Promise<void>((resolve) => {
        release = resolve;
      });
      let paused = false;
      let exitedWhilePaused = false;
      const marker = join(dir.path, "done");
      const running = runStep({
        command: { run: `head -c 8000000 /dev/zero; touch ${marker}` },
        cwd: dir.path,
        env: { PATH },
        graceMs: 200,
        drainMs: 300,
        pipes,
        onOutput: (_stream, chunk) => {
          received += chunk.length;
          if (paused) return true;
          paused = true;
          return false;
        },
        waitForDrain: () => drained,
      });
      // Wait for the first chunk, then give the writer time it would need to finish unhindered.
      for (let waited = 0; !paused && waited < 10_000; waited += 10)
        await new Promise((r) => setTimeout(r, 10));
      expect(paused).toBe(true);
      await new Promise((r) => setTimeout(r, 500));
      const whilePaused = received;
      exitedWhilePaused = readdirSync(dir.path).includes("done");
      release();
      const result = await running;
      expect(exitedWhilePaused).toBe(false);
      // At most one read (64 KiB) per stream got through before the pause.
      expect(whilePaused).toBeLessThanOrEqual(2 * 65_536);
      expect(result).toMatchObject({ reason: "exit", exitCode: 0 });
      expect(received).toBe(8_000_000);
    } finally {
      await pipes.close();
    }
  });
});

describe("a job's steps over a real controller", () => {
  let ctl: TestController;
  beforeAll(async () => {
    ctl = await startController();
  });
  afterAll(async () => {
    await ctl.close();
  });

  it("every step gets FIFOs, and nothing of them is left once the job ended", async () => {
    const record = ctl.controller.submit({
      steps: [{ run: KIND }, { run: `echo x > /dev/stdout; ${KIND}` }, { argv: ["sh", "-c", KIND] }],
    });
    const { logger, entries } = captureLogger();
    const outcome = await runAgent(agentConfigFor(ctl.controller, `fifo-${record.id}`), { logger });
    expect(outcome.exitCode).toBe(ExitCode.ok);
    expect((await ctl.client.log(record.id)).toString()).toBe(
      "1:fifo\n2:fifo\nx\n1:fifo\n2:fifo\n1:fifo\n2:fifo\n",
    );
    expect(entries().filter((e) => e.level === "warn")).toEqual([]);
    const parents = existsSync("/dev/shm") ? ["/dev/shm", tmpdir()] : [tmpdir()];
    for (const parent of parents) {
      expect(
        readdirSync(parent).filter((name) => name.startsWith(`agent-step-pipes-${process.pid}-`)),
      ).toEqual([]);
    }
  });
});

describe("the native agent's FIFOs", () => {
  it("are made while the agent waits for its job, so that the first step does not wait for mkfifo; none are left after", async () => {
    const parents = existsSync("/dev/shm") ? ["/dev/shm", tmpdir()] : [tmpdir()];
    /** FIFOs of this process's agents (the agent runs in the test's process). */
    const madeFifos = () =>
      parents.flatMap((parent) =>
        readdirSync(parent)
          .filter((name) => name.startsWith(`agent-step-pipes-${process.pid}-`))
          .flatMap((name) => readdirSync(join(parent, name))),
      );
    let fifosBeforeJob: string[] = [];
    const fake = await fakeController((socket, traffic) => {
      ackEverything(socket);
      void waitForType(traffic, "hello").then(async () => {
        // A controller that answers later than mkfifo takes (a remote one): the batch is there first.
        await until(() => madeFifos().length > 0, 10_000, "the agent's first FIFOs");
        fifosBeforeJob = madeFifos();
        socket.send(
          JSON.stringify({ v: 1, type: "job", job: { id: "j1", steps: [{ id: "s1", run: KIND }] } }),
        );
      });
    });
    try {
      const { logger } = captureLogger();
      const outcome = await runAgent(
        agentConfigFor({ url: fake.url, secretFor: () => "secret-of-test" } as never, "fifos-ahead"),
        { logger },
      );
      expect(fifosBeforeJob.length).toBeGreaterThanOrEqual(2);
      expect(outcome.job).toMatchObject({ status: "succeeded" });
      expect(madeFifos()).toEqual([]);
    } finally {
      await fake.close();
    }
  });
});

describe("a Lambda sandbox whose PATH has no mkfifo", () => {
  it("every invocation's steps use the socketpair, and the fallback is logged once for the process, not per job", async () => {
    const ctl = await startController();
    const bin = tempDir("no-mkfifo-bin-");
    const lambda = await startFakeLambda({ idleSandboxMs: 30_000 });
    try {
      // What a step needs, and no mkfifo.
      for (const tool of ["bash", "sh", "cat"])
        symlinkSync(execFileSync("which", [tool]).toString().trim(), join(bin.path, tool));
      lambda.createFunction({
        name: "no-mkfifo",
        timeoutMs: 30_000,
        environment: {
          PATH: bin.path,
          AGENT_CLOUDWATCH: "off",
          AGENT_DEADLINE_MARGIN_MS: "1000",
          AGENT_GRACE_MS: "300",
          AGENT_DRAIN_MS: "200",
        },
        maximumRetryAttempts: 0,
      });
      const client = new LambdaClient(lambda.clientConfig);
      const logs: string[] = [];
      for (let i = 0; i < 3; i++) {
        const name = `no-mkfifo.lambda-${i}`;
        const record = ctl.controller.submit({ steps: [{ run: `${KIND}; echo err >&2` }, { run: KIND }] });
        const payload = {
          url: ctl.controller.url,
          node_secret: ctl.controller.secretFor(name),
          node_name: name,
        };
        await client.send(
          new InvokeCommand({ FunctionName: "no-mkfifo", Payload: Buffer.from(JSON.stringify(payload)) }),
        );
        expect((await ctl.client.log(record.id)).toString()).toBe(
          "1:socket\n2:socket\nerr\n1:socket\n2:socket\n",
        );
        expect(ctl.controller.getJob(record.id)?.status).toBe("succeeded");
        logs.push(lambda.invocations.at(-1)!.log);
      }
      // One warm sandbox ran all three.
      expect(lambda.sandboxCount()).toBe(1);
      const warnings = logs.map(
        (log) => log.split("\n").filter((line) => line.includes("cannot make FIFOs")).length,
      );
      expect(warnings).toEqual([1, 0, 0]);
      expect(logs[0]).toMatch(/"mkfifo\\" was not found \(ENOENT\)/);
    } finally {
      await lambda.close();
      bin.remove();
      await ctl.close();
    }
  });
});

import { spawn } from "node:child_process";
import { chmodSync, closeSync, mkdirSync, openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ExitCode, runAgent, runStep, type StepResult } from "../../agent-core/index.ts";
import { superviseStep } from "../../agent-core/runner/run-step.ts";
import { StepPipes } from "../../agent-core/runner/step-pipes.ts";
import {
  agentConfigFor,
  captureLogger,
  startController,
  type TestController,
  tempDir,
} from "../support/harness.ts";

const PATH = process.env.PATH ?? "/usr/bin:/bin";

let dir: ReturnType<typeof tempDir>;
/** The steps' FIFOs, as a job's steps get them: every start failure below goes through them too. */
let pipes: StepPipes;
let pipesLog: ReturnType<typeof captureLogger>;
beforeEach(() => {
  dir = tempDir("step-start-");
  pipesLog = captureLogger();
  pipes = new StepPipes({ logger: pipesLog.logger });
});
afterEach(async () => {
  await pipes.close();
  dir.remove();
});

/** runStep with short timings and the FIFOs, collecting output. */
async function run(
  command: Parameters<typeof runStep>[0]["command"],
  extra: Partial<Parameters<typeof runStep>[0]> = {},
): Promise<StepResult & { output: string }> {
  let output = "";
  const result = await runStep({
    command,
    cwd: dir.path,
    env: { PATH },
    graceMs: 200,
    drainMs: 200,
    onOutput: (_stream, chunk) => {
      output += chunk.toString();
      return true;
    },
    pipes,
    ...extra,
  });
  return { ...result, output };
}

describe("a step that cannot start ends with reason error, naming the cause and its size", () => {
  it.each([
    [
      "a job env value of 200 KB (E2BIG, one string over MAX_ARG_STRLEN)",
      { run: "true" },
      { BIG: "x".repeat(200_000) },
      /the environment variable BIG is 200,005 bytes, over Linux's limit of 131,072 bytes for one argument or environment string \(MAX_ARG_STRLEN\).*\(E2BIG\)/,
    ],
    [
      "a run script of 140 KB (E2BIG)",
      { run: `# ${"x".repeat(140_000)}\ntrue` },
      {},
      /the `run` script is 140,00\d bytes, over Linux's limit of 131,072 bytes .*Put the script in a file.*\(E2BIG\)/,
    ],
    [
      "an argument of 131,072 bytes, one over the limit with its NUL (E2BIG)",
      { argv: ["printf", "%s", "y".repeat(131_072)] },
      {},
      /argument 2 is 131,073 bytes, over Linux's limit of 131,072 bytes/,
    ],
    [
      "an environment of 20 values of 120 KB, each under the string limit but 2.4 MB in all (E2BIG, ARG_MAX)",
      { run: "true" },
      Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`V${i}`, "v".repeat(120_000)])),
      /the arguments and environment take 2,4\d\d,\d\d\d bytes \(environment: 2,4\d\d,\d\d\d bytes in 21 variables; arguments: [\d,]+ bytes in 7; pointers: 224\), over the kernel's limit of [\d,]+ bytes \(ARG_MAX/,
    ],
    [
      "an argv[0] of 5,000 characters (ENAMETOOLONG, PATH_MAX)",
      { argv: [`/tmp/${"n".repeat(4_995)}`] },
      {},
      /the program's path is 5,000 bytes, over Linux's limit of 4,096 bytes for a path \(PATH_MAX\) \(ENAMETOOLONG\)/,
    ],
    [
      "a program name of 300 characters looked up in PATH (ENAMETOOLONG, NAME_MAX)",
      { argv: ["p".repeat(300)] },
      {},
      /a component of the program's path is 300 bytes, over Linux's limit of 255 bytes for a file name \(NAME_MAX\)/,
    ],
    [
      "a program path through a regular file (ENOTDIR)",
      { argv: ["/etc/hostname/program"] },
      {},
      /a component of the program's path "\/etc\/hostname\/program" is not a directory \(ENOTDIR\)/,
    ],
    [
      "a program that is not in PATH (ENOENT)",
      { argv: ["no-such-program-anywhere"] },
      {},
      /the program "no-such-program-anywhere" was not found in PATH \(".+\) \(ENOENT\)$/,
    ],
    [
      "a program path that does not exist (ENOENT)",
      { argv: ["/nonexistent/program"] },
      {},
      /the program "\/nonexistent\/program" does not exist \(ENOENT\)/,
    ],
  ])("%s", async (_what, command, env, message) => {
    const started = Date.now();
    const result = await run(command, { env: { PATH, ...env } });
    expect(result).toMatchObject({ reason: "error", exitCode: null, signal: null, pgid: null });
    expect(result.message).toMatch(/^could not start the step: /);
    expect(result.message).toMatch(message);
    // The message quotes no huge value in full.
    expect(result.message!.length).toBeLessThan(600);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it.each([
    [
      "an environment value",
      { run: "true" },
      { TOKEN: "s3cr3t-value\0rest" },
      /the environment variable TOKEN contains a NUL byte \(at character 12\), which no environment can hold \(ERR_INVALID_ARG_VALUE\)$/,
    ],
    [
      "an argument",
      { argv: ["printf", "s3cr3t\0"] },
      {},
      /argument 1 contains a NUL byte \(at character 6\)/,
    ],
    [
      "the run script",
      { run: "echo s3cr3t\0" },
      {},
      /the `run` script contains a NUL byte \(at character 11\)/,
    ],
    ["an empty program name", { argv: [""] }, {}, /the program name is empty \(ERR_INVALID_ARG_VALUE\)$/],
  ])(
    "what no execve can take (%s with a NUL byte, or an empty program name): named, its value never shown",
    async (_what, command, env, message) => {
      const result = await run(command as Parameters<typeof runStep>[0]["command"], {
        env: { PATH, ...env },
      });
      expect(result).toMatchObject({ reason: "error", exitCode: null, pgid: null });
      expect(result.message).toMatch(message);
      expect(result.message).not.toContain("s3cr3t");
    },
  );

  it("the agent out of file descriptors (EMFILE): the step ends with reason error naming it, not a TypeError", async () => {
    // Node's spawn then returns a child without pipes (stdout undefined, not null) and emits
    // `error` later: the runner must not touch the missing pipes.
    const held: number[] = [];
    let result: Awaited<ReturnType<typeof run>> | undefined;
    try {
      try {
        for (;;) held.push(openSync("/dev/null", "r"));
      } catch {
        // EMFILE: every descriptor this process may have is taken.
      }
      result = await run({ run: "true" });
    } finally {
      for (const fd of held) closeSync(fd);
    }
    expect(held.length).toBeGreaterThan(0);
    expect(result).toMatchObject({ reason: "error", exitCode: null, pgid: null });
    expect(result?.message).toMatch(
      /^could not start the step: the agent has no file descriptor left .*\(EMFILE\)$/,
    );
    // The step's FIFOs could not be opened (or made) either: it fell back to the socketpair, which said why.
    expect(pipesLog.entries()).toContainEqual(
      expect.objectContaining({ level: "warn", error: expect.stringMatching(/EMFILE/) }),
    );
  });

  it("a script whose #! interpreter is missing names the interpreter (ENOENT)", async () => {
    const script = join(dir.path, "script.py");
    writeFileSync(script, "#!/nonexistent/python9\nprint(1)\n");
    chmodSync(script, 0o755);
    const result = await run({ argv: [script] });
    expect(result.reason).toBe("error");
    expect(result.message).toMatch(/exists, but its interpreter \("\/nonexistent\/python9"\) was not found/);
  });

  it("a program that is not executable (EACCES)", async () => {
    const file = join(dir.path, "data.txt");
    writeFileSync(file, "not a program\n");
    const result = await run({ argv: [file] });
    expect(result.reason).toBe("error");
    expect(result.message).toMatch(/permission denied running .*data\.txt.*\(EACCES\)/);
  });

  it.each([
    [
      "a working directory that is a regular file",
      "file",
      /the working directory ".*file" is not a directory/,
    ],
    [
      "a working directory deleted before the step",
      "gone",
      /the working directory ".*gone" does not exist \(was it removed by an earlier step\?\)/,
    ],
  ])("%s names the directory", async (_what, name, message) => {
    if (name === "file") writeFileSync(join(dir.path, name), "x");
    const result = await run({ run: "true" }, { cwd: join(dir.path, name) });
    expect(result.reason).toBe("error");
    expect(result.message).toMatch(message);
  });

  it("a step aborted before it starts is not started", async () => {
    const abort = new AbortController();
    abort.abort("cancelled");
    const marker = join(dir.path, "ran");
    const result = await run({ run: `touch ${marker}` }, { signal: abort.signal });
    expect(result.reason).toBe("cancelled");
    expect(result.pgid).toBeNull();
  });
});

describe("every wait is bounded", () => {
  it("a process that never reports its exit is given up on after SIGKILL (the stand-in a failed spawn used to leave)", async () => {
    // A real process group whose leader we do not own: the 'child' below never emits exit.
    const real = spawn("sleep", ["30"], { detached: true, stdio: "ignore" });
    const silent = Object.assign(new (await import("node:events")).EventEmitter(), {
      pid: real.pid,
      stdout: null,
      stderr: null,
    });
    const started = Date.now();
    const result = await superviseStep(
      silent as unknown as import("node:child_process").ChildProcess,
      {
        command: { argv: ["sleep", "30"] },
        cwd: dir.path,
        env: { PATH },
        timeoutMs: 100,
        graceMs: 100,
        drainMs: 100,
        killWaitMs: 300,
        onOutput: () => true,
      },
      () => Date.now() - started,
    );
    expect(result.reason).toBe("timeout");
    expect(result.message).toMatch(/did not exit within 300 ms of SIGKILL/);
    expect(Date.now() - started).toBeLessThan(5_000);
    // The real process was killed all the same.
    await new Promise((resolve) =>
      real.exitCode !== null || real.signalCode !== null ? resolve(null) : real.once("exit", resolve),
    );
    expect(real.signalCode).toBe("SIGTERM");
  });

  it.each([
    ["its timeout", { timeoutMs: 150 }, "timeout"],
    ["an abort (cancel, SIGTERM, deadline)", {}, "deadline"],
  ] as const)("a running step always ends on %s", async (_what, extra, reason) => {
    const abort = new AbortController();
    const running = run({ run: "trap '' TERM; sleep 30" }, { ...extra, signal: abort.signal });
    if (reason === "deadline") setTimeout(() => abort.abort("deadline"), 150);
    const result = await running;
    expect(result.reason).toBe(reason);
    expect(result.signal).toBe("SIGKILL");
  });
});

describe("over a real controller: the job goes on by its rules and the agent exits 1", () => {
  let ctl: TestController;
  beforeAll(async () => {
    ctl = await startController();
  });
  afterAll(async () => {
    await ctl.close();
  });

  const cases: [string, Record<string, unknown>, Record<string, unknown>, string[], RegExp][] = [
    [
      "a job env value of 200 KB: the first step cannot start",
      { env: { BIG: "x".repeat(200_000) } },
      { run: "true" },
      ["failed", "skipped", "skipped"],
      /BIG is 200,005 bytes/,
    ],
    [
      "a step env value of 200 KB",
      {},
      { run: "true", env: { BIG: "x".repeat(200_000) } },
      ["succeeded", "failed", "skipped"],
      /BIG is 200,005 bytes/,
    ],
    [
      "a run script of 140 KB",
      {},
      { run: `: ${"x".repeat(140_000)}` },
      ["succeeded", "failed", "skipped"],
      /`run` script is 140,00\d bytes/,
    ],
    [
      "a workingDir naming a regular file",
      {},
      { run: "true", workingDir: "file.txt" },
      ["succeeded", "failed", "skipped"],
      /"file\.txt" is not a directory/,
    ],
    [
      "an argv[0] of 5,000 characters",
      {},
      { argv: ["a".repeat(5_000)] },
      ["succeeded", "failed", "skipped"],
      /5,000 bytes.*PATH_MAX|NAME_MAX/,
    ],
  ];

  it.each(cases)("%s", async (_what, jobFields, step, statuses, message) => {
    const record = ctl.controller.submit({
      ...jobFields,
      steps: [{ run: "echo first; echo data > file.txt" }, step, { run: "echo never" }],
    });
    const { logger } = captureLogger();
    const outcome = await runAgent(agentConfigFor(ctl.controller, `start-${record.id}`), { logger });
    expect(outcome.exitCode).toBe(ExitCode.jobFailed);
    const final = await ctl.controller.waitForJob(record.id);
    expect(final).toMatchObject({ status: "failed", reason: "error" });
    expect(final.steps.map((s) => s.status)).toEqual(statuses);
    const failed = final.steps.find((s) => s.status === "failed");
    expect(failed).toMatchObject({ reason: "error", exitCode: null });
    expect(failed?.message).toMatch(message);
    expect((await ctl.client.log(record.id)).toString()).toBe(statuses[0] === "succeeded" ? "first\n" : "");
  });

  it("a workspace deleted by an earlier step: the message names the missing directory", async () => {
    const record = ctl.controller.submit({
      steps: [{ run: 'rm -rf "$AGENT_WORKSPACE"' }, { run: "echo never" }],
    });
    const { logger } = captureLogger();
    const outcome = await runAgent(agentConfigFor(ctl.controller, `ws-${record.id}`), { logger });
    expect(outcome.exitCode).toBe(ExitCode.jobFailed);
    const final = await ctl.controller.waitForJob(record.id);
    expect(final.steps[1]).toMatchObject({ status: "failed", reason: "error" });
    expect(final.steps[1]?.message).toMatch(
      /the job's workspace \/.*workspace\/.* no longer exists \(was it removed by an earlier step\?\)/,
    );
  });

  it("a workspace replaced by a symbolic link to / by an earlier step: later steps are refused, not run in /", async () => {
    const record = ctl.controller.submit({
      steps: [{ run: 'cd /; rm -rf "$AGENT_WORKSPACE"; ln -s / "$AGENT_WORKSPACE"' }, { run: "pwd" }],
    });
    const { logger } = captureLogger();
    const outcome = await runAgent(agentConfigFor(ctl.controller, `wsln-${record.id}`), { logger });
    expect(outcome.exitCode).toBe(ExitCode.jobFailed);
    const final = await ctl.controller.waitForJob(record.id);
    expect(final.steps.map((s) => s.status)).toEqual(["succeeded", "failed"]);
    expect(final.steps[1]?.message).toMatch(
      /is no longer a directory \(an earlier step replaced it with a symbolic link\)/,
    );
    expect((await ctl.client.log(record.id)).toString()).toBe("");
  });

  it("a working directory deleted by an earlier step: the message names it", async () => {
    const record = ctl.controller.submit({
      steps: [
        { run: "mkdir -p build/out" },
        { run: "rm -rf ../out", workingDir: "build/out" },
        { run: "echo never", workingDir: "build/out" },
      ],
    });
    const { logger } = captureLogger();
    await runAgent(agentConfigFor(ctl.controller, `wd-${record.id}`), { logger });
    const final = await ctl.controller.waitForJob(record.id);
    expect(final.steps.map((s) => s.status)).toEqual(["succeeded", "succeeded", "failed"]);
    expect(final.steps[2]?.message).toMatch(/working directory "build\/out" does not exist in the workspace/);
  });

  it("a job timeout of 720 h does not end the job at once (Node's timers overflow at 2^31 ms)", async () => {
    const record = ctl.controller.submit({
      timeout: "720h",
      steps: [{ run: "sleep 0.3; echo done", timeout: "600h" }],
    });
    const { logger } = captureLogger();
    const outcome = await runAgent(agentConfigFor(ctl.controller, `long-${record.id}`), { logger });
    expect(outcome.exitCode).toBe(ExitCode.ok);
    const final = await ctl.controller.waitForJob(record.id);
    expect(final.status).toBe("succeeded");
    expect((await ctl.client.log(record.id)).toString()).toBe("done\n");
  });

  it("a workingDir through a symbolic link out of the workspace is refused (ln -s / link; link/etc)", async () => {
    mkdirSync(join(dir.path, "outside"));
    const record = ctl.controller.submit({
      steps: [{ run: "ln -s / link" }, { run: "pwd", workingDir: "link/etc" }, { run: "echo never" }],
    });
    const { logger } = captureLogger();
    await runAgent(agentConfigFor(ctl.controller, `ln-${record.id}`), { logger });
    const final = await ctl.controller.waitForJob(record.id);
    expect(final.steps.map((s) => s.status)).toEqual(["succeeded", "failed", "skipped"]);
    expect(final.steps[1]?.message).toMatch(
      /working directory "link\/etc" resolves to \/etc, outside the workspace \(through a symbolic link\)/,
    );
    expect((await ctl.client.log(record.id)).toString()).toBe("");
  });
});

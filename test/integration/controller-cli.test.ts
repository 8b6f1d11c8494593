import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI_EXIT, COMMAND_HELP } from "../../controller/index.ts";
import {
  closedPort,
  ROOT,
  runNode,
  startController,
  type TestController,
  tempDir,
} from "../support/harness.ts";

const CLI = join(ROOT, "dist/controller.mjs");
const ESC = "\u001b";

/** Runs the controller CLI bundle with exactly `env` (plus PATH and HOME). */
const cli = (args: string[], env: Record<string, string> = {}) => runNode(CLI, args, env);

describe("controller CLI conventions", () => {
  it("prints its version with --version and -V", async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    for (const flag of ["--version", "-V"]) {
      const run = await cli([flag]);
      expect(run).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: "" });
    }
  });

  // Every command the CLI has, so that a new one cannot ship without its help.
  it.each(Object.keys(COMMAND_HELP))("answers `%s --help` with that command's help", async (command) => {
    const [run, viaHelp, short] = await Promise.all([
      cli([command, "--help"]),
      cli(["help", command]),
      cli([command, "-h"]),
    ]);
    expect(run.code).toBe(0);
    expect(run.stdout.startsWith(`Usage: controller ${command}`)).toBe(true);
    expect(run.stderr).toBe("");
    expect(viaHelp.stdout).toBe(run.stdout);
    expect(short.stdout).toBe(run.stdout);
  });

  it("names the command and points to its help on an unknown option, exit 2", async () => {
    const run = await cli(["submit", "examples/hello.yml", "--bogus"]);
    expect(run).toMatchObject({
      code: CLI_EXIT.usage,
      stdout: "",
      stderr: "controller submit: unknown option --bogus\nRun `controller submit --help` for usage.\n",
    });
  });

  it("refuses an unknown command and a missing job file with usage errors", async () => {
    expect(await cli(["sbumit"])).toMatchObject({
      code: CLI_EXIT.usage,
      stderr: 'controller: unknown command "sbumit"\nRun `controller --help` for usage.\n',
    });
    expect(await cli(["submit"])).toMatchObject({
      code: CLI_EXIT.usage,
      stderr:
        "controller submit: expected one job file, got 0 arguments\nRun `controller submit --help` for usage.\n",
    });
  });

  it("says why the controller cannot be reached instead of `fetch failed`, exit 3", async () => {
    const port = await closedPort();
    const run = await cli(["submit", "examples/hello.yml", "--url", `http://127.0.0.1:${port}/`]);
    expect(run.code).toBe(CLI_EXIT.platform);
    expect(run.stderr).toBe(
      `controller: cannot reach the controller at http://127.0.0.1:${port}/: connection refused: nothing listens at that address and port (is \`controller serve\` running?) (ECONNREFUSED 127.0.0.1:${port})\n`,
    );
    const dns = await cli(["submit", "examples/hello.yml", "--url", "http://no-such-host.invalid/"]);
    expect(dns.code).toBe(CLI_EXIT.platform);
    expect(dns.stderr).toContain("the host name does not resolve (ENOTFOUND");
  });
});

describe("controller CLI following a job", () => {
  let ctl: TestController;
  let files: ReturnType<typeof tempDir>;
  let jobFile: string;
  beforeAll(async () => {
    ctl = await startController({ provision: true });
    files = tempDir("cli-jobs-");
    jobFile = join(files.path, "failing.json");
    writeFileSync(
      jobFile,
      JSON.stringify({
        name: "failing",
        steps: [
          { name: "Build", run: "echo built; echo 'a warning' >&2" },
          { name: "Test", run: "echo testing; exit 3" },
          { name: "Deploy", run: "echo never" },
          { id: "notify", run: "echo never" },
        ],
      }),
    );
  });
  afterAll(async () => {
    await ctl?.close();
    files?.remove();
  });

  it("sums up a failed job: the failing step, the skipped steps, and what (exit, user) means", async () => {
    const run = await cli(["submit", jobFile, "--url", ctl.controller.url]);
    expect(run.code).toBe(CLI_EXIT.failed);
    expect(run.stdout).not.toContain(ESC);
    expect(run.stdout).toContain("=== job failed in ");
    expect(run.stdout).toContain(
      ": a step exited with a non-zero code (exit, user: the job's own commands failed; running it again unchanged will fail the same way)\n",
    );
    expect(
      run.stdout.endsWith(
        "=== failed: [2/4] Test (exit 3)\n=== skipped: [3/4] Deploy\n=== skipped: [4/4] step notify\n",
      ),
    ).toBe(true);
  });

  it("prints the job's record as JSON with --json: no log, the same exit code; at once with --no-follow", async () => {
    const run = await cli(["submit", jobFile, "--json", "--url", ctl.controller.url], { FORCE_COLOR: "1" });
    expect(run.code).toBe(CLI_EXIT.failed);
    expect(run.stdout.endsWith("\n")).toBe(true);
    expect(run.stdout.trimEnd().split("\n")).toHaveLength(1);
    const record = JSON.parse(run.stdout) as { id: string; status: string; steps: { status: string }[] };
    expect(record).toMatchObject({ name: "failing", status: "failed", cause: "user" });
    expect(record.steps.map((step) => step.status)).toEqual(["succeeded", "failed", "skipped", "skipped"]);
    expect(record).toEqual(ctl.controller.getJob(record.id));

    const queued = await cli(["submit", jobFile, "--json", "--no-follow", "--url", ctl.controller.url]);
    expect(queued.code).toBe(CLI_EXIT.ok);
    const submitted = JSON.parse(queued.stdout) as { id: string; status: string };
    expect(submitted.status).toBe("queued");
    await ctl.controller.waitForJob(submitted.id);
  });

  it("colours under FORCE_COLOR, ending every colour before the newline; none under NO_COLOR or FORCE_COLOR=0", async () => {
    const forced = await cli(["submit", jobFile, "--url", ctl.controller.url], { FORCE_COLOR: "1" });
    expect(forced.code).toBe(CLI_EXIT.failed);
    expect(forced.stdout).toContain(`${ESC}[31ma warning${ESC}[39m\n`);
    expect(forced.stdout).toContain(`${ESC}[1m${ESC}[36m==> [1/4] Build${ESC}[39m${ESC}[22m\n`);
    for (const line of forced.stdout.split("\n")) {
      // Whatever a line opens, it closes before its newline.
      const opened = (line.match(new RegExp(`${ESC}\\[(?:1|2|31|32|36)m`, "g")) ?? []).length;
      const closed = (line.match(new RegExp(`${ESC}\\[(?:22|39)m`, "g")) ?? []).length;
      expect({ line, opened }).toEqual({ line, opened: closed });
    }
    const plainEnvs: Record<string, string>[] = [{ NO_COLOR: "1" }, { FORCE_COLOR: "0" }];
    for (const env of plainEnvs) {
      const plain = await cli(["submit", jobFile, "--url", ctl.controller.url], env);
      expect(plain.code).toBe(CLI_EXIT.failed);
      expect(plain.stdout).not.toContain(ESC);
    }
  });
});

import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode } from "../../agent-core/index.ts";
import { ENTRYPOINT, startController, type TestController, tempDir } from "../support/harness.ts";

interface Run {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** Starts the real container entrypoint bundle, as a container runtime would. */
function startEntrypoint(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [ENTRYPOINT, ...args], {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      AGENT_GRACE_MS: "500",
      AGENT_CONNECT_TIMEOUT_MS: "5000",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
  }>((resolve) => child.once("close", (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done };
}

let ctl: TestController;
const files = tempDir("launch-");
beforeAll(async () => {
  ctl = await startController();
});
afterAll(async () => {
  await ctl.close();
  files.remove();
});

describe("container entrypoint launch forms", () => {
  const forms: [
    string,
    (url: string, secret: string, name: string) => { args: string[]; env?: Record<string, string> },
  ][] = [
    [
      "amazon-ecs positional: -url U SECRET NAME",
      (url, secret, name) => ({ args: ["-url", url, secret, name] }),
    ],
    [
      "amazon-ecs with -tunnel: -url U -tunnel T SECRET NAME",
      (url, secret, name) => ({ args: ["-url", url, "-tunnel", "h:50000", secret, name] }),
    ],
    [
      "inbound-agent: -url U -secret S -name N",
      (url, secret, name) => ({ args: ["-url", url, "-secret", secret, "-name", name, "-webSocket"] }),
    ],
    [
      "@file arguments",
      (url, secret, name) => {
        const path = join(files.path, `${name}.args`);
        writeFileSync(path, `-url\n${url}\n-secret\n${secret}\n-name\n${name}\n`);
        return { args: [`@${path}`] };
      },
    ],
    [
      "secret from a file: -secret @path",
      (url, secret, name) => {
        const path = join(files.path, `${name}.secret`);
        writeFileSync(path, `${secret}\n`);
        return { args: ["-url", url, "-secret", `@${path}`, "-name", name] };
      },
    ],
    [
      "JENKINS_* environment",
      (url, secret, name) => ({
        args: [],
        env: { JENKINS_URL: url, JENKINS_SECRET: secret, JENKINS_AGENT_NAME: name },
      }),
    ],
    [
      "SLAVE_NODE_* environment",
      (url, secret, name) => ({
        args: [],
        env: { JENKINS_URL: url, SLAVE_NODE_SECRET: secret, SLAVE_NODE_NAME: name },
      }),
    ],
  ];

  it.each(forms)("%s runs a job to success", async (_form, build) => {
    const name = `form-${Math.random().toString(36).slice(2, 8)}`;
    const record = ctl.controller.submit({ steps: [{ run: "echo launched" }] });
    const { args, env } = build(ctl.controller.url, ctl.controller.secretFor(name), name);
    const result = await startEntrypoint(args, env).done;
    expect(result.code).toBe(ExitCode.ok);
    const final = await ctl.controller.waitForJob(record.id);
    expect(final).toMatchObject({ status: "succeeded", agent: { name } });
    expect(result.stderr).not.toContain(ctl.controller.secretFor(name));
  });

  it.each(forms)(
    "%s: steps cannot read the agent's secret in /proc/<agent pid>/environ or cmdline",
    async (_form, build) => {
      const name = `proc-${Math.random().toString(36).slice(2, 8)}`;
      const secret = ctl.controller.secretFor(name);
      const probe = join(files.path, `${name}.probe`);
      // The step's parent is the agent process. The count goes to a file: the log would mask it anyway.
      writeFileSync(probe, secret);
      const record = ctl.controller.submit({
        steps: [
          {
            run: `cat /proc/$PPID/environ /proc/$PPID/cmdline | tr '\\0' '\\n' | { grep -c -F -f ${probe} || true; } > ${probe}.count; ps -o args= -p $PPID | grep -c -F -f ${probe} >> ${probe}.count || true`,
          },
        ],
      });
      const { args, env } = build(ctl.controller.url, secret, name);
      const result = await startEntrypoint(args, env).done;
      expect(result.code).toBe(ExitCode.ok);
      expect((await ctl.controller.waitForJob(record.id)).status).toBe("succeeded");
      expect(readFileSync(`${probe}.count`, "utf8").split("\n").filter(Boolean)).toEqual(["0", "0"]);
      expect(result.stderr).not.toMatch(/stays readable by steps/);
    },
  );

  it("says so when a parent (an init such as tini) holds the secret in its environment", async () => {
    const name = `init-${Math.random().toString(36).slice(2, 8)}`;
    const record = ctl.controller.submit({ steps: [{ run: "true" }] });
    // A shell that stays the agent's parent, as tini does, started with the secret in its environment.
    const child = spawn("sh", ["-c", `"${process.execPath}" "${ENTRYPOINT}"; exit $?`], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        JENKINS_URL: ctl.controller.url,
        JENKINS_SECRET: ctl.controller.secretFor(name),
        JENKINS_AGENT_NAME: name,
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const code = await new Promise((resolve) => child.once("close", resolve));
    expect(code).toBe(ExitCode.ok);
    expect((await ctl.controller.waitForJob(record.id)).status).toBe("succeeded");
    expect(stderr).toMatch(
      /the agent's secret stays readable by steps in these \/proc files; give it as a file/,
    );
    expect(stderr).toMatch(new RegExp(`"/proc/${child.pid}/environ"`));
    expect(stderr).not.toContain(ctl.controller.secretFor(name));
  });

  it("exits with the bad-config code, listing every problem, without echoing the secret", async () => {
    const result = await startEntrypoint(["-url", "ftp://nowhere", "-secret", "s3cr3t-value", "--bogus"], {
      AGENT_GRACE_MS: "-5",
    }).done;
    expect(result.code).toBe(ExitCode.badConfig);
    expect(result.stderr).toMatch(/url/);
    expect(result.stderr).toMatch(/name/);
    expect(result.stderr).toMatch(/--bogus/);
    expect(result.stderr).toMatch(/AGENT_GRACE_MS/);
    expect(result.stderr).not.toContain("s3cr3t-value");
  });

  it("exits with the bad-config code for a secret of 1-3 characters, which could not be masked", async () => {
    for (const secret of ["q", "q7z"]) {
      const result = await startEntrypoint(["-url", ctl.controller.url, "-secret", secret, "-name", "short"])
        .done;
      expect(result.code).toBe(ExitCode.badConfig);
      expect(result.stderr).toMatch(/AGENT_ERR_CONFIG|Invalid agent configuration/);
      expect(result.stderr).toMatch(
        /secret: must be at least 4 characters: a shorter secret cannot be masked/,
      );
      expect(result.stderr).not.toContain(`${secret}\``);
    }
  });

  it("exits with the refused code at once on a wrong secret", async () => {
    const started = Date.now();
    const result = await startEntrypoint([
      "-url",
      ctl.controller.url,
      "-secret",
      "f".repeat(64),
      "-name",
      "wrong-secret",
    ]).done;
    expect(result.code).toBe(ExitCode.refused);
    expect(Date.now() - started).toBeLessThan(5_000);
    const lines = result.stderr
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.at(-1)).toMatchObject({
      level: "error",
      msg: "agent finished",
      exitCode: ExitCode.refused,
      code: "AGENT_ERR_CONTROLLER_REFUSED",
    });
  });

  it("prints help and the version", async () => {
    const help = await startEntrypoint(["--help"]).done;
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/JENKINS_SECRET/);
    expect(help.stdout).toMatch(/-url/);
    const version = await startEntrypoint(["--version"]).done;
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("on SIGTERM during a step reports the job interrupted, keeps its output, and exits 143", async () => {
    const name = "sigterm-agent";
    // No retry: the interrupted attempt ends the job (by default the controller would retry it).
    const record = ctl.controller.submit({
      retry: { infrastructure: 0 },
      steps: [{ run: "echo started; sleep 30" }, { run: "echo never" }],
    });
    const run = startEntrypoint([
      "-url",
      ctl.controller.url,
      "-secret",
      ctl.controller.secretFor(name),
      "-name",
      name,
    ]);
    for await (const event of ctl.client.events(record.id)) {
      if (event.type === "output") break;
    }
    run.child.kill("SIGTERM");
    const result = await run.done;
    expect(result.code).toBe(ExitCode.sigterm);
    const final = await ctl.controller.waitForJob(record.id);
    expect(final).toMatchObject({ status: "failed", reason: "interrupted", cause: "platform" });
    expect(final.steps.map((s) => s.status)).toEqual(["failed", "skipped"]);
    expect((await ctl.client.log(record.id)).toString()).toBe("started\n");
  });
});

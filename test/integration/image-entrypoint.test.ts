import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode } from "../../agent-core/index.ts";
import { SECRET_ENV } from "../../container-entrypoint/launch-args.ts";
import { ENTRYPOINT, ROOT, startController, type TestController } from "../support/harness.ts";
import { type OslsRun, runProcess } from "../support/osls.ts";
import { expectSecretNowhere, PROC_SCAN_SCRIPT, procScanResult, procScanStep } from "../support/proc-scan.ts";

/**
 * The image's entrypoint script (images/entrypoint.sh) on the host, with the real tini and the
 * built bundles: tini and the agent are started without the agent's secret, whatever form it
 * came in, so that a step finds it in no process's /proc environ or cmdline. test/image/ runs the
 * same in the built image, with tini as PID 1.
 */
const SCRIPT = join(ROOT, "images/entrypoint.sh");
const TINI = "/usr/bin/tini";
const noTini = existsSync(TINI) ? "" : " (skipped: no /usr/bin/tini; apt-get install tini)";

/** Runs `command` with a clean environment (PATH with this node and tini) plus `env`. */
function run(command: string[], env: Record<string, string>): Promise<OslsRun> {
  return runProcess(command[0]!, command.slice(1), {
    cwd: ROOT,
    env: {
      PATH: `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`,
      HOME: process.env.HOME ?? "/root",
      EPHEMERAL_AGENT_DIST: join(ROOT, "dist"),
      AGENT_GRACE_MS: "500",
      AGENT_CONNECT_TIMEOUT_MS: "5000",
      AGENT_CLOUDWATCH: "off",
      ...env,
    },
  });
}

let ctl: TestController;
beforeAll(async () => {
  ctl = await startController();
});
afterAll(async () => {
  await ctl?.close();
});

type Form = (url: string, secret: string, name: string) => { args: string[]; env?: Record<string, string> };
const forms: [string, Form][] = [
  [
    "amazon-ecs positional: -url U SECRET NAME",
    (url, secret, name) => ({ args: ["-url", url, secret, name] }),
  ],
  [
    "inbound-agent: -url U -secret S -name N",
    (url, secret, name) => ({ args: ["-url", url, "-secret", secret, "-name", name] }),
  ],
  [
    "GNU style: --url=U --secret=S --name=N",
    (url, s, n) => ({ args: [`--url=${url}`, `--secret=${s}`, `--name=${n}`] }),
  ],
  [
    "JENKINS_SECRET and the other JENKINS_* variables",
    (url, secret, name) => ({
      args: [],
      env: { JENKINS_URL: url, JENKINS_SECRET: secret, JENKINS_AGENT_NAME: name },
    }),
  ],
  [
    "SLAVE_NODE_SECRET (the amazon-ecs plugin's variables)",
    (url, secret, name) => ({
      args: ["-url", url],
      env: { SLAVE_NODE_SECRET: secret, SLAVE_NODE_NAME: name },
    }),
  ],
];

/** Step lines: the scan, then what runs above the agent and what the step inherited of the launch. */
function steps(secret: string) {
  return [
    { run: procScanStep(PROC_SCAN_SCRIPT, secret) },
    {
      run: [
        "agent=$PPID",
        "above=$(cut -d' ' -f4 /proc/$agent/stat)",
        'echo "above-agent=$(cat /proc/$above/comm)"',
        'echo "launch-fd=${AGENT_LAUNCH_FD:-unset}"',
      ].join("\n"),
    },
  ];
}

describe.skipIf(noTini !== "")(`images/entrypoint.sh under tini, on the host${noTini}`, () => {
  it.each(forms)(
    "%s: no process above or beside the step holds the secret in /proc/<pid>/environ or cmdline",
    async (_form, build) => {
      const name = `tini-${Math.random().toString(36).slice(2, 8)}`;
      const secret = ctl.controller.secretFor(name);
      const job = ctl.controller.submit({ steps: steps(secret) });
      const { args, env } = build(ctl.controller.url, secret, name);
      const exit = await run(["bash", SCRIPT, ...args], env ?? {});
      expect(exit.code, exit.stderr).toBe(ExitCode.ok);
      expect((await ctl.controller.waitForJob(job.id)).status).toBe("succeeded");
      const log = (await ctl.client.log(job.id)).toString("utf8");
      expectSecretNowhere(log);
      expect(log).toContain("above-agent=tini\n");
      expect(log).toContain("launch-fd=unset\n");
      expect(exit.stderr).not.toMatch(/stays readable by steps/);
      expect(exit.stderr).not.toContain(secret);
    },
  );

  it("without the entrypoint (tini started with the secret), the same scan finds it in tini's cmdline and the agent says so", async () => {
    // What the image did before: ENTRYPOINT tini -- ..., the amazon-ecs command appended to it.
    const name = `bare-${Math.random().toString(36).slice(2, 8)}`;
    const secret = ctl.controller.secretFor(name);
    const job = ctl.controller.submit({ steps: steps(secret) });
    const exit = await run(
      [TINI, "-s", "--", process.execPath, ENTRYPOINT, "-url", ctl.controller.url, secret, name],
      {},
    );
    expect(exit.code, exit.stderr).toBe(ExitCode.ok);
    const scan = procScanResult((await ctl.client.log(job.id)).toString("utf8"));
    expect(scan.secret).toBe(1);
    expect(scan.where).toEqual([expect.stringMatching(/^\/proc\/\d+\/cmdline \(tini\)$/)]);
    expect(exit.stderr).toMatch(/the agent's secret stays readable by steps in these \/proc files/);
  });

  it("runs a single command (the jenkins-agent form) with the variables it was given", async () => {
    const exit = await run(["bash", SCRIPT, "env"], { JENKINS_SECRET: "given-to-the-command" });
    expect(exit.code, exit.stderr).toBe(0);
    expect(exit.stdout).toMatch(/^JENKINS_SECRET=given-to-the-command$/m);
    expect(exit.stdout).not.toMatch(/AGENT_LAUNCH_FD/);
  });

  it("moves the variables the agent treats as its secret's (SECRET_ENV), no more, no fewer", () => {
    const script = readFileSync(SCRIPT, "utf8");
    const list = /^secret_variables=\(([^)]*)\)$/m.exec(script);
    expect(list, "images/entrypoint.sh: secret_variables=(...)").not.toBeNull();
    expect(list![1]!.split(/\s+/).sort()).toEqual([...SECRET_ENV].sort());
  });
});

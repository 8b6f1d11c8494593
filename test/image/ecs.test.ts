import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode } from "../../agent-core/index.ts";
import { startController, type TestController } from "../support/harness.ts";
import { expectSecretNowhere, PROC_SCAN_SCRIPT, procScanStep } from "../support/proc-scan.ts";
import { type Container, IMAGES, imageConfig, startContainer } from "./support/image.ts";

/**
 * The default image in ECS mode: the ENTRYPOINT with the command the amazon-ecs plugin appends
 * (`-url URL SECRET NAME`), as the image's non-root user, tini as PID 1, against the reference
 * controller on the host's loopback.
 */
let ctl: TestController;
const containers: Container[] = [];
beforeAll(async () => {
  ctl = await startController();
});
afterAll(async () => {
  for (const container of containers) await container.remove();
  await ctl.close();
});

describe("the default image, ECS mode", () => {
  it("is configured as documented: the entrypoint script (which starts tini), uid 1000, OCI labels", async () => {
    const config = await imageConfig(IMAGES.default);
    expect(config.Entrypoint).toEqual(["/usr/local/bin/ephemeral-agent"]);
    expect(config.User).toBe("1000:1000");
    expect(config.Labels).toMatchObject({
      "org.opencontainers.image.title": "ephemeral-build-agent",
      "io.ephemeral-agent.variant": "default",
    });
    expect(config.Labels?.["org.opencontainers.image.version"]).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("runs a real job end to end as uid 1000 and exits 0; tini is PID 1 and reaps a step's double-forked child", async () => {
    const name = "ecs-image-1";
    const job = ctl.controller.submit({
      steps: [
        {
          name: "init",
          run: 'test "$(cat /proc/1/comm)" = tini && test "$(id -u)" = 1000 && echo "pid1=tini uid=1000"',
        },
        // The subshell's parent exits at once: its child is re-parented to PID 1 and exits soon after.
        { name: "double fork", run: "sh -c '(sleep 0.2; exit 0) &'" },
        {
          name: "zombies",
          run: 'sleep 1; n=0; for s in /proc/[0-9]*/stat; do case "$(cut -d\' \' -f3 "$s" 2>/dev/null)" in Z) n=$((n+1));; esac; done; echo "zombies=$n"',
        },
        {
          name: "git",
          run: [
            "git init -q repo && cd repo",
            "git config user.email agent@example.com && git config user.name agent",
            "echo hello > file && git add file && git commit -qm first",
            "git log --oneline | wc -l",
          ].join("\n"),
        },
      ],
    });
    const container = await startContainer(IMAGES.default, {
      args: ["-url", ctl.controller.url, ctl.controller.secretFor(name), name],
      env: { AGENT_GRACE_MS: "1000", AGENT_CLOUDWATCH: "off" },
    });
    containers.push(container);
    const { code, stderr } = await container.exited;
    expect(code, stderr).toBe(ExitCode.ok);
    const record = await ctl.controller.waitForJob(job.id);
    expect(record.status).toBe("succeeded");
    expect(record.agent).toMatchObject({ name });
    const log = (await ctl.client.log(job.id)).toString("utf8");
    expect(log).toContain("pid1=tini uid=1000");
    expect(log).toContain("zombies=0");
    expect(log).toMatch(/^1$/m);
    // The agent's diagnostics are JSON lines; the secret never shows in them.
    expect(stderr).not.toContain(ctl.controller.secretFor(name));
    expect(stderr).not.toMatch(/running as PID 1 without an init/);
  });

  // The scan runs as a step: every process of the container it can read (tini as PID 1, the
  // agent, the step's own shells), and a canary process proving it reads environments and
  // arguments. The secret is the amazon-ecs plugin's positional SECRET, then JENKINS_SECRET.
  const SCAN = "/opt/probe/proc-secret-scan.sh";
  const scanFiles = { [SCAN]: { content: readFileSync(PROC_SCAN_SCRIPT), mode: 0o755 } };
  it.each([
    ["the amazon-ecs plugin's command (-url URL SECRET NAME)", "args"],
    ["JENKINS_SECRET (with JENKINS_URL, JENKINS_AGENT_NAME)", "env"],
  ] as const)(
    "keeps the secret given in %s out of every process's /proc environ and cmdline, tini's (PID 1) included",
    async (_form, how) => {
      const name = `ecs-image-scan-${how}`;
      const secret = ctl.controller.secretFor(name);
      const job = ctl.controller.submit({
        steps: [
          { run: procScanStep(SCAN, secret) },
          { run: 'echo "pid1=$(cat /proc/1/comm) launch-fd=${AGENT_LAUNCH_FD:-unset}"' },
        ],
      });
      const jenkinsEnv = {
        JENKINS_URL: ctl.controller.url,
        JENKINS_SECRET: secret,
        JENKINS_AGENT_NAME: name,
      };
      const container = await startContainer(IMAGES.default, {
        args: how === "args" ? ["-url", ctl.controller.url, secret, name] : [],
        env: { AGENT_CLOUDWATCH: "off", ...(how === "env" ? jenkinsEnv : {}) },
        files: scanFiles,
      });
      containers.push(container);
      const { code, stderr } = await container.exited;
      expect(code, stderr).toBe(ExitCode.ok);
      expect((await ctl.controller.waitForJob(job.id)).status).toBe("succeeded");
      const log = (await ctl.client.log(job.id)).toString("utf8");
      expectSecretNowhere(log, { pid1: true });
      expect(log).toContain("pid1=tini launch-fd=unset\n");
      expect(stderr).not.toMatch(/stays readable by steps/);
      expect(stderr).not.toContain(secret);
    },
  );

  it("stops as ECS stops a task: SIGTERM to tini reaches the agent, the job ends interrupted, exit 143 within grace + drain + 5 s", async () => {
    // A step that ignores SIGTERM, with a child that does too: SIGKILL after AGENT_GRACE_MS.
    const name = "ecs-image-stop";
    const job = ctl.controller.submit({
      // An interrupted attempt is retried by default (docs/controller.md, "Attempts"): without
      // retries the job ends with this attempt, whose record is what is checked.
      retry: { infrastructure: 0 },
      steps: [
        { run: "trap '' TERM; sh -c 'trap \"\" TERM; sleep 300' & echo started; wait" },
        { run: "echo never" },
      ],
    });
    const graceMs = 2_000;
    const drainMs = 500;
    const container = await startContainer(IMAGES.default, {
      args: ["-url", ctl.controller.url, ctl.controller.secretFor(name), name],
      env: { AGENT_GRACE_MS: String(graceMs), AGENT_DRAIN_MS: String(drainMs), AGENT_CLOUDWATCH: "off" },
    });
    containers.push(container);
    for await (const event of ctl.client.events(job.id)) {
      if (event.type === "output") break;
    }
    const stoppedAt = Date.now();
    expect(container.signal("SIGTERM")).toBe(true);
    const { code, stderr } = await container.exited;
    const tookMs = Date.now() - stoppedAt;
    expect(code, stderr).toBe(ExitCode.sigterm);
    // The entrypoint's own bound: grace + drain + 5 s (a task's stopTimeout must cover it).
    expect(tookMs).toBeLessThan(graceMs + drainMs + 5_000);
    const record = await ctl.controller.waitForJob(job.id);
    expect(record.attempts.map((a) => a.cause)).toEqual(["interrupted"]);
    expect(record.steps.map((s) => [s.status, s.reason, s.signal])).toEqual([
      ["failed", "interrupted", "SIGKILL"],
      ["skipped", undefined, undefined],
    ]);
    expect(stderr).toContain('"signal received: stopping the job"');
  });

  it("prints the launch forms with --help, and has no Java", async () => {
    const help = await startContainer(IMAGES.default, { args: ["--help"] });
    containers.push(help);
    const out = await help.exited;
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/-url/);
    const java = await startContainer(IMAGES.default, {
      command: ["/bin/sh", "-c", "command -v java || echo no-java"],
    });
    containers.push(java);
    expect((await java.exited).stdout.trim()).toBe("no-java");
  });
});

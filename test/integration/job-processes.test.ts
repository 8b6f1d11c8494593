import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ExitCode, runAgent } from "../../agent-core/index.ts";
import {
  findTrackedProcesses,
  stopTrackedProcesses,
  TRACKING_VARIABLE,
} from "../../agent-core/runner/job-processes.ts";
import {
  agentConfigFor,
  captureLogger,
  startController,
  type TestController,
  tempDir,
  until,
} from "../support/harness.ts";

let ctl: TestController;
let dir: ReturnType<typeof tempDir>;
beforeAll(async () => {
  ctl = await startController();
});
afterAll(async () => {
  await ctl.close();
});
beforeEach(() => {
  dir = tempDir("escape-");
});
afterEach(() => {
  dir.remove();
});

/** A process that exists and is not a zombie (a killed orphan waits for init to reap it). */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Pids the job's daemons wrote into `dir/pids/`, one file each. */
function daemonPids(): number[] {
  const pidDir = join(dir.path, "pids");
  if (!existsSync(pidDir)) return [];
  return readdirSync(pidDir).map((name) => Number(readFileSync(join(pidDir, name), "utf8").trim()));
}

const ESCAPES: [string, string][] = [
  ["setsid -f", `setsid -f sh -c 'echo $$ > "$PIDS/setsid"; exec sleep 300'`],
  ["nohup setsid", `nohup setsid sh -c 'echo $$ > "$PIDS/nohup"; exec sleep 300' > /dev/null 2>&1 &`],
  [
    "a detached Node child",
    `node -e 'const c = require("child_process").spawn("sh", ["-c", "echo $$ > \\"$PIDS/node\\"; exec sleep 300"], { detached: true, stdio: "ignore" }); c.unref()'`,
  ],
  [
    "a double fork into a new session (daemon(3))",
    `setsid sh -c '(echo $$ > /dev/null; sh -c "echo \\$\\$ > \\"$PIDS/double\\"; exec sleep 300" &) ; exit 0' < /dev/null > /dev/null 2>&1 &`,
  ],
  [
    "a daemon that ignores SIGTERM",
    `setsid -f sh -c 'trap "" TERM; echo $$ > "$PIDS/noterm"; while :; do sleep 1; done'`,
  ],
  [
    "a daemon that keeps forking",
    `setsid -f sh -c 'trap "" TERM; echo $$ > "$PIDS/forker"; while :; do sleep 0.02 & sleep 0.01; done'`,
  ],
];

describe("nothing of a job outlives it", () => {
  it.each(ESCAPES)(
    "a process that leaves the step's group by %s is stopped when the job ends",
    async (name, command) => {
      const pidDir = join(dir.path, "pids");
      const record = ctl.controller.submit({
        env: { PIDS: pidDir },
        steps: [{ run: `mkdir -p "$PIDS"\n${command}\nsleep 0.3` }],
      });
      const { logger, entries } = captureLogger();
      const outcome = await runAgent(agentConfigFor(ctl.controller, `esc-${record.id}`, { graceMs: 300 }), {
        logger,
      });
      expect(outcome.exitCode).toBe(ExitCode.ok);
      const pids = daemonPids();
      expect(pids.length, `${name}: the daemon wrote its pid`).toBe(1);
      // Stopped before the agent reported: nothing to wait for.
      expect(pids.filter(isRunning)).toEqual([]);
      expect(entries().some((e) => e.msg === "stopped processes the job left running")).toBe(true);
    },
  );

  it("a second warm job (same process, as on a warm Lambda) finds nothing of the first, and no daemon reads its secret", async () => {
    const loot = join(dir.path, "loot");
    const idFile = join(dir.path, "first-id");
    const first = ctl.controller.submit({
      env: { PIDS: join(dir.path, "pids"), LOOT: loot, ID_FILE: idFile },
      steps: [
        {
          run: [
            'mkdir -p "$PIDS"; echo "$AGENT_TRACKING_ID" > "$ID_FILE"',
            ...ESCAPES.map(([, command]) => command),
            // The attack: a daemon that reads every process's environment, looking for the next job's secret.
            `setsid -f sh -c 'echo $$ > "$PIDS/thief"; while :; do cat /proc/[0-9]*/environ 2>/dev/null | tr "\\0" "\\n" | grep "^STOLEN_" >> "$LOOT"; sleep 0.02; done'`,
            "sleep 0.3",
          ].join("\n"),
        },
      ],
    });
    const { logger } = captureLogger();
    const workDir = join(dir.path, "work");
    expect(
      (
        await runAgent(agentConfigFor(ctl.controller, `warm1-${first.id}`, { workDir, graceMs: 300 }), {
          logger,
        })
      ).exitCode,
    ).toBe(ExitCode.ok);
    expect(daemonPids()).toHaveLength(ESCAPES.length + 1);

    const second = ctl.controller.submit({
      env: { ID_FILE: idFile },
      secrets: { STOLEN_TOKEN: "tok-of-the-second-job-0123456789" },
      steps: [
        {
          run: [
            // Anything left running with the first job's marker?
            '{ grep -l "AGENT_TRACKING_ID=$(cat "$ID_FILE")" /proc/[0-9]*/environ 2>/dev/null || true; } | wc -l',
            "sleep 0.5",
          ].join("\n"),
        },
      ],
    });
    const outcome = await runAgent(agentConfigFor(ctl.controller, `warm2-${second.id}`, { workDir }), {
      logger,
    });
    expect(outcome.exitCode).toBe(ExitCode.ok);
    expect((await ctl.client.log(second.id)).toString().trim()).toBe("0");
    expect(daemonPids().filter(isRunning)).toEqual([]);
    expect(existsSync(loot) ? readFileSync(loot, "utf8") : "").toBe("");
  });
});

describe("stopTrackedProcesses", () => {
  function marked(value: string, script = "exec sleep 300") {
    const child = spawn("sh", ["-c", script], {
      detached: true,
      stdio: "ignore",
      env: { PATH: process.env.PATH, [TRACKING_VARIABLE]: value },
    });
    child.unref();
    return child.pid!;
  }

  it("finds only the processes carrying the job's value, never the agent itself", async () => {
    const mine = marked(`${process.pid}.aaaa`);
    const other = marked(`${process.pid}.bbbb`);
    await expect.poll(() => findTrackedProcesses({ id: `${process.pid}.aaaa` })).toEqual([mine]);
    expect(await stopTrackedProcesses({ id: `${process.pid}.aaaa` }, 200)).toEqual([mine]);
    await until(() => !isRunning(mine), 5_000, "the marked process to end");
    expect(isRunning(other)).toBe(true);
    await stopTrackedProcesses({ id: `${process.pid}.bbbb` }, 0);
    await until(() => !isRunning(other), 5_000, "the other process to end");
  });

  it("as orphaned: stops leftovers of an agent that is gone, not those of a live agent", async () => {
    // A pid that is certainly not alive: a process that has exited and been reaped.
    const gone = spawn("true");
    await new Promise((resolve) => gone.once("exit", resolve));
    const live = marked(`${process.pid}.dddd`);
    // Every agent's job start sweeps the orphans of the whole machine, this suite's other agents
    // and other suites' included: one may stop this orphan between the scan and the stop. Such a
    // round proves nothing about this call, so it goes again with a new orphan (a few at most).
    let stoppedHere = false;
    for (let round = 0; round < 5 && !stoppedHere; round++) {
      const orphan = marked(`${gone.pid}.cc${round}`);
      await expect.poll(() => findTrackedProcesses({ orphaned: true })).toContain(orphan);
      expect(await findTrackedProcesses({ orphaned: true })).not.toContain(live);
      stoppedHere = (await stopTrackedProcesses({ orphaned: true }, 0)).includes(orphan);
      await until(() => !isRunning(orphan), 5_000, "the orphan to end");
    }
    expect(stoppedHere, "this call stopped its orphan in one of 5 rounds").toBe(true);
    expect(isRunning(live)).toBe(true);
    await stopTrackedProcesses({ id: `${process.pid}.dddd` }, 0);
  });

  it("SIGKILLs after the grace a process that ignores SIGTERM, within grace plus the sweeps", async () => {
    const stubborn = marked(`${process.pid}.eeee`, "trap '' TERM; while :; do sleep 1; done");
    // The shell and its `sleep`, both marked: once the sleep runs, the trap is set.
    await expect
      .poll(async () => (await findTrackedProcesses({ id: `${process.pid}.eeee` })).length)
      .toBeGreaterThanOrEqual(2);
    expect(await findTrackedProcesses({ id: `${process.pid}.eeee` })).toContain(stubborn);
    const started = Date.now();
    await stopTrackedProcesses({ id: `${process.pid}.eeee` }, 300);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(Date.now() - started).toBeLessThan(3_000);
    await until(() => !isRunning(stubborn), 5_000, "the process to end");
    expect(await findTrackedProcesses({ id: `${process.pid}.eeee` })).toEqual([]);
  });
});

import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ExitCode, runAgent } from "../../agent-core/index.ts";
import { agentConfigFor, captureLogger, startController, type TestController } from "../support/harness.ts";

let ctl: TestController;
beforeEach(async () => {
  ctl = await startController({ provision: true });
});
afterEach(async () => {
  await ctl.close();
});

const TOKEN = "s3cr3t-t0ken/value+with=symbols";

/** Every command line on the machine (what `ps` shows). */
function allCommandLines(): string {
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .map((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
      } catch {
        return "";
      }
    })
    .join("\n");
}

describe("secret masking", () => {
  it("masks job secrets in output, even split across writes, base64- and URL-encoded, before any sink", async () => {
    const job = ctl.controller.submit({
      secrets: { TOKEN, SHORT: "abc" },
      steps: [
        {
          run: [
            'echo "plain: $TOKEN"',
            "printf 'split: %s' \"${TOKEN:0:7}\"; sleep 0.05; printf '%s\\n' \"${TOKEN:7}\"",
            'printf "b64: %s\\n" "$(printf "xy%s" "$TOKEN" | base64 -w0)"',
            "node -e 'console.log(\"url: \" + encodeURIComponent(process.env.TOKEN))'",
            'echo "short stays: $SHORT" >&2',
          ].join("\n"),
        },
      ],
    });
    const final = await ctl.controller.waitForJob(job.id);
    expect(final.status).toBe("succeeded");
    const log = (await ctl.client.log(job.id)).toString();
    expect(log).not.toContain(TOKEN);
    expect(log).not.toContain(encodeURIComponent(TOKEN));
    expect(log).not.toContain(Buffer.from(TOKEN).toString("base64").slice(4, -4));
    expect(log).toContain("plain: ***\n");
    expect(log).toContain("split: ***\n");
    expect(log).toContain("url: ***\n");
    expect(log).toMatch(/b64: \S{0,4}\*\*\*\S{0,4}\n/);
    // Values under 4 characters are refused as secrets rather than masking every "abc".
    expect(log).toContain("short stays: abc\n");
    const agentLog = readFileSync(`${ctl.dataDir}/agents/${final.agent!.name}.log`, "utf8");
    expect(agentLog).toMatch(/secret value refused for masking: too short/);
    expect(agentLog).not.toContain(TOKEN);
    // The controller stores no secret value either.
    expect(readFileSync(`${ctl.dataDir}/jobs/${job.id}/submission.json`, "utf8")).not.toContain(TOKEN);
  });

  it("masks the agent's own secret and keeps it out of every process's command line", async () => {
    const name = "masked-agent";
    const secret = ctl.controller.secretFor(name);
    const file = join(ctl.dataDir, "leak.txt");
    writeFileSync(file, `${secret}\n`);
    const job = ctl.controller.submit({ steps: [{ run: `cat ${file}; sleep 0.3; echo done` }] });
    const { logger, lines } = captureLogger();
    const running = runAgent(agentConfigFor(ctl.controller, name), { logger });
    await expect
      .poll(() => ctl.controller.getJob(job.id)?.logBytes ?? 0, { timeout: 15_000 })
      .toBeGreaterThan(0);
    expect(allCommandLines()).not.toContain(secret);
    expect((await running).exitCode).toBe(ExitCode.ok);
    expect((await ctl.client.log(job.id)).toString()).toBe("***\ndone\n");
    expect(lines.join("")).not.toContain(secret);
  });
});

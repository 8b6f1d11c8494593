import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runAgent } from "../../agent-core/index.ts";
import type { JobEvent, Metrics } from "../../controller/index.ts";
import { agentConfigFor, captureLogger, startController, type TestController } from "../support/harness.ts";

let ctl: TestController;
beforeAll(async () => {
  ctl = await startController();
});
afterAll(async () => {
  await ctl?.close();
});

async function runWithAgent(job: unknown, name: string) {
  const record = ctl.controller.submit(job);
  await runAgent(agentConfigFor(ctl.controller, name, { labels: ["linux"] }), {
    logger: captureLogger().logger,
  });
  return ctl.controller.waitForJob(record.id);
}

describe("receipt times", () => {
  it("stamps every output event with the controller's receipt time; the raw log stays byte for byte", async () => {
    // The step goes on only once the test saw its first line arrive and waited 400 ms: the gap is
    // in the receipt times however loaded the machine (a sleep in the step could be eaten by a
    // late first frame).
    const gate = join(tmpdir(), `times-gate-${process.pid}-${Date.now()}`);
    const submitted = ctl.controller.submit({
      labels: ["linux"],
      steps: [
        {
          run: `printf 'one\\n'; while [ ! -e '${gate}' ]; do sleep 0.01; done; printf 'two é\\n' >&2; printf 'three'`,
        },
      ],
    });
    const running = runAgent(agentConfigFor(ctl.controller, "times-agent", { labels: ["linux"] }), {
      logger: captureLogger().logger,
    });
    await expect
      .poll(async () => (await ctl.client.log(submitted.id)).toString(), { timeout: 30_000 })
      .toBe("one\n");
    await new Promise((resolve) => setTimeout(resolve, 400));
    writeFileSync(gate, "");
    await running;
    rmSync(gate, { force: true });
    const record = await ctl.controller.waitForJob(submitted.id);
    expect(record.status).toBe("succeeded");
    const events: JobEvent[] = [];
    for await (const event of ctl.client.events(record.id, false)) events.push(event);
    const outputs = events.filter((e): e is Extract<JobEvent, { type: "output" }> => e.type === "output");
    expect(outputs.length).toBeGreaterThanOrEqual(3);
    const times = outputs.map((e) => Date.parse(e.at!));
    for (const [i, time] of times.entries()) {
      expect(outputs[i]!.at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(time).toBeGreaterThanOrEqual(Date.parse(record.submittedAt));
      expect(time).toBeLessThanOrEqual(Date.parse(record.endedAt!));
      if (i > 0) expect(time).toBeGreaterThanOrEqual(times[i - 1]!);
    }
    // The wait between the first line and the rest shows in the receipt times.
    expect(times[times.length - 1]! - times[0]!).toBeGreaterThanOrEqual(400);
    expect(record.firstOutputAt).toBe(outputs[0]!.at);
    const log = await ctl.client.log(record.id);
    expect(log.equals(Buffer.from("one\ntwo é\nthree"))).toBe(true);
    expect(outputs.map((e) => e.text).join("")).toBe(log.toString("utf8"));
  });
});

describe("GET /api/v1/metrics", () => {
  it("sums up queue and start latency per label and platform, as JSON and as Prometheus text", async () => {
    const record = await runWithAgent({ labels: ["linux"], steps: [{ run: "echo hi" }] }, "metrics-agent");
    const metrics = JSON.parse(await ctl.client.text("api/v1/metrics")) as Metrics;
    const group = metrics.groups.find((g) => g.label === "linux" && g.platform === record.agent!.runtime)!;
    expect(group.jobs).toBeGreaterThanOrEqual(1);
    expect(group.queueMs!.count).toBe(group.jobs);
    expect(group.queueMs!.p50).toBeGreaterThanOrEqual(0);
    expect(group.startMs!.p95).toBeGreaterThanOrEqual(group.startMs!.p50);
    expect(metrics.windowMs).toBe(3_600_000);

    const text = await ctl.client.text("api/v1/metrics?format=prometheus&window=15m");
    expect(text).toContain(
      "# HELP controller_job_queue_seconds Time from a job's submission to an agent taking it. Jobs submitted in the last 900 s.",
    );
    expect(text).toMatch(
      new RegExp(
        `controller_job_start_seconds_count\\{label="linux",platform="${group.platform}"\\} \\d+\\n`,
      ),
    );
    const scraped = await fetch(new URL("api/v1/metrics", ctl.controller.url), {
      headers: { Accept: "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3" },
    });
    expect(scraped.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  });

  it("refuses a window or format it does not know, naming the value", async () => {
    for (const query of ["window=soon", "window=0s", "format=xml"]) {
      const res = await fetch(new URL(`api/v1/metrics?${query}`, ctl.controller.url));
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("CONTROLLER_ERR_BAD_REQUEST");
    }
  });
});

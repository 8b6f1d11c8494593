import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT, tempDir } from "../support/harness.ts";

const run = promisify(execFile);

/** Every row `bench/run.ts` reports; each must be present, measured or n/a, in every run. */
const FIGURE_IDS = [
  "start-to-connected",
  "start-to-connected-auto",
  "handler-cold-import",
  "handler-cloudwatch-sdk",
  "per-step-overhead",
  "log-throughput-lines",
  "log-cpu-lines",
  "log-throughput-chunks",
  "log-cpu-chunks",
  "log-latency-p50",
  "log-latency-p99",
  "memory-idle",
  "memory-flood",
  "memory-stalled",
  "disk-watch-cost",
  "bundle-lambda-start-bytes",
  "bundle-lambda-start-gzip",
  "bundle-lambda-total-bytes",
  "bundle-lambda-total-gzip",
  "bundle-entrypoint-start-bytes",
  "bundle-entrypoint-start-gzip",
  "bundle-entrypoint-total-bytes",
  "bundle-entrypoint-total-gzip",
  "bundle-controller-total-bytes",
  "bundle-controller-total-gzip",
  "shutdown-sigterm",
  "controller-dispatch-p50",
  "controller-dispatch-p99",
  "controller-stored-rate",
  "controller-cpu",
  "controller-rss",
  "controller-limit",
  "transfer-throughput",
  "transfer-peak-rss",
  "image-default-compressed",
  "image-default-compressed-9",
  "image-default-uncompressed",
  "image-jenkins-compressed",
  "image-jenkins-compressed-9",
  "image-jenkins-uncompressed",
  "image-build-default",
  "image-build-jenkins",
  "jenkins-first-request",
  "jenkins-warm-lambda-first-request",
  "webview-log-shown",
  "webview-log-longest-task",
  "osls-package",
];

interface TargetShape {
  text: string;
  met: boolean;
  actual: number | null;
}

const SUMMARY_KEYS = ["n", "median", "p95", "p99", "min", "max", "mean"];

function expectSummary(value: unknown, where: string): void {
  expect(value, where).toBeTypeOf("object");
  for (const key of SUMMARY_KEYS) {
    expect(Number.isFinite((value as Record<string, unknown>)[key]), `${where}.${key} is a number`).toBe(
      true,
    );
  }
}

/**
 * Runs `bench/run.ts --smoke`: one small run of every measurement. A run killed at the timeout
 * says so (execFile alone reports only "Command failed"), with the progress it had made.
 */
async function runBench(json: string, timeoutMs: number): Promise<string> {
  try {
    const { stdout } = await run(
      process.execPath,
      ["--import", "tsx", "bench/run.ts", "--smoke", "--json", json],
      { cwd: ROOT, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
    );
    return stdout;
  } catch (error) {
    const failed = error as { killed?: boolean; signal?: string; code?: number; stderr?: string };
    const how = failed.killed
      ? `was killed (${failed.signal}) at the test's ${timeoutMs} ms timeout`
      : `exited with ${failed.code ?? failed.signal}`;
    throw new Error(`bench/run.ts --smoke ${how}; its progress:\n${failed.stderr ?? ""}`, { cause: error });
  }
}

// The harness is judged on its shape here, never on speed: speed is for `npm run bench`.
describe("bench/run.ts --smoke", () => {
  const out = tempDir("bench-test-");
  afterAll(() => out.remove());

  it("writes every figure, measured or n/a, with the machine it ran on", { timeout: 240_000 }, async () => {
    const json = join(out.path, "results.json");
    const stdout = await runBench(json, 230_000);
    expect(stdout).toContain("| measurement");

    const results = JSON.parse(readFileSync(json, "utf8")) as Record<string, unknown>;
    expect(results.schema).toBe(1);
    expect(results.mode).toBe("smoke");
    expect(Number.isNaN(Date.parse(String(results.date)))).toBe(false);
    const revision = results.revision as Record<string, unknown>;
    expect(revision.commit === null || typeof revision.commit === "string").toBe(true);
    const machine = results.machine as Record<string, unknown>;
    expect(machine.cpuModel).toBeTypeOf("string");
    expect(machine.cores).toBeGreaterThan(0);
    expect(machine.memoryBytes).toBeGreaterThan(0);
    expect(machine.node).toBe(process.version);
    expect(machine.os).toBeTypeOf("string");

    const figures = results.figures as Record<string, unknown>[];
    expect(figures.map((f) => f.id).sort()).toEqual([...FIGURE_IDS].sort());
    for (const figure of figures) {
      const where = String(figure.id);
      expect(figure.error, `${where} failed`).toBeUndefined();
      if (figure.value === null) {
        expect(figure.na, `${where} says why it is n/a`).toMatch(/^n\/a \(.+\)$/);
        continue;
      }
      expectSummary(figure.value, `${where}.value`);
      if (figure.baseline !== null) {
        expectSummary((figure.baseline as Record<string, unknown>).value, `${where}.baseline.value`);
        expect(Number.isFinite(figure.ratio), `${where}.ratio is a number`).toBe(true);
      }
      if (figure.target !== null)
        expect((figure.target as Record<string, unknown>).met).toBeTypeOf("boolean");
    }

    // Every target is printed as met or MISSED, and drawn in the chart written beside the results.
    const targeted = figures.filter((f) => f.target !== null) as { title: string; target: TargetShape }[];
    expect(targeted.map((f) => f.title)).toEqual(
      expect.arrayContaining([
        "start to connected (entrypoint)",
        "Lambda handler cold import",
        "log throughput, 120-byte lines",
        "log throughput, 64 KiB writes",
        "agent CPU per GB, 64 KiB writes",
      ]),
    );
    const printed = stdout.slice(stdout.indexOf("Targets:"));
    const svg = readFileSync(join(out.path, "results.svg"), "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    for (const { title, target } of targeted) {
      expect(printed).toContain(`- ${title}: `);
      expect(printed).toContain(`target ${target.text}: ${target.met ? "met" : "MISSED"}`);
      const escaped = title.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
      if (target.actual !== null) expect(svg).toContain(`>${escaped}</text>`);
    }
  });
});

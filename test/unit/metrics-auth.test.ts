import { readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isLoopbackHost } from "../../agent-core/index.ts";
import {
  authorize,
  checkListenSecurity,
  computeMetrics,
  type JobRecord,
  prometheusText,
  SESSION_COOKIE,
  sessionValue,
  summarize,
} from "../../controller/index.ts";

const T0 = Date.parse("2026-01-01T12:00:00.000Z");
const iso = (offsetMs: number) => new Date(T0 + offsetMs).toISOString();

function job(
  id: string,
  labels: string[],
  runtime: string | undefined,
  times: { submitted: number; assigned?: number; firstOutput?: number },
  status: JobRecord["status"] = "succeeded",
): JobRecord {
  return {
    id,
    labels,
    status,
    retry: { infrastructure: 0 },
    attempts: [],
    logBytes: 0,
    steps: [],
    submittedAt: iso(times.submitted),
    ...(times.assigned !== undefined ? { assignedAt: iso(times.assigned) } : {}),
    ...(times.firstOutput !== undefined ? { firstOutputAt: iso(times.firstOutput) } : {}),
    ...(runtime ? { agent: { name: `${id}-agent`, runtime, version: "1", labels } } : {}),
  };
}

describe("metrics: latency percentiles", () => {
  it("uses the nearest rank: p50 and p95 are values that occurred", () => {
    const values = Array.from({ length: 20 }, (_, i) => (i + 1) * 100);
    expect(summarize(values)).toEqual({ count: 20, p50: 1000, p95: 1900, max: 2000, sum: 21000 });
    expect(summarize([7])).toEqual({ count: 1, p50: 7, p95: 7, max: 7, sum: 7 });
    expect(summarize([])).toBeNull();
  });

  it("groups recent jobs per label and platform, a job with two labels in both", () => {
    const now = T0 + 60_000;
    const metrics = computeMetrics(
      [
        job("a", ["linux"], "lambda", { submitted: 0, assigned: 1000, firstOutput: 1500 }),
        job("b", ["linux", "big"], "ecs", { submitted: 0, assigned: 30_000, firstOutput: 31_000 }),
        job("c", [], "local", { submitted: 0, assigned: 200 }),
        job("d", ["linux"], undefined, { submitted: 10_000 }, "queued"),
        job("old", ["linux"], "lambda", { submitted: -7_200_000, assigned: -7_100_000 }),
      ],
      ["idle", "busy", "busy"],
      now,
    );
    expect(metrics.jobs).toBe(4);
    expect(metrics.jobsByStatus).toEqual({ succeeded: 4, queued: 1 });
    expect(metrics.agentsByState).toEqual({ idle: 1, busy: 2 });
    expect(metrics.oldestQueuedMs).toBe(50_000);
    expect(metrics.groups.map((g) => [g.label, g.platform, g.jobs, g.queueMs?.p50, g.startMs?.p50])).toEqual([
      ["(none)", "local", 1, 200, undefined],
      ["big", "ecs", 1, 30_000, 31_000],
      ["linux", "(none)", 1, undefined, undefined],
      ["linux", "ecs", 1, 30_000, 31_000],
      ["linux", "lambda", 1, 1000, 1500],
    ]);
  });

  it("leaves out times that mix up (an end before a start)", () => {
    const metrics = computeMetrics(
      [job("a", ["x"], "local", { submitted: 5000, assigned: 1000 })],
      [],
      T0 + 10_000,
    );
    expect(metrics.groups[0]!.queueMs).toBeNull();
  });
});

describe("metrics: Prometheus text", () => {
  it("writes summaries in seconds with quantiles, _sum and _count, and gauges", () => {
    const text = prometheusText(
      computeMetrics(
        [
          job("a", ["linux"], "lambda", { submitted: 0, assigned: 1000, firstOutput: 1500 }),
          job("b", ["linux"], "lambda", { submitted: 0, assigned: 3000, firstOutput: 3500 }),
        ],
        ["idle"],
        T0 + 60_000,
      ),
    );
    expect(text).toContain(
      [
        "# TYPE controller_job_queue_seconds summary",
        'controller_job_queue_seconds{label="linux",platform="lambda",quantile="0.5"} 1',
        'controller_job_queue_seconds{label="linux",platform="lambda",quantile="0.95"} 3',
        'controller_job_queue_seconds_sum{label="linux",platform="lambda"} 4',
        'controller_job_queue_seconds_count{label="linux",platform="lambda"} 2',
      ].join("\n"),
    );
    expect(text).toContain(
      'controller_job_start_seconds{label="linux",platform="lambda",quantile="0.95"} 3.5',
    );
    expect(text).toContain('controller_jobs{status="succeeded"} 2\n');
    expect(text).toContain('controller_agents{state="idle"} 1\n');
    expect(text).toContain("controller_queue_oldest_seconds 0\n");
    expect(text.endsWith("\n")).toBe(true);
  });

  it("escapes label values", () => {
    const text = prometheusText(
      computeMetrics([job("a", ['we"ird\\label\nx'], "local", { submitted: 0, assigned: 5 })], [], T0 + 1000),
    );
    expect(text).toContain('label="we\\"ird\\\\label\\nx"');
  });
});

describe("listening rules", () => {
  it.each([
    ["127.0.0.1", true],
    ["127.8.9.10", true],
    ["::1", true],
    ["[::1]", true],
    ["localhost", true],
    ["::ffff:127.0.0.1", true],
    ["0.0.0.0", false],
    ["::", false],
    ["10.0.0.5", false],
    ["ci.example.com", false],
  ])("%s is loopback: %s", (host, loopback) => {
    expect(isLoopbackHost(host)).toBe(loopback);
  });

  it("needs a token beyond loopback unless insecure, and a token of 16 characters or more", () => {
    expect(() => checkListenSecurity("0.0.0.0", undefined, false)).toThrow(
      /refusing to listen on 0\.0\.0\.0/,
    );
    expect(() => checkListenSecurity("0.0.0.0", undefined, true)).not.toThrow();
    expect(() => checkListenSecurity("0.0.0.0", "x".repeat(16), false)).not.toThrow();
    expect(() => checkListenSecurity("127.0.0.1", undefined, false)).not.toThrow();
    expect(() => checkListenSecurity("127.0.0.1", "x".repeat(15), false)).toThrow(
      "Expected the API token to have at least 16 characters, got 15",
    );
  });
});

describe("authorize", () => {
  const auth = { token: "t".repeat(20), secureCookie: false };
  const req = (headers: Record<string, string>, method = "GET") =>
    ({ headers: { host: "ctl:8080", ...headers }, method }) as unknown as IncomingMessage;
  const code = (r: IncomingMessage) => {
    try {
      authorize(auth, r);
      return "ok";
    } catch (error) {
      return (error as { code: string }).code;
    }
  };
  const cookie = `${SESSION_COOKIE}=${sessionValue(auth.token)}`;

  it("takes the bearer token and the session cookie, nothing else", () => {
    expect(code(req({ authorization: `Bearer ${auth.token}` }))).toBe("ok");
    expect(code(req({ authorization: `bearer  ${auth.token} ` }))).toBe("ok");
    expect(code(req({ cookie: `other=1; ${cookie}` }))).toBe("ok");
    expect(code(req({}))).toBe("CONTROLLER_ERR_UNAUTHORIZED");
    expect(code(req({ authorization: `Bearer ${auth.token}x` }))).toBe("CONTROLLER_ERR_UNAUTHORIZED");
    expect(code(req({ authorization: `Basic ${auth.token}` }))).toBe("CONTROLLER_ERR_UNAUTHORIZED");
    expect(code(req({ cookie: `${SESSION_COOKIE}=${auth.token}` }))).toBe("CONTROLLER_ERR_UNAUTHORIZED");
    // A wrong bearer token is not rescued by a good cookie.
    expect(code(req({ authorization: "Bearer nope", cookie }))).toBe("CONTROLLER_ERR_UNAUTHORIZED");
  });

  it("refuses a change sent with the cookie from another origin", () => {
    expect(code(req({ cookie, origin: "http://ctl:8080" }, "POST"))).toBe("ok");
    expect(code(req({ cookie }, "POST"))).toBe("ok");
    expect(code(req({ cookie, origin: "https://evil.example" }, "POST"))).toBe("CONTROLLER_ERR_FORBIDDEN");
    expect(code(req({ cookie, origin: "null" }, "POST"))).toBe("CONTROLLER_ERR_FORBIDDEN");
    expect(code(req({ cookie, origin: "https://evil.example" }, "GET"))).toBe("ok");
  });

  it("derives the session from the token: another token, another session", () => {
    expect(sessionValue("a".repeat(16))).not.toBe(sessionValue("b".repeat(16)));
    expect(sessionValue("a".repeat(16))).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe("README", () => {
  it("lists every controller error code", () => {
    const root = join(import.meta.dirname, "../..");
    const codes = [
      ...readFileSync(join(root, "controller/errors.ts"), "utf8").matchAll(/"(CONTROLLER_ERR_[A-Z_]+)"/g),
    ].map((m) => m[1]!);
    const readme = readFileSync(join(root, "README.md"), "utf8");
    expect(codes.length).toBeGreaterThan(8);
    expect(codes.filter((code) => !readme.includes(`| \`${code}\``))).toEqual([]);
  });
});

import { readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isLoopbackHost } from "../../agent-core/index.ts";
import {
  apiAccess,
  authorize,
  checkListenSecurity,
  checkRequestSource,
  clientKey,
  computeMetrics,
  DEFAULT_TOKEN_GUESS_LIMIT,
  type JobRecord,
  prometheusText,
  SESSION_COOKIE,
  sessionValue,
  summarize,
  TokenGuesses,
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
    // The same address as URL parsers write it (new URL("ws://[::ffff:127.0.0.1]/").hostname).
    ["[::ffff:7f00:1]", true],
    ["::ffff:a00:5", false],
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

  it("derives the session from the token: another token, another session", () => {
    expect(sessionValue("a".repeat(16))).not.toBe(sessionValue("b".repeat(16)));
    expect(sessionValue("a".repeat(16))).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe("requests a page of another site could make a browser send", () => {
  const req = (headers: Record<string, string>, method = "POST") =>
    ({ headers, method }) as unknown as IncomingMessage;
  const verdict = (access: ReturnType<typeof apiAccess>, r: IncomingMessage) => {
    try {
      checkRequestSource(access, r);
      return "ok";
    } catch (error) {
      return (error as { code: string }).code;
    }
  };
  const loopback = apiAccess({ host: "127.0.0.1" });
  const onHost = (host: string, more: Record<string, string> = {}, method = "GET") =>
    verdict(loopback, req({ host, ...more }, method));

  it("refuses a change whose Origin is not the controller's, with or without a token", () => {
    const auth = { token: "t".repeat(20), secureCookie: false };
    for (const access of [loopback, apiAccess({ host: "0.0.0.0", auth })]) {
      const host = "127.0.0.1:8080";
      expect(verdict(access, req({ host, origin: "http://127.0.0.1:8080" }))).toBe("ok");
      // The CLI and curl send no Origin.
      expect(verdict(access, req({ host }))).toBe("ok");
      for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
        expect(verdict(access, req({ host, origin: "https://evil.example" }, method))).toBe(
          "CONTROLLER_ERR_FORBIDDEN",
        );
      }
      // Same address, another port: another origin (and "same-site" to the browser).
      expect(verdict(access, req({ host, origin: "http://127.0.0.1:3000" }))).toBe(
        "CONTROLLER_ERR_FORBIDDEN",
      );
      expect(verdict(access, req({ host, origin: "https://127.0.0.1:8080" }))).toBe("ok");
      // Sandboxed frames, file: pages and some redirects send "null".
      expect(verdict(access, req({ host, origin: "null" }))).toBe("CONTROLLER_ERR_FORBIDDEN");
      expect(verdict(access, req({ host, origin: "not a url" }))).toBe("CONTROLLER_ERR_FORBIDDEN");
      for (const site of ["cross-site", "same-site"])
        expect(verdict(access, req({ host, "sec-fetch-site": site }))).toBe("CONTROLLER_ERR_FORBIDDEN");
      for (const site of ["same-origin", "none"])
        expect(verdict(access, req({ host, "sec-fetch-site": site }))).toBe("ok");
      // Reading is not a change: the browser keeps the answer from the other page.
      for (const method of ["GET", "HEAD", "OPTIONS"])
        expect(verdict(access, req({ host, origin: "https://evil.example" }, method))).toBe("ok");
    }
  });

  it("takes the configured URL's origin as the controller's own (a proxy that rewrites Host)", () => {
    const access = apiAccess({ host: "0.0.0.0", publicUrl: "https://ci.example.com/" });
    const host = "10.0.0.5:8080";
    expect(verdict(access, req({ host, origin: "https://ci.example.com" }))).toBe("ok");
    expect(verdict(access, req({ host, origin: "http://ci.example.com" }))).toBe("CONTROLLER_ERR_FORBIDDEN");
    expect(verdict(access, req({ host, origin: "https://ci.example.com.evil.example" }))).toBe(
      "CONTROLLER_ERR_FORBIDDEN",
    );
    const ws = apiAccess({ host: "0.0.0.0", publicUrl: "wss://ci.example.com:8443" });
    expect(verdict(ws, req({ host, origin: "https://ci.example.com:8443" }))).toBe("ok");
  });

  it("on loopback, answers only to loopback names and the configured ones (DNS rebinding)", () => {
    for (const host of [
      "localhost",
      "LOCALHOST:8080",
      "127.0.0.1:8080",
      "127.1.2.3",
      "[::1]:8080",
      "[::ffff:127.0.0.1]:8080",
      "app.localhost:8080",
    ])
      expect(onHost(host), host).toBe("ok");
    for (const host of [
      "rebound.attacker.test:8080",
      "localhost.attacker.test",
      "127.0.0.1.nip.io:8080",
      "0.0.0.0:8080",
      "192.168.1.10:8080",
      "[::ffff:192.168.1.10]:8080",
      "",
    ])
      expect(onHost(host), host).toBe("CONTROLLER_ERR_FORBIDDEN");
    // Reading is refused too: the rebound page shares the controller's origin.
    expect(onHost("rebound.attacker.test:8080", {}, "GET")).toBe("CONTROLLER_ERR_FORBIDDEN");
    const configured = apiAccess({
      host: "localhost",
      publicUrl: "https://ci.example.com/",
      allowedHosts: ["Proxy.Internal", "[fd00::1]"],
    });
    for (const host of [
      "ci.example.com",
      "proxy.internal:80",
      "PROXY.internal",
      "[fd00::1]:8080",
      "localhost",
    ])
      expect(verdict(configured, req({ host }, "GET")), host).toBe("ok");
    expect(verdict(configured, req({ host: "other.example" }, "GET"))).toBe("CONTROLLER_ERR_FORBIDDEN");
    // Beyond loopback the controller answers to any name: its token guards it.
    expect(verdict(apiAccess({ host: "0.0.0.0" }), req({ host: "anything.example" }, "GET"))).toBe("ok");
  });
});

describe("wrong API tokens per client", () => {
  const from = (remoteAddress: string) =>
    ({ socket: { remoteAddress }, headers: {} }) as unknown as IncomingMessage;
  const waits = async (guesses: TokenGuesses, req: IncomingMessage) => {
    try {
      await guesses.check(req);
      return false;
    } catch (error) {
      expect(error).toMatchObject({ status: 429, code: "CONTROLLER_ERR_RATE_LIMITED" });
      expect(Number((error as { headers: Record<string, string> }).headers["Retry-After"])).toBeGreaterThan(
        0,
      );
      return true;
    }
  };

  it("lets a client send 10 wrong tokens, then makes it wait; other clients go on", async () => {
    expect(DEFAULT_TOKEN_GUESS_LIMIT).toEqual({ failures: 10, windowMs: 300_000 });
    const guesses = new TokenGuesses();
    const guesser = from("203.0.113.7");
    for (let i = 0; i < 9; i++) await guesses.failed(guesser);
    expect(await waits(guesses, guesser)).toBe(false);
    await guesses.failed(guesser);
    expect(await waits(guesses, guesser)).toBe(true);
    expect(await waits(guesses, from("203.0.113.8"))).toBe(false);
  });

  it("counts an IPv6 client per /64, an IPv4 one (mapped or not) per address", async () => {
    expect(clientKey(from("2001:db8:1:2:aaaa::1"))).toBe("2001:db8:1:2::/64");
    expect(clientKey(from("2001:db8:1:2:bbbb:cccc:dddd:eeee"))).toBe("2001:db8:1:2::/64");
    expect(clientKey(from("2001:db8::1"))).toBe("2001:db8:0:0::/64");
    expect(clientKey(from("2001:DB8:0:0:0:0:0:2"))).toBe("2001:db8:0:0::/64");
    expect(clientKey(from("fe80::1%eth0"))).toBe("fe80:0:0:0::/64");
    expect(clientKey(from("::1"))).toBe("0:0:0:0::/64");
    expect(clientKey(from("::ffff:203.0.113.7"))).not.toBe(clientKey(from("::ffff:203.0.113.8")));
    expect(clientKey(from("203.0.113.7"))).toBe("203.0.113.7");
    const guesses = new TokenGuesses({ failures: 2, windowMs: 60_000 });
    await guesses.failed(from("2001:db8:1:2::1"));
    await guesses.failed(from("2001:db8:1:2::ffff"));
    expect(await waits(guesses, from("2001:db8:1:2:9::9"))).toBe(true);
    expect(await waits(guesses, from("2001:db8:1:3::1"))).toBe(false);
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

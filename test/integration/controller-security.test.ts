import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CLI_EXIT,
  Controller,
  ControllerApiError,
  ControllerClient,
  defaultWebDir,
  webViewRoutes,
} from "../../controller/index.ts";
import { startServe } from "../support/controller-process.ts";
import {
  ROOT,
  runNode,
  spawnEntrypoint,
  startController,
  type TestController,
  tempDir,
} from "../support/harness.ts";
import { makeTestPki, type TestPki } from "../support/tls.ts";

const TOKEN = "tok-3f9a1c7e5b2d4a6f8e0c";
const SECRET = "s3cr3t-value-9f8e7d";

/** Every file under `dir`, read as text. */
function allFiles(dir: string): { path: string; text: string }[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .map((name) => join(dir, name))
    .filter((path) => statSync(path).isFile())
    .map((path) => ({ path, text: readFileSync(path, "latin1") }));
}

function request(url: string, init: RequestInit = {}) {
  return fetch(url, { redirect: "manual", ...init });
}

describe("API token", () => {
  let ctl: TestController;
  let api: ControllerClient;
  beforeAll(async () => {
    ctl = await startController({
      provision: true,
      // These tests send wrong tokens on purpose: more than the default limit allows.
      overrides: {
        apiToken: TOKEN,
        routes: webViewRoutes(defaultWebDir()),
        tokenGuessLimit: { failures: 1000, windowMs: 60_000 },
      },
    });
    api = new ControllerClient(ctl.controller.url, { token: TOKEN });
  });
  afterAll(async () => {
    await ctl?.close();
  });

  it("refuses requests without the token or with a wrong one (401, WWW-Authenticate), also to unknown paths", async () => {
    const base = ctl.controller.url;
    const attempts: Record<string, string>[] = [
      {},
      { Authorization: "Bearer wrong-token-0000000000" },
      { Authorization: "Basic eDp5" },
    ];
    for (const headers of attempts) {
      for (const path of ["api/v1/jobs", "api/v1/agents", "api/v1/metrics", "api/v1/nowhere"]) {
        const res = await request(new URL(path, base).href, { headers });
        expect({ path, headers, status: res.status }).toEqual({ path, headers, status: 401 });
        expect(res.headers.get("www-authenticate")).toBe('Bearer realm="controller"');
        const body = (await res.json()) as { error: { code: string; message: string } };
        expect(body.error.code).toBe("CONTROLLER_ERR_UNAUTHORIZED");
        expect(body.error.message).not.toContain(TOKEN);
      }
    }
    const post = await request(new URL("api/v1/jobs", base).href, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ steps: [{ run: "echo should not run" }] }),
    });
    expect(post.status).toBe(401);
    expect(ctl.controller.listJobs()).toEqual([]);
  });

  it("answers with the token; the health check and the web view's pages need none", async () => {
    expect((await api.text("api/v1/jobs")).startsWith("{")).toBe(true);
    for (const path of ["healthz", "", "agents", "jobs/x", "assets/app.js"]) {
      const res = await request(new URL(path, ctl.controller.url).href);
      expect({ path, status: res.status }).toEqual({ path, status: 200 });
    }
  });

  it("signs the web view in with a cookie that is not the token, and refuses cross-origin changes with it", async () => {
    const base = ctl.controller.url;
    const wrong = await request(new URL("login", base).href, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: "token=wrong-token-0000000000",
    });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("set-cookie")).toBeNull();
    const login = await request(new URL("login", base).href, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: `token=${TOKEN}`,
    });
    expect(login.status).toBe(204);
    const cookie = login.headers.get("set-cookie")!;
    expect(cookie).toMatch(
      /^controller_session=[0-9a-f]{64}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/,
    );
    expect(cookie).not.toContain(TOKEN);
    const session = cookie.split(";")[0]!;
    expect((await request(new URL("api/v1/jobs", base).href, { headers: { Cookie: session } })).status).toBe(
      200,
    );
    expect(
      (await request(new URL("api/v1/jobs", base).href, { headers: { Cookie: "controller_session=00" } }))
        .status,
    ).toBe(401);

    const job = await api.submit({ steps: [{ run: "echo queued" }], labels: ["nobody-has-this"] });
    const crossSite = await request(new URL(`api/v1/jobs/${job.id}/cancel`, base).href, {
      method: "POST",
      headers: { Cookie: session, Origin: "https://evil.example" },
    });
    expect(crossSite.status).toBe(403);
    expect(((await crossSite.json()) as { error: { code: string } }).error.code).toBe(
      "CONTROLLER_ERR_FORBIDDEN",
    );
    expect((await api.get(job.id)).status).toBe("queued");
    const sameSite = await request(new URL(`api/v1/jobs/${job.id}/cancel`, base).href, {
      method: "POST",
      headers: { Cookie: session, Origin: new URL(base).origin },
    });
    expect(sameSite.status).toBe(202);
    expect((await api.get(job.id)).status).toBe("cancelled");
  });

  it("never shows a job's secrets through the API, and never writes the token anywhere", async () => {
    const job = await api.submit({
      name: "with-secret",
      secrets: { API_KEY: SECRET },
      steps: [{ run: 'echo "key=$API_KEY"; echo "$API_KEY" | base64' }],
    });
    const record = await ctl.controller.waitForJob(job.id);
    expect(record.status).toBe("succeeded");
    const log = (await api.log(job.id)).toString();
    expect(log).toContain("key=***");
    const answers = [
      JSON.stringify(job),
      JSON.stringify(await api.get(job.id)),
      await api.text("api/v1/jobs"),
      await api.text(`api/v1/jobs/${job.id}/events`),
      log,
      await api.text("api/v1/metrics"),
    ];
    for (const answer of answers) {
      expect(answer).not.toContain(SECRET);
      expect(answer).not.toContain(Buffer.from(SECRET).toString("base64").slice(0, 16));
    }
    // Nothing the controller wrote (records, logs, submissions, agents' diagnostics) holds the
    // token or a secret; nor do its own diagnostics.
    for (const { path, text } of allFiles(ctl.dataDir)) {
      expect({ path, token: text.includes(TOKEN), secret: text.includes(SECRET) }).toEqual({
        path,
        token: false,
        secret: false,
      });
    }
    expect(ctl.log.lines.join("")).not.toContain(TOKEN);
    expect(ctl.log.lines.join("")).not.toContain(SECRET);
  });

  it("runs a job again with its secrets (kept in memory only), and refuses to retry one still running", async () => {
    const job = await api.submit({
      name: "retry-me",
      secrets: { API_KEY: SECRET },
      steps: [{ run: `test "$API_KEY" = "${SECRET}" && echo same-secret; exit 4` }],
    });
    const first = await ctl.controller.waitForJob(job.id);
    expect(first.status).toBe("failed");
    const again = await api.retry(job.id);
    expect(again).toMatchObject({ retryOf: job.id, status: "queued", name: "retry-me" });
    const second = await ctl.controller.waitForJob(again.id);
    expect(second.steps[0]).toMatchObject({ exitCode: 4 });
    expect((await api.log(again.id)).toString()).toBe("same-secret\n");

    const blocked = await api.submit({ steps: [{ run: "true" }], labels: ["nobody-has-this"] });
    await expect(api.retry(blocked.id)).rejects.toMatchObject({
      status: 409,
      code: "CONTROLLER_ERR_CONFLICT",
    });
    await expect(api.retry("no-such-job")).rejects.toMatchObject({ status: 404 });
    await api.cancel(blocked.id);
  });
});

describe("wrong API tokens", () => {
  let ctl: TestController;
  // A window long enough that a loaded machine does not see it pass between two requests.
  const LIMIT = { failures: 3, windowMs: 3_000 };
  beforeAll(async () => {
    ctl = await startController({ overrides: { apiToken: TOKEN, tokenGuessLimit: LIMIT } });
  });
  afterAll(async () => {
    await ctl?.close();
  });
  const login = (token: string) =>
    request(new URL("login", ctl.controller.url).href, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: `token=${encodeURIComponent(token)}`,
    });
  const jobs = (headers: Record<string, string> = {}) =>
    request(new URL("api/v1/jobs", ctl.controller.url).href, { headers });
  const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

  async function expectWaiting(res: Response): Promise<void> {
    expect(res.status).toBe(429);
    const retryAfter = Number(res.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(LIMIT.windowMs / 1000);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("CONTROLLER_ERR_RATE_LIMITED");
    expect(body.error.message).toMatch(/too many wrong API tokens from this address: try again in \d+ s/);
    expect(body.error.message).not.toContain(TOKEN);
  }

  it("makes a client that sent too many wait (429, Retry-After), even with the right token, at sign-in and as a bearer", async () => {
    const signedIn = await login(TOKEN);
    expect(signedIn.status).toBe(204);
    const session = signedIn.headers.get("set-cookie")!.split(";")[0]!;

    for (let i = 0; i < LIMIT.failures; i++)
      expect((await login(`wrong-token-${i}-0000000000`)).status).toBe(401);
    // The right token too: answering it would tell the guesser it found it.
    await expectWaiting(await login(TOKEN));
    await expectWaiting(await jobs(bearer(TOKEN)));
    // A session cookie is an HMAC, not a guess: an open tab goes on working. No credentials:
    // still 401 (the web view asks for the token), not counted.
    expect((await jobs({ Cookie: session })).status).toBe(200);
    expect((await jobs()).status).toBe(401);
    expect((await jobs({ Cookie: "controller_session=00" })).status).toBe(401);

    // The wait ends after the window.
    await expect
      .poll(async () => (await login(TOKEN)).status, { timeout: 4 * LIMIT.windowMs, interval: 250 })
      .toBe(204);

    // Wrong bearer tokens count the same way.
    for (let i = 0; i < LIMIT.failures; i++)
      expect((await jobs(bearer(`wrong-bearer-${i}-000000000`))).status).toBe(401);
    await expectWaiting(await jobs(bearer(TOKEN)));
    await expectWaiting(await login(TOKEN));
    await expect
      .poll(async () => (await jobs(bearer(TOKEN))).status, { timeout: 4 * LIMIT.windowMs, interval: 250 })
      .toBe(200);
  });
});

describe("listening beyond loopback", () => {
  it("refuses to start on a public interface without a token, and starts with one or with insecure", async () => {
    const data = tempDir("ctl-public-");
    try {
      await expect(Controller.start({ dataDir: data.path, host: "0.0.0.0" })).rejects.toMatchObject({
        code: "CONTROLLER_ERR_CONFIG",
      });
      await expect(
        Controller.start({ dataDir: data.path, host: "127.0.0.1", apiToken: "short" }),
      ).rejects.toBeInstanceOf(ControllerApiError);
      for (const options of [{ apiToken: TOKEN }, { insecure: true }]) {
        const controller = await Controller.start({ dataDir: data.path, host: "0.0.0.0", ...options });
        const res = await fetch(`http://127.0.0.1:${new URL(controller.url).port}/healthz`);
        expect(res.status).toBe(200);
        await controller.stop();
      }
    } finally {
      data.remove();
    }
  });

  it("`serve --host 0.0.0.0 --insecure` starts, and warns that the port is open to whoever reaches it", async () => {
    const data = tempDir("ctl-insecure-");
    const serve = await startServe([
      "--host",
      "0.0.0.0",
      "--port",
      "0",
      "--insecure",
      "--data-dir",
      data.path,
    ]);
    try {
      expect(serve.stdout()).toContain("(data: ");
      expect(serve.stdout()).toContain("; no API token (--insecure))");
      await expect.poll(() => serve.stderr(), { timeout: 10_000 }).toContain('"level":"warn"');
      const warning = serve
        .stderr()
        .split("\n")
        .find((line) => line.includes('"level":"warn"'));
      expect(JSON.parse(warning!)).toMatchObject({
        msg: expect.stringContaining("listening beyond loopback without an API token (--insecure)"),
        host: "0.0.0.0",
      });
      expect((await fetch(`http://127.0.0.1:${serve.port}/healthz`)).status).toBe(200);
    } finally {
      serve.child.kill("SIGTERM");
      await serve.exited;
      data.remove();
    }
  });

  it("`serve --host 0.0.0.0` without a token exits 2 and says why", async () => {
    const run = await runNode(join(ROOT, "dist/controller.mjs"), ["serve", "--host", "0.0.0.0"]);
    expect(run.code).toBe(CLI_EXIT.usage);
    expect(run.stderr).toContain("refusing to listen on 0.0.0.0 without an API token");
  });
});

describe("TLS", () => {
  let pki: TestPki;
  let dir: ReturnType<typeof tempDir>;
  beforeAll(() => {
    dir = tempDir("pki-");
    pki = makeTestPki(dir.path);
  });
  afterAll(() => dir?.remove());

  it("serves HTTPS and WSS: agents and the CLI trust a private CA through NODE_EXTRA_CA_CERTS", async () => {
    const ctl = await startController({
      provision: true,
      agentEnv: { NODE_EXTRA_CA_CERTS: pki.caCert },
      overrides: {
        apiToken: TOKEN,
        tls: { cert: readFileSync(pki.cert, "utf8"), key: readFileSync(pki.key, "utf8") },
      },
    });
    try {
      expect(ctl.controller.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
      const jobFile = join(dir.path, "job.json");
      writeFileSync(jobFile, JSON.stringify({ steps: [{ run: "echo over tls" }] }));
      const cli = (env: Record<string, string>) =>
        runNode(join(ROOT, "dist/controller.mjs"), ["submit", jobFile, "--url", ctl.controller.url], {
          CONTROLLER_TOKEN: TOKEN,
          ...env,
        });
      // The launched agent connects over wss, verifying the certificate against the CA.
      const trusted = await cli({ NODE_EXTRA_CA_CERTS: pki.caCert });
      expect(trusted.stderr).toBe("");
      expect(trusted.code).toBe(CLI_EXIT.ok);
      expect(trusted.stdout).toContain("over tls\n");
      const untrusted = await cli({});
      expect(untrusted.code).toBe(CLI_EXIT.platform);
      expect(untrusted.stderr).toContain(
        "the controller's TLS certificate could not be verified (set NODE_EXTRA_CA_CERTS to its CA's PEM file)",
      );
    } finally {
      await ctl.close();
    }
  });

  it("an agent refuses a controller whose certificate it cannot verify", async () => {
    const ctl = await startController({
      overrides: {
        tls: { cert: readFileSync(pki.untrustedCert, "utf8"), key: readFileSync(pki.untrustedKey, "utf8") },
      },
    });
    try {
      const run = await spawnEntrypoint([], {
        HOME: dir.path,
        JENKINS_URL: ctl.controller.url,
        JENKINS_SECRET: ctl.controller.secretFor("tls-agent"),
        JENKINS_AGENT_NAME: "tls-agent",
        JENKINS_AGENT_WORKDIR: join(dir.path, "agent"),
        AGENT_CONNECT_TIMEOUT_MS: "1000",
        NODE_EXTRA_CA_CERTS: pki.caCert,
      }).done;
      expect(run.code).toBe(3);
      expect(run.stderr).toContain("self-signed certificate");
      expect(ctl.controller.listAgents()).toEqual([]);
    } finally {
      await ctl.close();
    }
  });

  it("refuses a certificate or key it cannot use", async () => {
    const data = tempDir("ctl-badtls-");
    try {
      await expect(
        Controller.start({ dataDir: data.path, tls: { cert: "not a certificate", key: "not a key" } }),
      ).rejects.toMatchObject({ code: "CONTROLLER_ERR_CONFIG" });
    } finally {
      data.remove();
    }
  });
});

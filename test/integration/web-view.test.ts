import { existsSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultWebDir, webViewRoutes } from "../../controller/index.ts";
import { DEFAULT_LOG_BUDGET } from "../../controller/web/log-model.ts";
import { pattern } from "../fixtures/pattern.mjs";
import { artifactPath, computedStyle, launchChromium, REBOUND_HOST } from "../support/browser.ts";
import { FIXTURES, startController, type TestController, tempDir } from "../support/harness.ts";

// A real controller on loopback launching real agents (the container entrypoint bundle), and
// Debian's Chromium driven by playwright-core looking at the web view the controller serves.
let ctl: TestController;
let browser: { context: BrowserContext; close: () => Promise<void> };
let scratch: ReturnType<typeof tempDir>;

beforeAll(async () => {
  scratch = tempDir("web-view-");
  [ctl, browser] = await Promise.all([
    startController({ provision: true, overrides: { routes: webViewRoutes(defaultWebDir()) } }),
    launchChromium(),
  ]);
});
afterAll(async () => {
  await browser?.close();
  await ctl?.close();
  scratch?.remove();
});

async function openPage(path: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  await page.goto(new URL(path, ctl.controller.url).href);
  return { page, errors };
}

const logLine = (page: Page, text: string) => page.locator(".log .row.line", { hasText: text });
const stepHeader = (page: Page, stepId: string) => page.locator(`.log .row.header[data-step="${stepId}"]`);

/** A step that prints `before`, waits (bounded) for `gate` to exist, then prints `after`. */
function gatedStep(gate: string, before: string, after: string): string {
  return `echo '${before}'; for i in $(seq 1 600); do [ -e '${gate}' ] && break; sleep 0.05; done; echo '${after}'`;
}

describe("the web view in a real browser", () => {
  it("follows a job's log as it streams, with colours and finished steps collapsed", async () => {
    const gate = join(scratch.path, "gate-stream");
    const job = await ctl.client.submit({
      name: "streaming",
      steps: [
        {
          id: "colours",
          name: "Colours",
          run: "printf '\\033[32mgreen ok\\033[0m and \\033[1;31mbold red\\033[0m\\n'",
        },
        { id: "stream", name: "Stream", run: gatedStep(gate, "line A", "line B") },
      ],
    });
    const { page, errors } = await openPage(`/jobs/${job.id}`);

    await logLine(page, "line A").waitFor({ timeout: 20_000 });
    expect(await logLine(page, "line B").count()).toBe(0);
    // The step that finished is folded away when the next one starts: its lines are not shown.
    await expect.poll(() => stepHeader(page, "colours").getAttribute("aria-expanded")).toBe("false");
    expect(await logLine(page, "green ok").count()).toBe(0);
    expect(await stepHeader(page, "stream").getAttribute("aria-expanded")).toBe("true");

    writeFileSync(gate, "");
    await logLine(page, "line B").waitFor({ timeout: 20_000 });
    await page.locator(".job-header .badge.status-succeeded").waitFor({ timeout: 20_000 });

    await stepHeader(page, "colours").click();
    const green = page.locator(".log .row.line .ansi-green-fg", { hasText: "green ok" });
    await green.waitFor();
    expect(await computedStyle(green, "color")).toBe("rgb(63, 185, 80)");
    const red = page.locator(".log .row.line .ansi-red-fg", { hasText: "bold red" });
    expect(await computedStyle(red, "fontWeight")).toBe("700");
    // The escape codes themselves never reach the page.
    expect(await page.locator(".log").textContent()).not.toContain("[32m");

    // Each line shows when the controller received it, on demand.
    expect(await page.locator(".log .row.line time.ts").count()).toBe(0);
    await page.getByLabel("Timestamps").check();
    const stamp = logLine(page, "line B").locator("time.ts");
    expect(await stamp.textContent()).toMatch(/^\d\d:\d\d:\d\d\.\d{3}$/);

    const screenshot = artifactPath("web-view-job.png");
    await page.screenshot({ path: screenshot });
    console.log(`web view screenshot: ${screenshot}`);
    expect(errors).toEqual([]);
    await page.close();
  });

  it("cancels a running job from its page, and lists it and its agent", async () => {
    const gate = join(scratch.path, "gate-cancel");
    const job = await ctl.client.submit({
      name: "to-cancel",
      steps: [
        // Not "waiting": the page's queued row says "waiting for an agent" before any step runs.
        { id: "wait", name: "Wait", run: gatedStep(gate, "step at its gate", "not cancelled") },
        { id: "after", name: "After", run: "echo after" },
      ],
    });
    const { page, errors } = await openPage(`/jobs/${job.id}`);
    await logLine(page, "step at its gate").waitFor({ timeout: 20_000 });

    const agents = await openPage("/agents");
    const agentRow = agents.page.locator("table.agents tbody tr", { hasText: job.id });
    await agentRow.waitFor({ timeout: 10_000 });
    expect(await agentRow.locator(".badge").textContent()).toBe("busy");
    await agents.page.close();

    await page.getByRole("button", { name: "Cancel" }).click();
    await page.locator(".job-header .badge.status-cancelled").waitFor({ timeout: 20_000 });
    const record = await ctl.controller.waitForJob(job.id);
    expect(record).toMatchObject({ status: "cancelled", reason: "cancelled" });
    expect(record.steps.map((s) => s.status)).toEqual(["failed", "skipped"]);
    expect(await logLine(page, "not cancelled").count()).toBe(0);
    await page.locator(".failure .skipped", { hasText: "After" }).waitFor();

    await page.getByRole("link", { name: "Jobs", exact: true }).click();
    const row = page.locator(`table.jobs tr[data-job="${job.id}"]`);
    await row.waitFor();
    expect(await row.locator(".badge").textContent()).toBe("cancelled");
    await row.getByRole("link", { name: "to-cancel" }).click();
    await page.locator(".job-header h1", { hasText: "to-cancel" }).waitFor();
    expect(errors).toEqual([]);
    await page.close();
  });

  it("runs a failed job again from its page, and never shows the job's secrets", async () => {
    const secret = "page-secret-5c4b3a2918";
    const job = await ctl.client.submit({
      name: "flaky",
      secrets: { DEPLOY_KEY: secret },
      steps: [{ id: "only", run: 'echo "using $DEPLOY_KEY"; exit 1' }],
    });
    await ctl.controller.waitForJob(job.id);
    const { page, errors } = await openPage(`/jobs/${job.id}`);
    await logLine(page, "using ***").waitFor({ timeout: 20_000 });
    await page.locator(".failure", { hasText: "a step exited with a non-zero code" }).waitFor();
    expect(await page.locator("body").textContent()).not.toContain(secret);

    await page.getByRole("button", { name: "Retry" }).click();
    await page.locator(".job-header .sub a", { hasText: job.id }).waitFor({ timeout: 10_000 });
    const retryId = decodeURIComponent(new URL(page.url()).pathname.split("/").pop()!);
    expect(retryId).not.toBe(job.id);
    expect(await ctl.controller.waitForJob(retryId)).toMatchObject({ retryOf: job.id, status: "failed" });
    await logLine(page, "using ***").waitFor({ timeout: 20_000 });
    expect(await page.locator("body").textContent()).not.toContain(secret);
    expect(errors).toEqual([]);
    await page.close();
  });

  it("asks for the API token when the controller has one, shows the jobs once signed in, and cancels with the session", async () => {
    const token = "web-token-0123456789abcdef";
    const guarded = await startController({
      overrides: { apiToken: token, routes: webViewRoutes(defaultWebDir()) },
    });
    const page = await browser.context.newPage();
    try {
      const job = guarded.controller.submit({
        name: "guarded-job",
        labels: ["nobody"],
        steps: [{ run: "true" }],
      });
      await page.goto(guarded.controller.url);
      await page.getByRole("heading", { name: "Sign in" }).waitFor();
      await page.getByPlaceholder("token").fill("wrong-token-0000000000");
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.locator(".sign-in .error", { hasText: "wrong token" }).waitFor();
      await page.getByPlaceholder("token").fill(token);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.locator(`table.jobs tr[data-job="${job.id}"]`, { hasText: "guarded-job" }).waitFor();
      const cookies = await browser.context.cookies(guarded.controller.url);
      expect(cookies.map((c) => [c.name, c.httpOnly, c.sameSite, c.value === token])).toEqual([
        ["controller_session", true, "Strict", false],
      ]);
      // A change from the page with the session cookie: same origin, so it goes through.
      await page
        .locator(`table.jobs tr[data-job="${job.id}"]`)
        .getByRole("link", { name: "guarded-job" })
        .click();
      await page.getByRole("button", { name: "Cancel" }).click();
      await page.locator(".job-header .badge.status-cancelled").waitFor({ timeout: 20_000 });
      expect(guarded.controller.getJob(job.id)?.status).toBe("cancelled");
    } finally {
      await page.close();
      await guarded.close();
    }
  });

  it("shows a large log without putting it all in the page: only the rows on screen are rendered", async () => {
    const bytes = 8 * 1024 * 1024;
    const job = await ctl.client.submit({
      name: "big",
      steps: [{ id: "big", argv: ["node", join(FIXTURES, "write-bytes.mjs"), String(bytes)] }],
    });
    const record = await ctl.controller.waitForJob(job.id);
    expect(record.status).toBe("succeeded");
    // The fixture repeats one line; the last one may be cut short.
    const expectedLines = Math.ceil(bytes / (pattern(200).indexOf(10) + 1));

    const { page, errors } = await openPage(`/jobs/${job.id}`);
    await page.locator('[data-testid="log-state"]', { hasText: "complete" }).waitFor({ timeout: 30_000 });
    // The page follows the log to its end: the last line is on screen, and few rows are in the page.
    await page.locator(".log .row.line .ln", { hasText: String(expectedLines) }).waitFor();
    expect(await page.locator(".log .row").count()).toBeLessThan(200);
    // Every line is a row of the log (plus the two section headers).
    expect(Number(await page.locator(".log").getAttribute("data-rows"))).toBe(expectedLines + 2);
    await page.locator(".log").evaluate((el) => {
      el.scrollTop = 0;
    });
    expect(await stepHeader(page, "big").locator(".lines").textContent()).toBe(`${expectedLines} lines`);
    expect(await page.locator(".log .row").count()).toBeLessThan(200);
    expect(errors).toEqual([]);
    await page.close();
  });

  it("shows a job's artifacts with a download link, and its caches", async () => {
    const job = await ctl.client.submit({
      name: "with artifacts",
      repository: "github.com/acme/app",
      branch: "main",
      caches: ["npm"],
      steps: [{ run: "mkdir -p dist && echo built > dist/app.txt" }],
      artifacts: ["dist"],
    });
    await ctl.controller.waitForJob(job.id);
    const { page, errors } = await openPage(`/jobs/${job.id}`);
    const transfers = page.locator(".transfers");
    await expect.poll(() => transfers.textContent(), { timeout: 10_000 }).toContain("Artifacts: 2 entries");
    expect(await transfers.textContent()).toContain(
      "Caches (github.com/acme/app@protected): no hits · misses npm",
    );
    const href = await transfers.locator("a[download]").getAttribute("href");
    expect(href).toBe(`/api/v1/jobs/${job.id}/artifacts`);
    const download = await fetch(new URL(href!, ctl.controller.url));
    expect(download.headers.get("content-type")).toBe("application/x-tar");
    expect(errors).toEqual([]);
    await page.close();
  });
  it("keeps the last lines of a log longer than the page holds, numbered, and links the raw log for the rest", async () => {
    const total = DEFAULT_LOG_BUDGET.maxLines + 100_000;
    const job = await ctl.client.submit({
      name: "too-long",
      steps: [{ id: "many", argv: ["seq", "1", String(total)] }],
    });
    expect((await ctl.controller.waitForJob(job.id)).status).toBe("succeeded");

    const { page, errors } = await openPage(`/jobs/${job.id}`);
    const state = page.locator('[data-testid="log-state"]', { hasText: "complete" });
    await state.waitFor({ timeout: 60_000 });
    // The count is the whole log's (the setup section adds its own lines).
    const shown = Number(/ (\d+) lines/.exec((await state.textContent()) ?? "")?.[1]);
    expect(shown).toBeGreaterThan(total);
    expect(shown).toBeLessThan(total + 20);
    // Followed to the end: the last line has its number in the step.
    await page
      .locator(".log .row.line", { hasText: String(total) })
      .first()
      .waitFor();
    expect(await page.locator(".log .row.line .ln").last().textContent()).toBe(String(total));
    // The note stands where the dropped lines would be, and links the raw log.
    await page.locator(".log").evaluate((el) => {
      el.scrollTop = 0;
    });
    const note = page.locator(".log .row.dropped");
    await note.waitFor();
    expect(await stepHeader(page, "many").locator(".lines").textContent()).toBe(`${total} lines`);
    const dropped = Number(/^(\d+) earlier lines/.exec((await note.textContent()) ?? "")?.[1]);
    expect(dropped).toBeGreaterThan(0);
    expect(dropped).toBeLessThan(total - DEFAULT_LOG_BUDGET.maxLines / 2);
    expect(await note.locator("a").getAttribute("href")).toBe(`/api/v1/jobs/${job.id}/log`);
    const firstHeld = page.locator(".log .row.line .ln").first();
    expect(await firstHeld.textContent()).toBe(String(dropped + 1));
    expect(await page.locator(".log .row").count()).toBeLessThan(200);
    expect(errors).toEqual([]);
    await page.close();
  });
});

describe("pages of other sites in the same browser", () => {
  /** A site of another origin (another port): what any page the user opens could be. */
  async function foreignSite(): Promise<{ url: string; close: () => Promise<void> }> {
    const server = createServer((_req, res) => {
      res.writeHead(200, { "Content-Type": "text/html" }).end("<!doctype html><title>elsewhere</title>");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}/`,
      // The browser keeps its connections open: end them, or close() waits for them.
      close: () =>
        new Promise((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
    };
  }

  it("cannot submit, cancel or retry jobs on a controller without a token (cross-origin requests, forms)", async () => {
    const marker = join(scratch.path, "cross-origin-ran");
    // A job that runs until the test ends: a cancel that got through would end it.
    const waiting = await ctl.client.submit({ name: "long", steps: [{ run: "sleep 120" }] });
    const ended = await ctl.client.submit({ name: "ended", steps: [{ run: "exit 1" }] });
    await ctl.controller.waitForJob(ended.id);
    const jobsBefore = ctl.controller.listJobs().length;
    const site = await foreignSite();
    const page = await browser.context.newPage();
    try {
      await page.goto(site.url);
      // What a script on any page can send without asking (no preflight): opaque answers, but
      // the requests arrive.
      const sent = await page.evaluate(
        async ({ base, job, waitingId, endedId }) => {
          const post = (path: string, body?: string) =>
            fetch(new URL(path, base), {
              method: "POST",
              mode: "no-cors",
              headers: { "Content-Type": "text/plain" },
              ...(body !== undefined ? { body } : {}),
            }).then(
              (res) => res.type,
              (error: unknown) => String(error),
            );
          return [
            await post("api/v1/jobs", JSON.stringify(job)),
            await post(`api/v1/jobs/${waitingId}/cancel`),
            await post(`api/v1/jobs/${endedId}/retry`),
          ];
        },
        {
          base: ctl.controller.url,
          job: { name: "cross-origin", steps: [{ run: `touch '${marker}'` }] },
          waitingId: waiting.id,
          endedId: ended.id,
        },
      );
      expect(sent).toEqual(["opaque", "opaque", "opaque"]);
      // A plain HTML form posted from the other site.
      await page.setContent(
        `<form method="post" action="${new URL(`api/v1/jobs/${waiting.id}/cancel`, ctl.controller.url).href}"><button>go</button></form>`,
      );
      const [answer] = await Promise.all([page.waitForNavigation(), page.click("button")]);
      expect(answer?.status()).toBe(403);
      expect(await page.locator("body").textContent()).toContain("CONTROLLER_ERR_FORBIDDEN");

      expect(ctl.controller.listJobs().length).toBe(jobsBefore);
      expect(["queued", "running"]).toContain(ctl.controller.getJob(waiting.id)?.status);
      expect(existsSync(marker)).toBe(false);
    } finally {
      await page.close();
      await site.close();
      ctl.controller.cancel(waiting.id);
    }
  });

  it("cannot read or drive a controller without a token through a name rebound to loopback (DNS rebinding)", async () => {
    const port = new URL(ctl.controller.url).port;
    const page = await browser.context.newPage();
    try {
      // The attacker's name now resolves to 127.0.0.1: its page and the controller share an origin.
      const res = await page.goto(`http://${REBOUND_HOST}:${port}/`);
      expect(res?.status()).toBe(403);
      const answers = await page.evaluate(async () => {
        const jobs = await fetch("/api/v1/jobs");
        const submit = await fetch("/api/v1/jobs", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ labels: ["nobody-has-this"], steps: [{ run: "true" }] }),
        });
        return [jobs.status, submit.status, (await jobs.text()).includes("CONTROLLER_ERR_FORBIDDEN")];
      });
      expect(answers).toEqual([403, 403, true]);
      // The controller's own names still work.
      expect((await page.goto(`http://localhost:${port}/`))?.status()).toBe(200);
    } finally {
      await page.close();
    }
  });
});

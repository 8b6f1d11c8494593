import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { createLogger } from "../../agent-core/index.ts";
import { Controller, LocalProvisioner, webViewRoutes } from "../../controller/index.ts";
import { CHROMIUM, launchChromium } from "../../test/support/browser.ts";
import { type BenchContext, byScale, type Measurement } from "../lib/context.ts";
import { type Figure, measured, notAvailable } from "../lib/figures.ts";
import { ENTRYPOINT, ROOT, tempDir } from "../lib/peers.ts";
import { NODE } from "../lib/proc.ts";

const WRITE_BYTES = join(ROOT, "test/fixtures/write-bytes.mjs");

const ROWS = {
  shown: {
    id: "webview-log-shown",
    title: "web view: a 50 MB log, page open to its last line shown",
    unit: "ms",
  },
  task: {
    id: "webview-log-longest-task",
    title: "web view: a 50 MB log, longest main-thread task",
    unit: "ms",
  },
} as const;

/** Records the page's long tasks (over 50 ms) from its first script on. */
const OBSERVE_LONG_TASKS = `
  window.__longTasks = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
  }).observe({ type: "longtask", buffered: true });
`;

/**
 * (10) The web view on a large log, in Debian's Chromium: the time from opening a finished job's
 * page to its last line on screen, and the longest main-thread task meanwhile (a task over
 * ~200 ms is a tab that does not answer). Baseline, in the same browser: the naive page, the raw
 * log fetched and put in one `<pre>`.
 */
export const webView: Measurement = {
  name: "web view",
  rows: Object.values(ROWS),
  async run(ctx: BenchContext): Promise<Figure[]> {
    if (!existsSync(CHROMIUM) || !existsSync(join(ROOT, "dist/web/index.html")))
      return Object.values(ROWS).map((row) =>
        notAvailable(row.id, row.title, row.unit, `needs ${CHROMIUM} and a built dist/web`),
      );
    const bytes = byScale(ctx, { full: 50_000_000, quick: 4_000_000, smoke: 1_000_000 });
    const runs = byScale(ctx, { full: 3, quick: 1, smoke: 1 });
    const data = tempDir("bench-web-");
    const controller = await Controller.start({
      dataDir: data.path,
      logger: createLogger({ level: "error", write: () => {} }),
      routes: webViewRoutes(join(ROOT, "dist/web")),
      provisioner: new LocalProvisioner({ command: [NODE, ENTRYPOINT], logDir: join(data.path, "agents") }),
    });
    const browser = await launchChromium();
    try {
      ctx.progress(`web view: writing a ${bytes / 1e6} MB log`);
      const job = controller.submit({ steps: [{ id: "big", argv: [NODE, WRITE_BYTES, String(bytes)] }] });
      const record = await controller.waitForJob(job.id);
      if (record.status !== "succeeded") throw new Error(`the log job ${record.status}: ${record.message}`);
      const lines = await countLines(controller.outputPath(job.id));
      const shown: number[] = [];
      const tasks: number[] = [];
      const naiveShown: number[] = [];
      const naiveTasks: number[] = [];
      for (let i = 0; i < runs; i++) {
        ctx.progress(`web view: ${bytes / 1e6} MB log, run ${i + 1}/${runs}`);
        const page = await browser.context.newPage();
        await page.addInitScript(OBSERVE_LONG_TASKS);
        const started = Date.now();
        await page.goto(new URL(`jobs/${job.id}`, controller.url).href);
        await page
          .locator('[data-testid="log-state"]', { hasText: "complete" })
          .waitFor({ timeout: 600_000 });
        await page.locator(".log .row.line .ln", { hasText: String(lines) }).waitFor({ timeout: 60_000 });
        shown.push(Date.now() - started);
        tasks.push(await longestTask(page));
        await page.close();

        const naive = await browser.context.newPage();
        await naive.addInitScript(OBSERVE_LONG_TASKS);
        await naive.goto(new URL("healthz", controller.url).href);
        const naiveStarted = Date.now();
        await naive.evaluate(
          async (url) => {
            // In the page (this project's types have no DOM).
            const page = globalThis as unknown as {
              document: {
                createElement(tag: string): { textContent: string };
                body: { replaceChildren(node: unknown): void };
              };
              requestAnimationFrame(callback: () => void): void;
            };
            const text = await (await fetch(url)).text();
            const pre = page.document.createElement("pre");
            pre.textContent = text;
            page.document.body.replaceChildren(pre);
            await new Promise<void>((resolve) =>
              page.requestAnimationFrame(() => page.requestAnimationFrame(resolve)),
            );
          },
          new URL(`api/v1/jobs/${job.id}/log`, controller.url).href,
        );
        naiveShown.push(Date.now() - naiveStarted);
        naiveTasks.push(await longestTask(naive));
        await naive.close();
      }
      const notes = [
        `${bytes / 1e6} MB in ${lines} lines; the page keeps only the rows on screen in the DOM`,
      ];
      return [
        measured({
          ...ROWS.shown,
          samples: shown,
          baseline: { title: "the raw log fetched into one <pre>", samples: naiveShown },
          notes,
        }),
        measured({
          ...ROWS.task,
          samples: tasks,
          baseline: { title: "the raw log fetched into one <pre>", samples: naiveTasks },
          target: { text: "max <= 200 ms", actual: (f) => f.value?.max ?? null, op: "<=", limit: 200 },
        }),
      ];
    } finally {
      await browser.close();
      await controller.stop();
      data.remove();
    }
  },
};

async function longestTask(page: Page): Promise<number> {
  return page.evaluate(() => {
    const tasks = (globalThis as unknown as { __longTasks: number[] }).__longTasks;
    return tasks.length === 0 ? 0 : Math.max(...tasks);
  });
}

async function countLines(path: string): Promise<number> {
  const { createReadStream } = await import("node:fs");
  let lines = 0;
  let last = 10;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    for (const byte of chunk) if (byte === 10) lines++;
    last = chunk[chunk.length - 1] ?? last;
  }
  return last === 10 ? lines : lines + 1;
}

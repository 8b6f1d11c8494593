import { mkdtempSync } from "node:fs";
import { chromium } from "playwright-core";

const [url, out, w = "1280", h = "900"] = process.argv.slice(2);
const ctx = await chromium.launchPersistentContext(mkdtempSync("/tmp/pwud-"), {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: Number(w), height: Number(h) },
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const page = await ctx.newPage();
page.on("console", (m) => console.log("console:", m.text()));
page.on("pageerror", (e) => console.log("pageerror:", e.message));
await page.goto(url);
await page.waitForTimeout(1500);
await page.screenshot({ path: out });
await ctx.close();

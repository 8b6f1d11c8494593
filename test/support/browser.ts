import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Locator } from "playwright-core";
import { ROOT } from "./harness.ts";

/** Debian's Chromium (`apt-get install chromium`; `.ci/run` installs it). Playwright downloads no browser. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** Screenshots the browser tests keep, under the repository (gitignored). */
export const ARTIFACTS_DIR = join(ROOT, ".artifacts");

/**
 * A name Chromium resolves to 127.0.0.1 (a `--host-resolver-rules` mapping): a page loaded from
 * it stands for an attacker's page after DNS rebinding (its name now points at the controller).
 */
export const REBOUND_HOST = "rebound.attacker.test";

/**
 * A headless Chromium with a fresh profile, its calls home turned off (they are refused here,
 * many at a time, and slow the start). `close` removes the profile.
 */
export async function launchChromium(): Promise<{ context: BrowserContext; close: () => Promise<void> }> {
  if (!existsSync(CHROMIUM))
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)`);
  const profile = mkdtempSync(join(tmpdir(), "chromium-profile-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-default-apps",
      `--host-resolver-rules=MAP ${REBOUND_HOST} 127.0.0.1`,
    ],
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Where to write a screenshot named `name`; the directory is created. */
export function artifactPath(name: string): string {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  return join(ARTIFACTS_DIR, name);
}

/** The element's computed style `property` (e.g. `color`, `fontWeight`), read in the page. */
export function computedStyle(locator: Locator, property: string): Promise<string> {
  return locator.evaluate((element, name) => {
    const page = globalThis as unknown as { getComputedStyle(e: unknown): Record<string, string> };
    return page.getComputedStyle(element)[name] ?? "";
  }, property);
}

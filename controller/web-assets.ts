import { existsSync, readFileSync, statSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Pages of the web view: each answers with index.html, and the page's script shows the right view. */
const PAGE_PATHS = /^\/(?:|jobs\/?|jobs\/[^/]+\/?|agents\/?)$/;
const ASSET_PATH = /^\/assets\/([A-Za-z0-9._-]+)$/;

const CONTENT_TYPES: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".html": "text/html; charset=utf-8",
};

/**
 * What a browser may do with the pages: scripts, styles and requests to this origin only (the
 * log's colours use inline styles for 256-colour and true-colour output), no framing.
 */
export const WEB_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "Content-Security-Policy":
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
};

/**
 * Where the built web view is: `web/` beside the controller bundle (`dist/web`), or, when the
 * controller runs from source (tests), the repository's `dist/web`.
 */
export function defaultWebDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const beside = join(here, "web");
  if (existsSync(join(beside, "assets", "app.js"))) return beside;
  return join(here, "..", "dist", "web");
}

/**
 * Serves the web view from `dir` when `pathname` is one of its pages or assets; returns false for
 * any other path (the API's). Files are read on each request: they are small, and a rebuilt view
 * is served without a restart.
 */
export function serveWebView(dir: string, method: string, pathname: string, res: ServerResponse): boolean {
  if (method !== "GET" && method !== "HEAD") return false;
  const asset = ASSET_PATH.exec(pathname);
  let file: string;
  if (PAGE_PATHS.test(pathname)) file = join(dir, "index.html");
  else if (asset !== null) file = join(dir, "assets", asset[1]!);
  else return false;
  if (!existsSync(file) || !statSync(file).isFile()) {
    const text =
      asset === null
        ? `The web view is not built (no ${file}): run \`npm run build\`.\n`
        : `No asset ${asset[1]}.\n`;
    res.writeHead(asset === null ? 503 : 404, {
      "Content-Type": "text/plain; charset=utf-8",
      "Content-Length": Buffer.byteLength(text),
    });
    res.end(method === "HEAD" ? undefined : text);
    return true;
  }
  const body = readFileSync(file);
  const extension = file.slice(file.lastIndexOf("."));
  res.writeHead(200, {
    ...WEB_SECURITY_HEADERS,
    "Content-Type": CONTENT_TYPES[extension] ?? "application/octet-stream",
    "Content-Length": body.length,
    "Cache-Control": "no-cache",
  });
  res.end(method === "HEAD" ? undefined : body);
  return true;
}

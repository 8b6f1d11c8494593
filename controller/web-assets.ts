import { existsSync, readFileSync, statSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { basename, dirname, extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ControllerApiError } from "./errors.ts";
import type { Route } from "./http-api.ts";

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

/** The web view's pages: each answers with index.html, and the page's script shows the right view. */
const PAGE_PATHS = ["/", "/jobs", "/jobs/:id", "/agents"];

/**
 * Routes serving the web view built in `dir` (see `defaultWebDir`): its pages and
 * `/assets/:file`. Pass them to `Controller.start({ routes })`. They are public (they hold no
 * data; the page asks the API, which wants the token when there is one). Files are read on each
 * request: they are small, and a rebuilt view is served without a restart.
 *
 * @example
 * await Controller.start({ dataDir, routes: webViewRoutes(defaultWebDir()) });
 */
export function webViewRoutes(dir: string): Route[] {
  const page: Route["handle"] = ({ res }) => sendFile(res, join(dir, "index.html"), true);
  return [
    ...PAGE_PATHS.map((path): Route => ({ method: "GET", path, public: true, handle: page })),
    {
      method: "GET",
      path: "/assets/:file",
      public: true,
      handle: ({ res, params }) => {
        const name = params.file!;
        if (!SAFE_NAME.test(name)) throw noAsset(name);
        sendFile(res, join(dir, "assets", name), false);
      },
    },
  ];
}

const SAFE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

function noAsset(name: string): ControllerApiError {
  return new ControllerApiError(404, "CONTROLLER_ERR_NOT_FOUND", `no asset ${JSON.stringify(name)}`);
}

function sendFile(res: ServerResponse, file: string, isPage: boolean): void {
  if (!existsSync(file) || !statSync(file).isFile()) {
    if (!isPage) throw noAsset(basename(file));
    throw new ControllerApiError(
      404,
      "CONTROLLER_ERR_NOT_FOUND",
      `the web view is not built (no ${file}): run \`npm run build\``,
    );
  }
  const body = readFileSync(file);
  res.writeHead(200, {
    ...WEB_SECURITY_HEADERS,
    "Content-Type": CONTENT_TYPES[extname(file)] ?? "application/octet-stream",
    "Content-Length": body.length,
    "Cache-Control": "no-cache",
  });
  res.end(body);
}

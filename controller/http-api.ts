import { createReadStream } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import { AGENT_VERSION, DISCOVERY_PATH, PROTOCOL_VERSION, PROTOCOLS_HEADER } from "../agent-core/index.ts";
import { type ApiAccess, authorize, checkRequestSource } from "./auth.ts";
import { ControllerApiError } from "./errors.ts";
import type { ReadEvent } from "./job-files.ts";
import type { JobRecord } from "./job-record.ts";
import { durationMs } from "./job-spec.ts";
import { computeMetrics, DEFAULT_WINDOW_MS, prometheusText } from "./metrics.ts";
import type { WorkspaceUpload } from "./workspace-uploads.ts";

/** An agent as the API lists it. */
export interface AgentInfo {
  name: string;
  state: string;
  labels: string[];
  runtime?: string;
  version?: string;
  jobId?: string;
}

/** What the HTTP API needs of the controller (the Controller class implements it). */
export interface ControllerApi {
  submit(input: unknown): JobRecord;
  getJob(id: string): JobRecord | undefined;
  listJobs(): JobRecord[];
  listAgents(): AgentInfo[];
  cancel(id: string): JobRecord;
  /** Queues the ended job `id` again as a new job (`retryOf: id`). Throws 404, or 409 while it runs. */
  retry(id: string): JobRecord;
  /**
   * A job's events from the start; with `follow`, live ones until the job ends. Throws
   * ControllerApiError 404 at once (before anything is read) for an unknown job.
   */
  readEvents(id: string, options: { follow: boolean; signal?: AbortSignal }): AsyncIterable<ReadEvent>;
  /** Path of the job's raw output. Throws 404 for an unknown job. */
  outputPath(id: string): string;
  /** Stores an uploaded workspace archive (streamed); throws 400 / 413 for one agents would refuse or too large. */
  uploadWorkspace(body: AsyncIterable<Uint8Array>): Promise<WorkspaceUpload>;
  /** The job's stored artifacts. Throws 404 for an unknown job or one that kept none. */
  artifactsOf(id: string): { path: string; bytes: number; sha256: string };
}

/** One request being answered: the parsed URL, the path parameters and the API. */
export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  params: Record<string, string>;
  api: ControllerApi;
}

/**
 * An endpoint: a method and a path pattern whose `:name` segments become `params`. A path that
 * matches with another method answers 405 with `Allow`.
 */
export interface Route {
  method: "GET" | "POST" | "PUT" | "DELETE" | "PATCH";
  path: string;
  /** Answered without the API token (health check, the web view's static pages, sign-in). */
  public?: boolean;
  handle(context: RouteContext): Promise<void> | void;
}

const MAX_BODY_BYTES = 1_048_576;

/** The API's own routes (see the README's HTTP API table). */
export const API_ROUTES: readonly Route[] = [
  { method: "GET", path: "/healthz", public: true, handle: ({ res }) => sendJson(res, 200, { ok: true }) },
  {
    // What speaks here: an agent in `auto` mode asks once (a Jenkins controller would answer with X-Jenkins).
    method: "GET",
    path: `/${DISCOVERY_PATH}`,
    public: true,
    handle: ({ res }) => {
      res.setHeader(PROTOCOLS_HEADER, String(PROTOCOL_VERSION));
      sendJson(res, 200, { controller: "reference", protocols: [PROTOCOL_VERSION], version: AGENT_VERSION });
    },
  },
  {
    method: "GET",
    path: "/api/v1/agents",
    handle: ({ res, api }) => sendJson(res, 200, { agents: api.listAgents() }),
  },
  {
    method: "GET",
    path: "/api/v1/jobs",
    handle: ({ res, api }) => sendJson(res, 200, { jobs: api.listJobs() }),
  },
  {
    method: "POST",
    path: "/api/v1/jobs",
    handle: async ({ req, res, api }) => {
      const record = api.submit(await readJson(req));
      res.setHeader("Location", `/api/v1/jobs/${record.id}`);
      sendJson(res, 201, record);
    },
  },
  {
    method: "GET",
    path: "/api/v1/jobs/:id",
    handle: ({ res, api, params, url }) => {
      const record = api.getJob(params.id!);
      if (!record) throw notFound(url.pathname);
      sendJson(res, 200, record);
    },
  },
  {
    method: "POST",
    path: "/api/v1/jobs/:id/cancel",
    handle: ({ res, api, params }) => sendJson(res, 202, api.cancel(params.id!)),
  },
  {
    method: "POST",
    path: "/api/v1/jobs/:id/retry",
    handle: ({ res, api, params }) => {
      const record = api.retry(params.id!);
      res.setHeader("Location", `/api/v1/jobs/${record.id}`);
      sendJson(res, 201, record);
    },
  },
  { method: "GET", path: "/api/v1/metrics", handle: (context) => sendMetrics(context) },
  { method: "GET", path: "/api/v1/jobs/:id/log", handle: (context) => sendLog(context) },
  {
    method: "POST",
    path: "/api/v1/workspaces",
    handle: async ({ req, res, api }) => {
      const upload = await api.uploadWorkspace(bodyOf(req));
      res.setHeader("Location", `/api/v1/workspaces/${upload.id}`);
      sendJson(res, 201, upload);
    },
  },
  {
    method: "GET",
    path: "/api/v1/jobs/:id/artifacts",
    handle: ({ res, api, params }) => {
      const artifacts = api.artifactsOf(params.id!);
      res.writeHead(200, {
        "Content-Type": "application/x-tar",
        "Content-Length": artifacts.bytes,
        // RFC 9530: the digest the controller checked when it stored them.
        "Repr-Digest": `sha-256=:${Buffer.from(artifacts.sha256, "hex").toString("base64")}:`,
        "Content-Disposition": `attachment; filename="${params.id}-artifacts.tar"`,
      });
      createReadStream(artifacts.path).pipe(res);
    },
  },
  { method: "GET", path: "/api/v1/jobs/:id/events", handle: (context) => sendEvents(context) },
];

/**
 * The HTTP request handler: the API's routes, then `extraRoutes` (pages and endpoints built on
 * the same controller). With `access.auth`, every route that is not `public` needs the API token
 * (an unknown path too: strangers learn nothing). What a page of another site could make a
 * browser send is refused (403) in every case: see `checkRequestSource`. Errors answer
 * `{"error": {code, message, problems?}}` with their status.
 */
export function createApiHandler(
  api: ControllerApi,
  extraRoutes: readonly Route[] = [],
  access: ApiAccess = { trustedOrigins: new Set() },
) {
  const routes = [...API_ROUTES, ...extraRoutes];
  return (req: IncomingMessage, res: ServerResponse): void => {
    route(routes, api, access, req, res).catch((error: unknown) => {
      // A body the route stopped reading is read to its end (and dropped) for the answer to reach the client.
      if (!req.complete) req.resume();
      sendError(res, error);
    });
  };
}

async function route(
  routes: readonly Route[],
  api: ControllerApi,
  access: ApiAccess,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  checkRequestSource(access, req);
  const { auth } = access;
  const url = new URL(req.url ?? "/", "http://localhost");
  const segments = url.pathname.split("/").filter(Boolean);
  const method = req.method ?? "GET";
  const allowed: string[] = [];
  let match: { route: Route; params: Record<string, string> } | undefined;
  for (const candidate of routes) {
    const params = matchPath(candidate.path, segments);
    if (params === undefined) continue;
    // HEAD is GET without the body (RFC 9110 §9.3.2): Node's response drops the body itself.
    if (candidate.method !== method && !(method === "HEAD" && candidate.method === "GET")) {
      allowed.push(...(candidate.method === "GET" ? ["GET", "HEAD"] : [candidate.method]));
      continue;
    }
    match = { route: candidate, params };
    break;
  }
  if (auth !== undefined && match?.route.public !== true) {
    // A bearer token may be a guess; a session cookie is an HMAC, not worth guessing.
    const bearer = req.headers.authorization !== undefined;
    if (bearer) await access.guesses?.check(req);
    try {
      authorize(auth, req);
    } catch (error) {
      if ((error as ControllerApiError).status === 401) {
        res.setHeader("WWW-Authenticate", 'Bearer realm="controller"');
        if (bearer) await access.guesses?.failed(req);
      }
      throw error;
    }
  }
  if (match !== undefined) {
    await match.route.handle({ req, res, url, params: match.params, api });
    return;
  }
  if (allowed.length > 0) {
    res.setHeader("Allow", allowed.join(", "));
    throw new ControllerApiError(
      405,
      "CONTROLLER_ERR_BAD_REQUEST",
      `${method} is not allowed on ${url.pathname} (allowed: ${allowed.join(", ")})`,
    );
  }
  throw notFound(url.pathname);
}

/** The path parameters when `segments` match `pattern`, or undefined. */
function matchPath(pattern: string, segments: string[]): Record<string, string> | undefined {
  const parts = pattern.split("/").filter(Boolean);
  if (parts.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (const [index, part] of parts.entries()) {
    const segment = segments[index]!;
    if (part.startsWith(":")) params[part.slice(1)] = decodeSegment(segment);
    else if (part !== segment) return undefined;
  }
  return params;
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new ControllerApiError(
      400,
      "CONTROLLER_ERR_BAD_REQUEST",
      `the path segment ${JSON.stringify(segment)} is not valid percent-encoding`,
    );
  }
}

function isFollow(url: URL): boolean {
  return ["1", "true", "yes"].includes(url.searchParams.get("follow") ?? "");
}

async function sendLog({ api, params, url, req, res }: RouteContext): Promise<void> {
  const id = params.id!;
  if (!isFollow(url) || req.method === "HEAD") {
    const path = api.outputPath(id);
    res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store" });
    if (req.method === "HEAD") res.end();
    else await pipeline(createReadStream(path), res);
    return;
  }
  await stream(res, api, id, true, "text/plain; charset=utf-8", ({ event, data }) =>
    event.type === "output" ? data : undefined,
  );
}

async function sendEvents({ api, params, url, req, res }: RouteContext): Promise<void> {
  if (req.method === "HEAD") {
    api.outputPath(params.id!); // 404 for an unknown job
    res.writeHead(200, { "Content-Type": "application/x-ndjson", "Cache-Control": "no-store" });
    res.end();
    return;
  }
  await stream(
    res,
    api,
    params.id!,
    isFollow(url),
    "application/x-ndjson",
    ({ event }) => `${JSON.stringify(event)}\n`,
  );
}

/**
 * Streams a job's events to `res`, one at a time, waiting for the socket to drain whenever its
 * buffer is full: a slow reader slows the reading of the files, not the controller's memory.
 * The job is looked up before the status line is sent, so an unknown job answers 404.
 */
async function stream(
  res: ServerResponse,
  api: ControllerApi,
  id: string,
  follow: boolean,
  contentType: string,
  render: (event: ReadEvent) => string | Buffer | undefined,
): Promise<void> {
  const abort = new AbortController();
  const events = api.readEvents(id, { follow, signal: abort.signal });
  res.writeHead(200, { "Content-Type": contentType, "Cache-Control": "no-store" });
  const closed = () => abort.abort();
  res.once("close", closed);
  try {
    for await (const event of events) {
      const chunk = render(event);
      if (chunk === undefined || chunk.length === 0) continue;
      if (!res.write(chunk)) await drained(res, abort.signal);
      if (abort.signal.aborted) return;
    }
    res.end();
  } finally {
    res.off("close", closed);
  }
}

/** Resolves when `res` drained its buffer, or when the client went away. */
function drained(res: ServerResponse, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    res.once("drain", done);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * `GET /api/v1/metrics[?window=1h][&format=prometheus]`: queue and start latency over the jobs
 * submitted in the window (default 1 h), as JSON, or as Prometheus text when asked by `format`
 * or by an `Accept` that prefers text (what Prometheus sends).
 */
function sendMetrics({ api, url, req, res }: RouteContext): void {
  const window = url.searchParams.get("window");
  const windowMs = window === null ? DEFAULT_WINDOW_MS : durationMs(window);
  if (!Number.isFinite(windowMs) || windowMs < 1)
    throw new ControllerApiError(
      400,
      "CONTROLLER_ERR_BAD_REQUEST",
      `Expected window to be a duration such as 15m, 1h or 24h, got ${JSON.stringify(window)}`,
    );
  const metrics = computeMetrics(
    api.listJobs(),
    api.listAgents().map((agent) => agent.state),
    Date.now(),
    windowMs,
  );
  const format = url.searchParams.get("format");
  const accept = req.headers.accept ?? "";
  const text =
    format === "prometheus" ||
    (format === null && !accept.includes("application/json") && /text\/plain|openmetrics/.test(accept));
  if (format !== null && format !== "prometheus" && format !== "json")
    throw new ControllerApiError(
      400,
      "CONTROLLER_ERR_BAD_REQUEST",
      `Expected format to be json or prometheus, got ${JSON.stringify(format)}`,
    );
  if (!text) {
    sendJson(res, 200, metrics);
    return;
  }
  const body = prometheusText(metrics);
  res.writeHead(200, {
    "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
    "Content-Length": Buffer.byteLength(body),
  });
  res.end(body);
}

/**
 * A request's body, for a reader that may stop early (a refusal: too large, a full store): the
 * request is not destroyed then (that resets the connection, and the client never reads the
 * refusal); `sendError` reads the rest and drops it.
 */
function bodyOf(req: IncomingMessage): AsyncIterable<Uint8Array> {
  return req.iterator({ destroyOnReturn: false });
}

/** Reads a JSON request body of at most 1 MiB. Throws ControllerApiError 413 or 400. */
export async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of bodyOf(req)) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES)
      throw new ControllerApiError(
        413,
        "CONTROLLER_ERR_BAD_REQUEST",
        `the body is over ${MAX_BODY_BYTES} bytes`,
      );
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch (error) {
    throw new ControllerApiError(
      400,
      "CONTROLLER_ERR_BAD_REQUEST",
      `the body is not JSON: ${(error as Error).message}`,
    );
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(text),
  });
  res.end(text);
}

function sendError(res: ServerResponse, error: unknown): void {
  const apiError =
    error instanceof ControllerApiError
      ? error
      : new ControllerApiError(500, "CONTROLLER_ERR_INTERNAL", `internal error: ${(error as Error).message}`);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  for (const [name, value] of Object.entries(apiError.headers)) res.setHeader(name, value);
  sendJson(res, apiError.status, apiError.toJSON());
}

function notFound(path: string): ControllerApiError {
  return new ControllerApiError(404, "CONTROLLER_ERR_NOT_FOUND", `nothing at ${path}`);
}

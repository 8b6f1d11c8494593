import { createReadStream } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { AGENT_VERSION, DISCOVERY_PATH, PROTOCOL_VERSION, PROTOCOLS_HEADER } from "../agent-core/index.ts";
import type { Controller } from "./controller.ts";
import { ControllerApiError } from "./errors.ts";
import type { JobEvent } from "./job-store.ts";

const MAX_BODY_BYTES = 1_048_576;

/**
 * The HTTP API:
 * - `POST /api/v1/jobs` submit (JSON body) -> 201 job record
 * - `GET /api/v1/jobs`, `GET /api/v1/jobs/:id` -> records
 * - `GET /api/v1/jobs/:id/log[?follow=1]` -> the raw output bytes (text/plain)
 * - `GET /api/v1/jobs/:id/events[?follow=1]` -> NDJSON events (steps, output, statuses)
 * - `POST /api/v1/jobs/:id/cancel` -> 202 job record
 * - `GET /api/v1/agents`, `GET /healthz`
 * - `GET /agents/v1/discovery`: what speaks here (an agent in `auto` mode asks once; Jenkins would
 *   answer with `X-Jenkins` instead)
 */
export function createApiHandler(controller: Controller) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    route(controller, req, res).catch((error: unknown) => sendError(res, error));
  };
}

async function route(controller: Controller, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", "http://localhost");
  const parts = url.pathname.split("/").filter(Boolean);
  const method = req.method ?? "GET";
  const follow = ["1", "true", "yes"].includes(url.searchParams.get("follow") ?? "");

  if (url.pathname === "/healthz" && method === "GET") return sendJson(res, 200, { ok: true });
  if (url.pathname === `/${DISCOVERY_PATH}` && method === "GET") {
    res.setHeader(PROTOCOLS_HEADER, String(PROTOCOL_VERSION));
    return sendJson(res, 200, {
      controller: "reference",
      protocols: [PROTOCOL_VERSION],
      version: AGENT_VERSION,
    });
  }
  if (parts[0] !== "api" || parts[1] !== "v1") throw notFound(url.pathname);
  const [, , collection, id, action] = parts;

  if (collection === "agents" && id === undefined && method === "GET")
    return sendJson(res, 200, { agents: controller.listAgents() });
  if (collection !== "jobs") throw notFound(url.pathname);
  if (id === undefined) {
    if (method === "GET") return sendJson(res, 200, { jobs: controller.listJobs() });
    if (method === "POST") {
      const record = controller.submit(await readJson(req));
      res.setHeader("Location", `/api/v1/jobs/${record.id}`);
      return sendJson(res, 201, record);
    }
    throw methodNotAllowed(method, url.pathname);
  }
  if (action === undefined && method === "GET") {
    const record = controller.getJob(id);
    if (!record) throw notFound(url.pathname);
    return sendJson(res, 200, record);
  }
  if (action === "cancel" && method === "POST") return sendJson(res, 202, controller.cancel(id));
  if (action === "log" && method === "GET") return sendLog(controller, id, follow, res);
  if (action === "events" && method === "GET") return sendEvents(controller, id, follow, res);
  throw notFound(url.pathname);
}

function sendLog(controller: Controller, id: string, follow: boolean, res: ServerResponse): void {
  if (!follow) {
    const path = controller.outputPath(id);
    res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
    createReadStream(path).pipe(res);
    return;
  }
  res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store" });
  const unsubscribe = controller.follow(
    id,
    {
      event: (event, data) => {
        if (event.type === "output" && data) res.write(data);
      },
      end: () => res.end(),
    },
    true,
  );
  res.on("close", unsubscribe);
}

function sendEvents(controller: Controller, id: string, follow: boolean, res: ServerResponse): void {
  res.writeHead(200, { "Content-Type": "application/x-ndjson", "Cache-Control": "no-store" });
  const unsubscribe = controller.follow(
    id,
    {
      event: (event: JobEvent) => res.write(`${JSON.stringify(event)}\n`),
      end: () => res.end(),
    },
    follow,
  );
  res.on("close", unsubscribe);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
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

function sendJson(res: ServerResponse, status: number, body: unknown): void {
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
  sendJson(res, apiError.status, apiError.toJSON());
}

function notFound(path: string): ControllerApiError {
  return new ControllerApiError(404, "CONTROLLER_ERR_NOT_FOUND", `nothing at ${path}`);
}

function methodNotAllowed(method: string, path: string): ControllerApiError {
  return new ControllerApiError(405, "CONTROLLER_ERR_BAD_REQUEST", `${method} is not allowed on ${path}`);
}

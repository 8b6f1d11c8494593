import type { IncomingMessage } from "node:http";
import WebSocket from "ws";
import type { AgentConfig } from "../config/config.ts";
import { agentSocketUrl } from "../config/config.ts";
import { AgentError, ControllerRefusedError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import {
  AGENT_WS_PATH,
  NAME_HEADER,
  PROTOCOL_HEADER,
  RESUME_HEADER,
  SECRET_HEADER,
} from "../protocol/index.ts";
import { PROTOCOL_VERSION } from "../version.ts";

/** HTTP answers to the upgrade that no retry can change. */
const REFUSAL_STATUSES = new Set([400, 401, 403, 404, 409, 410, 426]);

type Attempt = { ok: true; socket: WebSocket } | { ok: false; error: Error; final: boolean };

/**
 * Opens the agent's WebSocket to the controller. Retries transient failures (connection
 * refused, timeouts, 5xx including 503 while a controller shuts down or restarts) with capped,
 * jittered backoff until `connectTimeoutMs`; a refusal (400 missing headers, 403 wrong secret,
 * 404 no agent endpoint, 409 duplicate name, 426 protocol version) throws ControllerRefusedError at once.
 */
export async function connectToController(
  config: AgentConfig,
  logger: Logger,
  signal?: AbortSignal,
  options: { resumeJobId?: string; timeoutMs?: number } = {},
): Promise<WebSocket> {
  const url = agentSocketUrl(config.url, AGENT_WS_PATH);
  const timeoutMs = options.timeoutMs ?? config.connectTimeoutMs;
  const giveUpAt = Date.now() + timeoutMs;
  let delayMs = 250;
  for (let attempt = 1; ; attempt++) {
    const result = await attemptConnect(url, config, options.resumeJobId);
    if (result.ok) {
      logger.info("connected to the controller", { url, attempt });
      return result.socket;
    }
    if (result.final) throw result.error;
    const waitMs = Math.min(delayMs, giveUpAt - Date.now());
    if (waitMs <= 0 || signal?.aborted) {
      throw new AgentError(
        "AGENT_ERR_CONTROLLER_UNREACHABLE",
        `cannot reach the controller at ${url} after ${attempt} attempt(s) in ${timeoutMs} ms: ${result.error.message}`,
        { cause: result.error },
      );
    }
    logger.warn("controller not reachable yet; retrying", {
      url,
      attempt,
      error: result.error.message,
      retryInMs: waitMs,
    });
    await sleep(waitMs * (0.5 + Math.random() / 2), signal);
    delayMs = Math.min(delayMs * 2, 5_000);
  }
}

function attemptConnect(url: string, config: AgentConfig, resumeJobId: string | undefined): Promise<Attempt> {
  return new Promise((resolve) => {
    const socket = new WebSocket(url, {
      perMessageDeflate: false,
      handshakeTimeout: config.handshakeTimeoutMs,
      maxPayload: config.maxPayloadBytes,
      headers: {
        [NAME_HEADER]: config.name,
        [SECRET_HEADER]: config.secret,
        [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
        ...(resumeJobId !== undefined ? { [RESUME_HEADER]: resumeJobId } : {}),
      },
    });
    const done = (result: Attempt) => {
      socket.removeAllListeners("open");
      socket.removeAllListeners("unexpected-response");
      socket.removeAllListeners("error");
      socket.on("error", () => {}); // late errors of a socket we gave up on
      resolve(result);
    };
    socket.once("open", () => done({ ok: true, socket }));
    socket.once("unexpected-response", (_req, res: IncomingMessage) => {
      readBody(res).then((body) => {
        socket.terminate();
        done(refusalFor(res, body, url));
      });
    });
    socket.once("error", (error) => done({ ok: false, error, final: false }));
  });
}

function refusalFor(res: IncomingMessage, body: string, url: string): Attempt {
  const status = res.statusCode ?? 0;
  const detail = body.trim() ? `: ${body.trim()}` : "";
  if (res.headers["x-jenkins"] !== undefined) {
    return {
      ok: false,
      final: true,
      error: new ControllerRefusedError(
        status,
        `${url} is a Jenkins controller (X-Jenkins: ${res.headers["x-jenkins"]}); this agent speaks protocol v1 of the reference controller`,
      ),
    };
  }
  if (REFUSAL_STATUSES.has(status)) {
    const why =
      status === 403
        ? "the secret is wrong for this agent name"
        : status === 409
          ? "an agent with this name is already connected"
          : status === 404
            ? "there is no agent endpoint at this URL"
            : status === 426
              ? "the controller speaks another protocol version"
              : "the request was rejected";
    return {
      ok: false,
      final: true,
      error: new ControllerRefusedError(
        status,
        `the controller refused the agent (HTTP ${status}, ${why})${detail}`,
      ),
    };
  }
  return { ok: false, final: false, error: new Error(`the controller answered HTTP ${status}${detail}`) };
}

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on("data", (chunk: Buffer) => {
      if (size < 2048) chunks.push(chunk);
      size += chunk.length;
    });
    res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8").slice(0, 500)));
    res.on("error", () => resolve(""));
    setTimeout(() => resolve(Buffer.concat(chunks).toString("utf8").slice(0, 500)), 1000).unref();
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

import type { Agent, IncomingMessage } from "node:http";
import WebSocket from "ws";
import type { AgentConfig } from "../config/config.ts";
import { agentSocketUrl } from "../config/config.ts";
import { AgentError, ControllerRefusedError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { connectWindow, sleep } from "../net/connect-window.ts";
import { proxyFor, proxyShown, tunnelAgentFor } from "../net/proxy.ts";
import {
  AGENT_WS_PATH,
  encodeNameHeader,
  NAME_HEADER,
  PROTOCOL_HEADER,
  RESUME_HEADER,
  SECRET_HEADER,
} from "../protocol/index.ts";
import { PROTOCOL_VERSION } from "../version.ts";
import { frameMaskingFor, zeroMaskingKey } from "./frame-masking.ts";

/** HTTP answers to the upgrade that no retry can change. */
const REFUSAL_STATUSES = new Set([400, 401, 403, 404, 409, 410, 426]);
/** How much of a refusal's body is read, and for how long at most. */
const REFUSAL_BODY_CHARS = 500;
const REFUSAL_BODY_WAIT_MS = 1_000;

type Attempt<T> =
  | { ok: true; value: T }
  | {
      ok: false;
      error: Error;
      final: boolean /** The attempt ran out of its own time. */;
      timedOut?: boolean;
    }
  | { ok: false; aborted: true };

export interface ConnectOptions<T> {
  /** Aborting ends the connect phase at once: the attempt in flight is dropped. */
  signal?: AbortSignal | undefined;
  /** Set when reconnecting mid-job: the job whose session is resumed (`X-Agent-Resume`). */
  resumeJobId?: string;
  /** How long to keep trying (default `config.connectTimeoutMs`; 0: one attempt). */
  timeoutMs?: number;
  /** Epoch ms past which no attempt runs, whatever `timeoutMs` says (the caller's own deadline). */
  notAfter?: number | null;
  /**
   * Takes over the open socket, synchronously in its `open` event, before any frame can be read
   * (a frame the controller sent right behind the 101 would otherwise go unheard).
   */
  adopt: (socket: WebSocket) => T;
}

/**
 * Opens the agent's WebSocket to the controller (through the environment's proxy, if any).
 * Retries transient failures (connection refused, timeouts, 5xx including 503 while a
 * controller shuts down or restarts) with capped, jittered backoff until `timeoutMs`; a refusal
 * (400 missing headers, 403 wrong secret, 404 no agent endpoint, 409 duplicate name, 426 protocol
 * version) throws ControllerRefusedError at once. Every attempt has a total deadline
 * (`handshakeTimeoutMs`, and never past the connect phase's end), however slowly the peer
 * answers, and aborting `signal` ends the attempt in flight.
 *
 * @throws {@link ControllerRefusedError} on a refusal; {@link AgentError} `AGENT_ERR_CONTROLLER_UNREACHABLE`
 * when the time is up, `AGENT_ERR_INTERRUPTED` when `signal` was aborted.
 */
export async function connectToController<T>(
  config: AgentConfig,
  logger: Logger,
  options: ConnectOptions<T>,
): Promise<T> {
  const url = agentSocketUrl(config.url, AGENT_WS_PATH);
  const timeoutMs = options.timeoutMs ?? config.connectTimeoutMs;
  const window = connectWindow(timeoutMs, config.handshakeTimeoutMs);
  const { signal } = options;
  let delayMs = 250;
  let agent: Agent | undefined;
  const proxy = proxyFor(url);
  try {
    agent = await tunnelAgentFor(url);
  } catch (error) {
    throw new AgentError("AGENT_ERR_CONFIG", `cannot use the proxy for ${url}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const frameMasking = frameMaskingFor(url, agent === undefined);
  // The cause named at the end: an attempt cut short by the end of the connect phase says less
  // than the attempt before it (a 502 page, a refused connection).
  let cause: Error | undefined;
  for (let attempt = 1; ; attempt++) {
    if (signal?.aborted) throw interrupted(url);
    const attemptMs = window.attemptMs(options.notAfter);
    const result = await attemptConnect(url, config, agent, frameMasking, attemptMs, options, proxy);
    if (result.ok) {
      logger.info("connected to the controller", { url, attempt, frameMasking });
      return result.value;
    }
    if ("aborted" in result) throw interrupted(url);
    if (result.final) throw result.error;
    if (cause === undefined || !(attemptMs < config.handshakeTimeoutMs && result.timedOut))
      cause = result.error;
    const waitMs = window.retryWaitMs(delayMs);
    if (waitMs === null) {
      throw new AgentError(
        "AGENT_ERR_CONTROLLER_UNREACHABLE",
        `cannot reach the controller at ${url} after ${attempt} attempt(s) in ${timeoutMs} ms: ${cause.message}`,
        { cause },
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

function interrupted(url: string): AgentError {
  return new AgentError("AGENT_ERR_INTERRUPTED", `interrupted while connecting to ${url}`);
}

/** One attempt, over within `attemptMs` whatever the peer does (a peer that answers one byte a second included). */
function attemptConnect<T>(
  url: string,
  config: AgentConfig,
  agent: Agent | undefined,
  frameMasking: "random" | "zero-key",
  attemptMs: number,
  options: ConnectOptions<T>,
  proxy: string | null,
): Promise<Attempt<T>> {
  return new Promise((resolve) => {
    let socket: WebSocket;
    try {
      socket = new WebSocket(url, {
        perMessageDeflate: false,
        maxPayload: config.maxPayloadBytes,
        ...(agent !== undefined ? { agent } : {}),
        // See frame-masking.ts for when frames are sent with the zero key, and why.
        ...(frameMasking === "zero-key" ? { generateMask: zeroMaskingKey } : {}),
        headers: {
          [NAME_HEADER]: encodeNameHeader(config.name),
          [SECRET_HEADER]: config.secret,
          [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
          ...(options.resumeJobId !== undefined ? { [RESUME_HEADER]: options.resumeJobId } : {}),
        },
      });
    } catch (error) {
      resolve({ ok: false, error: error as Error, final: true });
      return;
    }
    let settled = false;
    const done = (result: Attempt<T>) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      options.signal?.removeEventListener("abort", onAbort);
      // Only this attempt's own listeners: the session adopted in `open` keeps its own.
      socket.off("open", onOpen);
      socket.off("unexpected-response", onRefusal);
      socket.off("error", onError);
      if (!result.ok) {
        socket.on("error", () => {}); // late errors of a socket given up on
        socket.terminate();
      }
      resolve(result);
    };
    const deadline = setTimeout(
      () =>
        done({
          ok: false,
          final: false,
          timedOut: true,
          error: new Error(`the WebSocket handshake did not complete within ${attemptMs} ms`),
        }),
      attemptMs,
    );
    const onAbort = () => done({ ok: false, aborted: true });
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const onOpen = () => {
      let value: T;
      try {
        value = options.adopt(socket);
      } catch (error) {
        done({ ok: false, error: error as Error, final: true });
        return;
      }
      done({ ok: true, value });
    };
    const onRefusal = (_req: unknown, res: IncomingMessage) => {
      readBody(res, Math.min(REFUSAL_BODY_WAIT_MS, attemptMs)).then((body) => {
        res.destroy();
        done(refusalFor(res, body, url, proxy));
      });
    };
    const onError = (error: Error) => done({ ok: false, error, final: false });
    socket.once("open", onOpen);
    socket.once("unexpected-response", onRefusal);
    socket.once("error", onError);
  });
}

function refusalFor<T>(res: IncomingMessage, body: string, url: string, proxy: string | null): Attempt<T> {
  const status = res.statusCode ?? 0;
  const detail = body.trim() ? `: ${body.trim()}` : "";
  if (status === 407) {
    // Only a proxy answers 407 (RFC 9110): its CONNECT wants credentials it did not get or took
    // for wrong. No retry changes that; it is the proxy variable that needs fixing.
    const shown = proxy === null ? "a proxy" : `the proxy ${proxyShown(proxy)}`;
    const has = proxy !== null && /^[a-z][a-z0-9+.-]*:\/\/[^/@]+@/i.test(proxy);
    return {
      ok: false,
      final: true,
      error: new AgentError(
        "AGENT_ERR_CONFIG",
        `${shown} refused to open a tunnel to ${url} (HTTP 407, Proxy Authentication Required): ${has ? "the credentials in the proxy URL were not accepted" : "give its credentials in the proxy URL (http://user:password@host:port)"}`,
      ),
    };
  }
  // Through a proxy, an answer may be the proxy's own (502 when it cannot reach the controller).
  const via = proxy === null ? "" : ` (through the proxy ${proxyShown(proxy)})`;
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
  return {
    ok: false,
    final: false,
    error: new Error(`the controller${via} answered HTTP ${status}${detail}`),
  };
}

/** Up to REFUSAL_BODY_CHARS of the body, waiting at most `waitMs`. */
function readBody(res: IncomingMessage, waitMs: number): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString("utf8").slice(0, REFUSAL_BODY_CHARS));
    };
    const timer = setTimeout(finish, waitMs);
    res.on("data", (chunk: Buffer) => {
      if (size < 2048) chunks.push(chunk);
      size += chunk.length;
    });
    res.on("end", finish);
    res.on("error", finish);
  });
}

import { get as httpGet, type IncomingMessage } from "node:http";
import { get as httpsGet } from "node:https";
import { AgentError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { connectWindow, sleep } from "../net/connect-window.ts";
import { requestAgentFor } from "../net/proxy.ts";

export interface RetryOptions {
  /** Keep retrying an unreachable controller this long (the agent's connect timeout; 0: one attempt). */
  timeoutMs: number;
  /** One request's own bound (the agent's handshake timeout). */
  attemptMs: number;
  signal?: AbortSignal;
  logger: Logger;
}

/**
 * Calls `ask` (one request to the controller at `url`, bounded by the ms it is given) until it
 * resolves: a failure to reach the controller is retried with capped, jittered backoff until
 * `timeoutMs` (0: one attempt of `attemptMs`), then throws AgentError
 * `AGENT_ERR_CONTROLLER_UNREACHABLE` naming the last cause.
 * Auto mode decides on the first answer, so it must get one.
 *
 * @example
 * const answer = await untilAnswered(url, (ms) => askForAgentJar({ ...options, timeoutMs: ms }), { timeoutMs: 60_000, attemptMs: 10_000, logger });
 */
export async function untilAnswered<T>(
  url: string,
  ask: (attemptMs: number) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const window = connectWindow(options.timeoutMs, options.attemptMs);
  let delayMs = 250;
  // The cause named at the end: an attempt cut short by the end of the time says less than the one before it.
  let cause: unknown;
  for (let attempt = 1; ; attempt++) {
    const attemptMs = window.attemptMs();
    try {
      return await ask(attemptMs);
    } catch (error) {
      if (options.signal?.aborted)
        throw new AgentError("AGENT_ERR_INTERRUPTED", "interrupted", { cause: error });
      const why = describeFetchError(error);
      if (cause === undefined || !(attemptMs < options.attemptMs && (error as Error).name === "AbortError")) {
        cause = error;
      }
      const waitMs = window.retryWaitMs(delayMs);
      if (waitMs === null) {
        throw new AgentError(
          "AGENT_ERR_CONTROLLER_UNREACHABLE",
          `cannot reach the controller at ${url} after ${attempt} attempt(s) in ${options.timeoutMs} ms: ${describeFetchError(cause)}`,
          { cause },
        );
      }
      options.logger.warn("controller not reachable yet; retrying", {
        url,
        attempt,
        error: why,
        retryInMs: waitMs,
      });
      await sleep(waitMs * (0.5 + Math.random() / 2), options.signal);
      delayMs = Math.min(delayMs * 2, 5_000);
    }
  }
}

/** A path below the controller's URL, which is treated as a directory (Jenkins' own rule). */
export function underController(controllerUrl: string, path: string): string {
  const url = new URL(controllerUrl);
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  url.pathname += path;
  url.search = "";
  url.hash = "";
  return url.toString();
}

/**
 * `GET url` with node:http(s), which is already loaded (fetch's first use costs about 70 ms more
 * in a fresh process, on the path to the first request), through the proxy the environment names
 * for it (`requestAgentFor`). Resolves with the response, its body unread. `timeoutMs` bounds the
 * wait for the answer (status and headers); the body is the caller's to bound (it reads it, or
 * destroys the response). `signal` aborts the request at any time, body included (the request
 * is destroyed with an `AbortError`).
 */
export async function getUrl(
  url: string,
  options: { headers?: Record<string, string>; timeoutMs: number; signal?: AbortSignal },
): Promise<IncomingMessage> {
  const target = new URL(url);
  const get = target.protocol === "https:" ? httpsGet : httpGet;
  const agent = await requestAgentFor(url);
  return new Promise((resolve, reject) => {
    const req = get(target, { headers: options.headers ?? {}, ...(agent ? { agent } : {}) }, (res) => {
      clearTimeout(timer); // answered: the caller bounds the body
      resolve(res);
    });
    const abortFor = (why: string) => {
      const error = new Error(why);
      error.name = "AbortError";
      req.destroy(error);
    };
    const abort = () => abortFor("interrupted");
    // Timer and listener go with the socket, whether the body is read, dropped or fails.
    const timer = setTimeout(() => abortFor(`no answer within ${options.timeoutMs} ms`), options.timeoutMs);
    options.signal?.addEventListener("abort", abort, { once: true });
    if (options.signal?.aborted) abort();
    req.once("close", () => {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", abort);
    });
    req.on("error", reject);
  });
}

/** A failed request in a few words: the system error's code, or that it timed out. */
export function describeFetchError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if ((error as Error).name === "AbortError") return (error as Error).message || "interrupted";
  if (code) return `${code}${(error as Error).message ? ` (${(error as Error).message})` : ""}`;
  return (error as Error).message ?? String(error);
}

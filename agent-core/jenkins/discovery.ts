import { get as httpGet, type IncomingMessage } from "node:http";
import { get as httpsGet } from "node:https";
import { AgentError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { requestAgentFor } from "../net/proxy.ts";
import { DISCOVERY_PATH, PROTOCOLS_HEADER } from "../protocol/index.ts";

/** What answered at the controller URL, and how we know. */
export type ControllerKind =
  | { kind: "jenkins"; jenkinsVersion: string; how: string }
  | { kind: "native"; how: string };

export interface DetectOptions {
  /** Keep retrying an unreachable controller this long (the agent's connect timeout). */
  timeoutMs: number;
  /** Each request's own bound. */
  attemptTimeoutMs?: number;
  signal?: AbortSignal;
  logger: Logger;
}

/**
 * Decides with one request whether `url` is a Jenkins controller or the reference controller:
 * `GET <url>agents/v1/discovery`. Jenkins answers every request (a 404 here) with an `X-Jenkins`
 * header; the reference controller answers 200 with `X-Agent-Protocols`. Any other answer (an
 * older reference controller, a proxy) counts as native: the native connection then reports what
 * is wrong in its own words. A `ws(s)://` URL is native without a request. An unreachable URL is
 * retried with capped, jittered backoff until `timeoutMs`, then throws AgentError
 * `AGENT_ERR_CONTROLLER_UNREACHABLE`.
 *
 * @example
 * const found = await detectController("https://jenkins.example.com/", { timeoutMs: 60_000, logger });
 * if (found.kind === "jenkins") console.log(found.jenkinsVersion); // "2.479.3"
 */
export async function detectController(url: string, options: DetectOptions): Promise<ControllerKind> {
  const target = new URL(url);
  if (target.protocol === "ws:" || target.protocol === "wss:") {
    return { kind: "native", how: `${target.protocol}// URL (Jenkins is reached over http(s))` };
  }
  const probe = discoveryUrl(url);
  const giveUpAt = Date.now() + options.timeoutMs;
  let delayMs = 250;
  for (let attempt = 1; ; attempt++) {
    const attemptMs = Math.max(1, Math.min(options.attemptTimeoutMs ?? 10_000, giveUpAt - Date.now()));
    try {
      const res = await getUrl(probe, {
        timeoutMs: attemptMs,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      res.resume();
      const jenkins = res.headers["x-jenkins"];
      if (typeof jenkins === "string") {
        return {
          kind: "jenkins",
          jenkinsVersion: jenkins,
          how: `X-Jenkins: ${jenkins} (HTTP ${res.statusCode})`,
        };
      }
      const protocols = res.headers[PROTOCOLS_HEADER];
      return {
        kind: "native",
        how:
          typeof protocols === "string"
            ? `${PROTOCOLS_HEADER}: ${protocols}`
            : `HTTP ${res.statusCode} without X-Jenkins (not a Jenkins controller)`,
      };
    } catch (error) {
      if (options.signal?.aborted) throw new AgentError("AGENT_ERR_CONTROLLER_UNREACHABLE", "interrupted");
      const why = describeFetchError(error);
      const waitMs = Math.min(delayMs, giveUpAt - Date.now());
      if (waitMs <= 0) {
        throw new AgentError(
          "AGENT_ERR_CONTROLLER_UNREACHABLE",
          `cannot reach the controller at ${url} after ${attempt} attempt(s) in ${options.timeoutMs} ms: ${why}`,
          { cause: error },
        );
      }
      options.logger.warn("controller not reachable yet; retrying", {
        url: probe,
        attempt,
        error: why,
        retryInMs: waitMs,
      });
      await pause(waitMs * (0.5 + Math.random() / 2), options.signal);
      delayMs = Math.min(delayMs * 2, 5_000);
    }
  }
}

/** `http://h/base` -> `http://h/base/agents/v1/discovery` (query and fragment dropped). */
export function discoveryUrl(controllerUrl: string): string {
  return underController(controllerUrl, DISCOVERY_PATH);
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
 * for it (`requestAgentFor`). Resolves with the response, its body unread; the whole exchange,
 * body included, is bounded by `timeoutMs` and `signal`.
 */
export async function getUrl(
  url: string,
  options: { headers?: Record<string, string>; timeoutMs: number; signal?: AbortSignal },
): Promise<IncomingMessage> {
  const target = new URL(url);
  const get = target.protocol === "https:" ? httpsGet : httpGet;
  const signal = anySignal(AbortSignal.timeout(options.timeoutMs), options.signal);
  const agent = await requestAgentFor(url);
  return new Promise((resolve, reject) => {
    const req = get(target, { headers: options.headers ?? {}, signal, ...(agent ? { agent } : {}) }, resolve);
    req.on("error", reject);
  });
}

/** A failed request in a few words: the system error's code, or that it timed out. */
export function describeFetchError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if ((error as Error).name === "AbortError") return "timed out or interrupted";
  if (code) return `${code}${(error as Error).message ? ` (${(error as Error).message})` : ""}`;
  return (error as Error).message ?? String(error);
}

export function anySignal(a: AbortSignal, b: AbortSignal | undefined): AbortSignal {
  return b === undefined ? a : AbortSignal.any([a, b]);
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
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

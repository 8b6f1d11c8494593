import type { Agent } from "node:http";
import { getProxyForUrl } from "proxy-from-env";
import { clip } from "../clip.ts";
import type { ConfigProblem } from "../errors.ts";

/**
 * Outbound connections through the proxy the environment names, as curl, npm and the AWS CLI
 * read it: `HTTPS_PROXY` for https (and wss) URLs, `HTTP_PROXY` for http (and ws) URLs, `ALL_PROXY`
 * for both, `NO_PROXY` for the hosts reached directly; each in upper or lower case. The proxy
 * libraries (`proxy-from-env`, `proxy-agent`) read them from the process environment when a
 * connection is made (the WebSocket to the controller, Jenkins mode's requests, the AWS SDK); the wrappers check them once at start ({@link proxyProblems}).
 */

/** The variables that name a proxy, in both cases. */
export const PROXY_VARIABLES = [
  "HTTPS_PROXY",
  "https_proxy",
  "HTTP_PROXY",
  "http_proxy",
  "ALL_PROXY",
  "all_proxy",
] as const;

/**
 * The proxy for a connection to `url`, or null for a direct one. `ws:` and `wss:` URLs use the
 * variables of `http:` and `https:` (a WebSocket is an HTTP request first).
 *
 * @example
 * proxyFor("wss://ci.example.com/agents/v1"); // "http://proxy.corp:3128" with HTTPS_PROXY set
 */
export function proxyFor(url: string): string | null {
  const target = new URL(url);
  if (target.protocol === "ws:") target.protocol = "http:";
  else if (target.protocol === "wss:") target.protocol = "https:";
  const proxy = getProxyForUrl(target.href);
  return proxy === "" ? null : proxy;
}

/**
 * The agent for a WebSocket to `url`: an HTTP CONNECT tunnel through the proxy, or undefined to
 * connect directly. A WebSocket goes through a proxy in a tunnel for ws: URLs too (RFC 6455
 * section 4.1): forward proxies drop the `Upgrade` header. The proxy library is loaded only when
 * a proxy applies.
 */
export async function tunnelAgentFor(url: string): Promise<Agent | undefined> {
  const proxy = proxyFor(url);
  if (proxy === null) return undefined;
  const { HttpsProxyAgent } = await import("https-proxy-agent");
  return new HttpsProxyAgent(proxy);
}

/**
 * The agent for a plain HTTP(S) request to `url` (node:http's or node:https's `get`), or undefined
 * to connect directly: an http: URL goes to an HTTP proxy as a forwarded request (absolute URI),
 * an https: URL through a CONNECT tunnel. The proxy library is loaded only when a proxy applies.
 * For Jenkins mode's requests (the mode check, the agent.jar download).
 *
 * @example
 * const agent = await requestAgentFor("http://jenkins.example.com/jnlpJars/agent.jar");
 * get(url, { agent }, onResponse); // through HTTP_PROXY when it is set and NO_PROXY does not match
 */
export async function requestAgentFor(url: string): Promise<Agent | undefined> {
  const proxy = proxyFor(url);
  if (proxy === null) return undefined;
  const { ProxyAgent } = await import("proxy-agent");
  return new ProxyAgent({ getProxyForUrl: () => proxy });
}

/**
 * Agents for the AWS SDK's request handler (`requestHandler: { httpAgent, httpsAgent }`) that
 * pick the proxy per request from the environment, or undefined when no proxy variable is set
 * (then the SDK connects directly, and the proxy library is not even loaded). For every AWS SDK
 * client the agent creates (CloudWatch Logs today).
 *
 * @example
 * const agents = await awsProxyAgents();
 * new CloudWatchLogsClient({ region, requestHandler: { ...agents, requestTimeout: 10_000 } });
 */
export async function awsProxyAgents(
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<{ httpAgent: Agent; httpsAgent: Agent } | undefined> {
  if (!PROXY_VARIABLES.some((name) => (env[name] ?? "").trim() !== "")) return undefined;
  const { ProxyAgent } = await import("proxy-agent");
  const agent = new ProxyAgent();
  return { httpAgent: agent, httpsAgent: agent };
}

/**
 * Checks the proxy variables of `env`: each one set must be an `http://` or `https://` URL with a
 * host (the proxies that tunnel with CONNECT). Problems name the variable and show the value
 * with any password masked.
 *
 * @example
 * proxyProblems({ HTTPS_PROXY: "proxy:3128" });
 * // [{ field: "HTTPS_PROXY", message: "Expected an http:// or https:// proxy URL, got `proxy:3128`" }]
 */
export function proxyProblems(env: Readonly<Record<string, string | undefined>>): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const name of PROXY_VARIABLES) {
    const value = env[name];
    if (value === undefined || value.trim() === "") continue;
    let url: URL | undefined;
    try {
      url = new URL(value.trim());
    } catch {
      url = undefined;
    }
    if (url !== undefined && (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "")
      continue;
    problems.push({
      field: name,
      message: `Expected an http:// or https:// proxy URL (such as http://proxy.example.com:3128), got ${shownProxy(value)}`,
    });
  }
  return problems;
}

/** A proxy URL as it may be shown: without its password, clipped. */
function shownProxy(value: string): string {
  const masked = value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@/]*@/i, "$1***@");
  return `\`${clip(masked)}\``;
}

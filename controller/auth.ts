/// <reference path="./rate-limiter-memory.d.ts" />
import { createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { isIP } from "node:net";
import type { RateLimiterRes } from "rate-limiter-flexible";
import RateLimiterMemory from "rate-limiter-flexible/lib/RateLimiterMemory.js";
import { isLoopbackHost } from "../agent-core/index.ts";
import { ControllerApiError } from "./errors.ts";
import type { Route } from "./http-api.ts";

/** Shortest API token accepted: a token is a password that cannot be rate-limited by a person. */
export const MIN_TOKEN_CHARS = 16;

/** The web view's session cookie (HttpOnly, SameSite=Strict): an HMAC of the token, never the token. */
export const SESSION_COOKIE = "controller_session";

export interface ApiAuth {
  /** The API token: `Authorization: Bearer <token>`, or the session cookie `POST /login` sets. */
  token: string;
  /** Mark the session cookie `Secure` (the controller serves TLS). */
  secureCookie: boolean;
}

/**
 * Checks the listening rules before the controller binds: a token is long enough, and a
 * controller reachable from other machines has one unless `insecure` says something else guards
 * it. Throws ControllerApiError `CONTROLLER_ERR_CONFIG`.
 */
export function checkListenSecurity(host: string, token: string | undefined, insecure: boolean): void {
  if (token !== undefined && token.length < MIN_TOKEN_CHARS)
    throw new ControllerApiError(
      400,
      "CONTROLLER_ERR_CONFIG",
      `Expected the API token to have at least ${MIN_TOKEN_CHARS} characters, got ${token.length}`,
    );
  if (token === undefined && !insecure && !isLoopbackHost(host))
    throw new ControllerApiError(
      400,
      "CONTROLLER_ERR_CONFIG",
      `refusing to listen on ${host} without an API token: anyone who reaches it could run commands on your agents and read every log. Set CONTROLLER_TOKEN (or --token-file), or pass --insecure when something else guards the port`,
    );
}

/** How many wrong API tokens one client may send, and for how long it then waits. */
export interface TokenGuessLimit {
  /** Wrong tokens accepted within `windowMs`; the next attempts wait. Default 10. */
  failures: number;
  /** The window, and how long a client that reached `failures` waits. Default 5 minutes. */
  windowMs: number;
}

export const DEFAULT_TOKEN_GUESS_LIMIT: TokenGuessLimit = { failures: 10, windowMs: 5 * 60_000 };

/**
 * Counts wrong API tokens (at `POST /login` and as `Authorization: Bearer`) per client address
 * (an IPv6 client per /64, what one host is usually given), so that a short token cannot be
 * guessed at the speed of the network. A client that sent `failures` wrong tokens within
 * `windowMs` gets 429 `CONTROLLER_ERR_RATE_LIMITED` with `Retry-After` for every token it sends
 * in the next `windowMs`, right or wrong (a right one would otherwise tell the guesser it found
 * it). Session cookies are not counted: they are HMACs, not guessable, and a tab left open
 * across a token change keeps sending an old one. Counts live in memory: a restart forgets them.
 */
export class TokenGuesses {
  readonly #limit: TokenGuessLimit;
  readonly #counts: RateLimiterMemory;

  constructor(limit: TokenGuessLimit = DEFAULT_TOKEN_GUESS_LIMIT) {
    this.#limit = limit;
    const seconds = limit.windowMs / 1000;
    this.#counts = new RateLimiterMemory({ points: limit.failures, duration: seconds });
  }

  /** Throws 429 while the client of `req` must wait. */
  async check(req: IncomingMessage): Promise<void> {
    const count = await this.#counts.get(clientKey(req));
    if (count === null || count.consumedPoints < this.#limit.failures) return;
    const seconds = Math.max(1, Math.ceil(count.msBeforeNext / 1000));
    throw new ControllerApiError(
      429,
      "CONTROLLER_ERR_RATE_LIMITED",
      `too many wrong API tokens from this address: try again in ${seconds} s`,
      [],
      { "Retry-After": String(seconds) },
    );
  }

  /** Counts a wrong token from the client of `req`; the one that reaches the limit starts a full wait. */
  async failed(req: IncomingMessage): Promise<void> {
    const key = clientKey(req);
    // consume() rejects with the count once it is over the limit.
    const count = await this.#counts.consume(key).catch((over: RateLimiterRes) => over);
    if (count.consumedPoints >= this.#limit.failures)
      await this.#counts.block(key, this.#limit.windowMs / 1000);
  }
}

/** Who sent `req`, as the limiter counts: its address; for IPv6, its /64. */
export function clientKey(req: IncomingMessage): string {
  const address = (req.socket.remoteAddress ?? "unknown").replace(/%.*$/, "");
  if (isIP(address) !== 6) return address;
  let canonical: string;
  try {
    canonical = new URL(`http://[${address}]`).hostname.slice(1, -1);
  } catch {
    return address;
  }
  if (/^::ffff:/.test(canonical)) return canonical;
  const [head = "", tail] = canonical.split("::");
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups =
    tail === undefined
      ? headGroups
      : [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill("0"), ...tailGroups];
  return `${groups.slice(0, 4).join(":")}::/64`;
}

/** The session cookie's value for `token`: proves the token was given without being it. */
export function sessionValue(token: string): string {
  return createHmac("sha256", token).update("controller web session v1").digest("hex");
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookieValue(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Lets a request through or throws 401 `CONTROLLER_ERR_UNAUTHORIZED` without credentials or with
 * wrong ones. The token is compared in constant time and never echoed. (Changes sent from another
 * origin are refused before, by `checkRequestSource`.)
 */
export function authorize(auth: ApiAuth, req: IncomingMessage): void {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (match === null || !sameSecret(match[1]!, auth.token))
      throw new ControllerApiError(401, "CONTROLLER_ERR_UNAUTHORIZED", "the API token is wrong");
    return;
  }
  const cookie = cookieValue(req, SESSION_COOKIE);
  if (cookie === undefined)
    throw new ControllerApiError(
      401,
      "CONTROLLER_ERR_UNAUTHORIZED",
      "this controller needs its API token: send `Authorization: Bearer <token>`",
    );
  if (!sameSecret(cookie, sessionValue(auth.token)))
    throw new ControllerApiError(
      401,
      "CONTROLLER_ERR_UNAUTHORIZED",
      "the session is not valid: sign in again",
    );
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** Who may use the API, and from where: built once at start by `apiAccess`. */
export interface ApiAccess {
  /** The API token: every route that is not `public` needs it. */
  auth?: ApiAuth;
  /**
   * When the controller listens on loopback: the names besides loopback ones (`localhost`,
   * `*.localhost`, 127.0.0.0/8, `[::1]`) that a request's `Host` may carry, lowercased. Undefined
   * when it listens beyond loopback (it answers to whatever name reaches it).
   */
  hostNames?: ReadonlySet<string>;
  /** Origins besides the request's own `Host` that may send changes: the public URL's. */
  trustedOrigins: ReadonlySet<string>;
  /** Wrong tokens per client, with `auth`. */
  guesses?: TokenGuesses;
}

/**
 * The access rules for a controller listening on `host`: its token, and when `host` is loopback,
 * the names it answers to (`publicUrl`'s name and `allowedHosts`, beside loopback names).
 */
export function apiAccess(options: {
  host: string;
  auth?: ApiAuth | undefined;
  publicUrl?: string | undefined;
  allowedHosts?: readonly string[] | undefined;
  tokenGuessLimit?: TokenGuessLimit | undefined;
}): ApiAccess {
  const publicUrl = options.publicUrl === undefined ? undefined : new URL(options.publicUrl);
  const trustedOrigins = new Set<string>();
  if (publicUrl !== undefined)
    trustedOrigins.add(new URL(publicUrl.href.replace(/^ws(s?):/, "http$1:")).origin);
  let hostNames: Set<string> | undefined;
  if (isLoopbackHost(options.host)) {
    hostNames = new Set((options.allowedHosts ?? []).map((name) => hostnameOf(name)));
    if (publicUrl !== undefined) hostNames.add(hostnameOf(publicUrl.host));
  }
  return {
    ...(options.auth !== undefined
      ? { auth: options.auth, guesses: new TokenGuesses(options.tokenGuessLimit) }
      : {}),
    ...(hostNames !== undefined ? { hostNames } : {}),
    trustedOrigins,
  };
}

/** The lowercased name in a `Host` value (`name:port`, `[::1]:port`), brackets kept for IPv6. */
function hostnameOf(host: string): string {
  try {
    return new URL(`http://${host}`).hostname.toLowerCase();
  } catch {
    return host.toLowerCase();
  }
}

/**
 * Refuses, with 403 `CONTROLLER_ERR_FORBIDDEN`, what a web page of another site could make a
 * browser send:
 * - on a controller listening on loopback, a request whose `Host` names neither a loopback name
 *   nor one of `access.hostNames`: a page whose own name was made to resolve to 127.0.0.1 (DNS
 *   rebinding) shares an origin with the controller, but its requests still carry its name;
 * - a change (any method but GET, HEAD, OPTIONS) sent by a page of another origin: any page can
 *   send a form or a `no-cors` fetch without asking; browsers mark such requests with `Origin`
 *   and `Sec-Fetch-Site`, which programs like the CLI and curl do not send. This holds with and
 *   without a token: a controller on loopback without one would otherwise run the jobs of any
 *   page its user opens.
 */
export function checkRequestSource(access: ApiAccess, req: IncomingMessage): void {
  const host = req.headers.host;
  if (access.hostNames !== undefined && host !== undefined) {
    const name = hostnameOf(host);
    if (!isLoopbackHost(name) && !name.endsWith(".localhost") && !access.hostNames.has(name))
      throw new ControllerApiError(
        403,
        "CONTROLLER_ERR_FORBIDDEN",
        `this controller listens on loopback and answers to loopback names (localhost, 127.0.0.1, [::1]) and its configured ones (\`url\`, \`listen.allowedHosts\`), not ${JSON.stringify(host)}`,
      );
  }
  if (SAFE_METHODS.has(req.method ?? "GET")) return;
  const origin = req.headers.origin;
  const site = req.headers["sec-fetch-site"];
  // The public URL's origin counts as the controller's own: behind a proxy that rewrites `Host`,
  // its pages' `Origin` names the proxy while `Host` names the controller.
  const foreignOrigin =
    origin !== undefined && !sameOrigin(origin, host) && !access.trustedOrigins.has(origin);
  const foreignSite = site !== undefined && site !== "same-origin" && site !== "none";
  if (foreignOrigin || foreignSite)
    throw new ControllerApiError(
      403,
      "CONTROLLER_ERR_FORBIDDEN",
      `a change sent by a page of another origin (${origin ?? `Sec-Fetch-Site: ${site}`}) is refused`,
    );
}

function sameOrigin(origin: string, host: string | undefined): boolean {
  try {
    return host !== undefined && new URL(origin).host === new URL(`http://${host}`).host;
  } catch {
    return false;
  }
}

/** Reads `token` from a form (`application/x-www-form-urlencoded`) or JSON body of at most 4 KiB. */
async function readToken(req: IncomingMessage): Promise<string> {
  let body = "";
  for await (const chunk of req) {
    body += (chunk as Buffer).toString("utf8");
    if (body.length > 4096)
      throw new ControllerApiError(413, "CONTROLLER_ERR_BAD_REQUEST", "the sign-in body is over 4096 bytes");
  }
  const type = req.headers["content-type"] ?? "";
  if (type.startsWith("application/json")) {
    try {
      const parsed = JSON.parse(body) as { token?: unknown };
      if (typeof parsed.token === "string") return parsed.token;
    } catch {
      // reported below
    }
  } else {
    const token = new URLSearchParams(body).get("token");
    if (token !== null) return token;
  }
  throw new ControllerApiError(400, "CONTROLLER_ERR_BAD_REQUEST", "expected a `token` field in the body");
}

function setSession(res: ServerResponse, value: string, auth: ApiAuth, maxAgeSeconds: number): void {
  res.setHeader(
    "Set-Cookie",
    `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${auth.secureCookie ? "; Secure" : ""}`,
  );
}

/**
 * `POST /login` (body `token=...`): sets the web view's session cookie for 12 hours, 204; a wrong
 * token answers 401, and counts in `guesses` (429 once too many were wrong). `POST /logout`
 * clears it.
 */
export function sessionRoutes(auth: ApiAuth, guesses: TokenGuesses): Route[] {
  return [
    {
      method: "POST",
      path: "/login",
      public: true,
      handle: async ({ req, res }) => {
        const token = await readToken(req);
        await guesses.check(req);
        if (!sameSecret(token, auth.token)) {
          await guesses.failed(req);
          throw new ControllerApiError(401, "CONTROLLER_ERR_UNAUTHORIZED", "the API token is wrong");
        }
        setSession(res, sessionValue(auth.token), auth, 12 * 3600);
        res.writeHead(204).end();
      },
    },
    {
      method: "POST",
      path: "/logout",
      public: true,
      handle: ({ res }) => {
        setSession(res, "", auth, 0);
        res.writeHead(204).end();
      },
    },
  ];
}

import { createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
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
 * Lets a request through or throws: 401 `CONTROLLER_ERR_UNAUTHORIZED` without credentials or with
 * wrong ones; 403 `CONTROLLER_ERR_FORBIDDEN` for a cookie-authenticated change sent from another
 * origin. The token is compared in constant time and never echoed.
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
  const method = req.method ?? "GET";
  const origin = req.headers.origin;
  if (method !== "GET" && method !== "HEAD" && origin !== undefined && !sameOrigin(origin, req.headers.host))
    throw new ControllerApiError(
      403,
      "CONTROLLER_ERR_FORBIDDEN",
      `a change sent from another origin (${origin}) with the session cookie is refused`,
    );
}

function sameOrigin(origin: string, host: string | undefined): boolean {
  try {
    return host !== undefined && new URL(origin).host === host;
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
 * token answers 401. `POST /logout` clears it.
 */
export function sessionRoutes(auth: ApiAuth): Route[] {
  return [
    {
      method: "POST",
      path: "/login",
      public: true,
      handle: async ({ req, res }) => {
        const token = await readToken(req);
        if (!sameSecret(token, auth.token))
          throw new ControllerApiError(401, "CONTROLLER_ERR_UNAUTHORIZED", "the API token is wrong");
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

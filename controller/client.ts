import { ControllerApiError } from "./errors.ts";
import type { JobEvent, JobRecord } from "./job-record.ts";

/** What the controller answers to a workspace upload. */
export interface WorkspaceUploadInfo {
  id: string;
  bytes: number;
  sha256: string;
  entries: number;
  contentBytes: number;
}

export interface ControllerClientOptions {
  /** The controller's API token, sent as `Authorization: Bearer`. */
  token?: string;
}

/** A small HTTP client of the controller's API (used by the CLI and tests). */
export class ControllerClient {
  readonly #base: string;
  readonly #headers: Record<string, string>;

  constructor(baseUrl: string, options: ControllerClientOptions = {}) {
    this.#base = baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`;
    this.#headers = options.token !== undefined ? { Authorization: `Bearer ${options.token}` } : {};
  }

  /** The controller's URL, ending in `/`. */
  get baseUrl(): string {
    return this.#base;
  }

  async submit(job: unknown): Promise<JobRecord> {
    return (await this.#request("POST", "api/v1/jobs", job)) as JobRecord;
  }

  async get(id: string): Promise<JobRecord> {
    return (await this.#request("GET", `api/v1/jobs/${encodeURIComponent(id)}`)) as JobRecord;
  }

  async cancel(id: string): Promise<JobRecord> {
    return (await this.#request("POST", `api/v1/jobs/${encodeURIComponent(id)}/cancel`)) as JobRecord;
  }

  /** Runs the ended job again as a new job. */
  async retry(id: string): Promise<JobRecord> {
    return (await this.#request("POST", `api/v1/jobs/${encodeURIComponent(id)}/retry`)) as JobRecord;
  }

  /** Any GET of the API as text (e.g. `api/v1/metrics?format=prometheus`). */
  async text(path: string): Promise<string> {
    return (await this.#fetch("GET", path)).text();
  }

  /** The job's raw output, byte for byte. */
  async log(id: string): Promise<Buffer> {
    const res = await this.#fetch("GET", `api/v1/jobs/${encodeURIComponent(id)}/log`);
    return Buffer.from(await res.arrayBuffer());
  }

  /**
   * Uploads a workspace archive (streamed, never held whole): resolves with its id, length,
   * SHA-256 and entries. The controller refuses an archive an agent would refuse (400) or one over
   * its limit (413).
   */
  async uploadWorkspace(archive: AsyncIterable<Uint8Array>): Promise<WorkspaceUploadInfo> {
    const res = await this.#fetch("POST", "api/v1/workspaces", undefined, {
      body: archive,
      contentType: "application/x-tar",
    });
    return (await res.json()) as WorkspaceUploadInfo;
  }

  /**
   * A job's artifacts: the tar stream and the digest the controller checked when it stored them
   * (from the \`Repr-Digest\` and \`Content-Length\` headers). 404 when the job kept none.
   */
  async artifacts(id: string): Promise<{ stream: AsyncIterable<Uint8Array>; bytes: number; sha256: string }> {
    const res = await this.#fetch("GET", `api/v1/jobs/${encodeURIComponent(id)}/artifacts`);
    const digest = /sha-256=:([A-Za-z0-9+/=]+):/.exec(res.headers.get("repr-digest") ?? "");
    if (digest === null || res.body === null) {
      throw new ControllerApiError(
        502,
        "CONTROLLER_ERR_BAD_REQUEST",
        "the controller sent artifacts without their digest",
      );
    }
    return {
      stream: res.body as unknown as AsyncIterable<Uint8Array>,
      bytes: Number(res.headers.get("content-length")),
      sha256: Buffer.from(digest[1]!, "base64").toString("hex"),
    };
  }

  /** Yields the job's events: the stored ones, then live ones until the job ends. */
  async *events(id: string, follow = true): AsyncGenerator<JobEvent> {
    const res = await this.#fetch(
      "GET",
      `api/v1/jobs/${encodeURIComponent(id)}/events${follow ? "?follow=1" : ""}`,
    );
    if (!res.body) return;
    const decoder = new TextDecoder();
    let buffered = "";
    const reader = res.body.getReader();
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (error) {
        throw new ControllerApiError(
          0,
          "CONTROLLER_ERR_UNREACHABLE",
          `lost the connection to the controller at ${this.#base} while following job ${id}: ${describeConnectError(error)}`,
        );
      }
      if (chunk.done) return;
      buffered += decoder.decode(chunk.value, { stream: true });
      let newline = buffered.indexOf("\n");
      while (newline >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line.trim() !== "") yield JSON.parse(line) as JobEvent;
        newline = buffered.indexOf("\n");
      }
    }
  }

  async #request(method: string, path: string, body?: unknown): Promise<unknown> {
    const res = await this.#fetch(method, path, body);
    return res.json();
  }

  async #fetch(
    method: string,
    path: string,
    body?: unknown,
    raw?: { body: AsyncIterable<Uint8Array>; contentType: string },
  ): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(new URL(path, this.#base), {
        method,
        headers: {
          ...this.#headers,
          ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
          ...(raw !== undefined ? { "Content-Type": raw.contentType } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        // A streamed request body (undici): sent as it is read, with chunked encoding.
        ...(raw !== undefined ? { body: raw.body as unknown as RequestInit["body"], duplex: "half" } : {}),
      } as RequestInit);
    } catch (error) {
      throw new ControllerApiError(
        0,
        "CONTROLLER_ERR_UNREACHABLE",
        `cannot reach the controller at ${this.#base}: ${describeConnectError(error)}`,
      );
    }
    if (!res.ok) {
      const payload = (await res.json().catch(() => ({}))) as {
        error?: { code?: string; message?: string; problems?: [] };
      };
      const code = (payload.error?.code ?? "CONTROLLER_ERR_BAD_REQUEST") as ConstructorParameters<
        typeof ControllerApiError
      >[1];
      throw new ControllerApiError(
        res.status,
        code,
        payload.error?.message ?? `HTTP ${res.status}`,
        payload.error?.problems ?? [],
      );
    }
    return res;
  }
}

/** What a failed connection's error codes mean, in words. */
const CONNECT_ERRORS: Readonly<Record<string, string>> = {
  ECONNREFUSED:
    "connection refused: nothing listens at that address and port (is `controller serve` running?)",
  ENOTFOUND: "the host name does not resolve",
  EAI_AGAIN: "the host name could not be resolved now (DNS)",
  ETIMEDOUT: "the connection timed out",
  UND_ERR_CONNECT_TIMEOUT: "the connection timed out",
  ECONNRESET: "the connection was reset",
  EHOSTUNREACH: "no route to the host",
  ENETUNREACH: "the network is unreachable",
  DEPTH_ZERO_SELF_SIGNED_CERT:
    "the controller's TLS certificate is self-signed and not trusted (set NODE_EXTRA_CA_CERTS to its PEM file)",
  SELF_SIGNED_CERT_IN_CHAIN:
    "the controller's TLS certificate comes from a CA that is not trusted (set NODE_EXTRA_CA_CERTS to the CA's PEM file)",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    "the controller's TLS certificate could not be verified (set NODE_EXTRA_CA_CERTS to its CA's PEM file)",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    "the controller's TLS certificate comes from a CA that is not trusted (set NODE_EXTRA_CA_CERTS to the CA's PEM file)",
  CERT_HAS_EXPIRED: "the controller's TLS certificate has expired",
  ERR_TLS_CERT_ALTNAME_INVALID: "the controller's TLS certificate does not name this host",
  ERR_SSL_WRONG_VERSION_NUMBER:
    "the TLS handshake failed: is the controller serving plain http on this https URL?",
  EPROTO: "the TLS handshake failed",
};

/**
 * Why a connection failed, in words, from fetch's "fetch failed" and the `cause` it carries
 * (a system error, a TLS error, or several for a name with several addresses).
 *
 * @example
 * describeConnectError(error) // "connection refused: nothing listens ... (ECONNREFUSED 127.0.0.1:8080)"
 */
export function describeConnectError(error: unknown): string {
  const cause = (error as { cause?: unknown }).cause ?? error;
  const first = (cause as { errors?: unknown[] }).errors?.[0] ?? cause;
  const { code, address, port, message } = first as {
    code?: string;
    address?: string;
    port?: number;
    message?: string;
  };
  if (code !== undefined && CONNECT_ERRORS[code] !== undefined) {
    const where = address !== undefined ? ` ${address}${port !== undefined ? `:${port}` : ""}` : "";
    return `${CONNECT_ERRORS[code]} (${code}${where})`;
  }
  if (message === "bad port") return "fetch refuses that port (a port browsers block, such as 1 or 25)";
  return [message, code].filter(Boolean).join(" ") || String(error);
}

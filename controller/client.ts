import { ControllerApiError } from "./errors.ts";
import type { JobEvent, JobRecord } from "./job-store.ts";

/** What the controller answers to a workspace upload. */
export interface WorkspaceUploadInfo {
  id: string;
  bytes: number;
  sha256: string;
  entries: number;
  contentBytes: number;
}

/** A small HTTP client of the controller's API (used by the CLI and tests). */
export class ControllerClient {
  readonly #base: string;

  constructor(baseUrl: string) {
    this.#base = baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`;
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
    for await (const chunk of res.body) {
      buffered += decoder.decode(chunk as Uint8Array, { stream: true });
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
        ...(body !== undefined
          ? { body: JSON.stringify(body), headers: { "Content-Type": "application/json" } }
          : {}),
        // A streamed request body (undici): sent as it is read, with chunked encoding.
        ...(raw !== undefined
          ? {
              body: raw.body as unknown as RequestInit["body"],
              headers: { "Content-Type": raw.contentType },
              duplex: "half",
            }
          : {}),
      } as RequestInit);
    } catch (error) {
      throw new ControllerApiError(
        0,
        "CONTROLLER_ERR_UNREACHABLE",
        `cannot reach the controller at ${this.#base}: ${(error as Error).message}`,
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

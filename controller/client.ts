import { ControllerApiError } from "./errors.ts";
import type { JobEvent, JobRecord } from "./job-record.ts";

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

  async #fetch(method: string, path: string, body?: unknown): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(new URL(path, this.#base), {
        method,
        ...(body !== undefined
          ? { body: JSON.stringify(body), headers: { "Content-Type": "application/json" } }
          : {}),
      });
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

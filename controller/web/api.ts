/**
 * The web view's calls to the controller's HTTP API (same origin). Authentication, when the
 * controller asks for it, is the HttpOnly cookie set by `POST /login`: the page never holds the
 * token.
 */
import type { AgentInfo } from "../http-api.ts";
import type { JobRecord } from "../job-record.ts";
import type { LogEvent } from "./log-model.ts";

/** The controller answered 401: the page shows the sign-in form. */
export class SignInRequired extends Error {
  constructor() {
    super("sign-in required");
    this.name = "SignInRequired";
  }
}

/** An API error with the controller's stable code. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

async function check(res: Response): Promise<Response> {
  if (res.status === 401) throw new SignInRequired();
  if (!res.ok) {
    const body = (await res.json().catch(() => ({}))) as { error?: { code?: string; message?: string } };
    throw new ApiError(
      res.status,
      body.error?.code ?? "HTTP",
      body.error?.message ?? `${res.status} ${res.statusText}`,
    );
  }
  return res;
}

async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  const res = await check(
    await fetch(path, { headers: { Accept: "application/json" }, ...(signal ? { signal } : {}) }),
  );
  return (await res.json()) as T;
}

async function post<T>(path: string, body?: unknown): Promise<T> {
  const res = await check(
    await fetch(path, {
      method: "POST",
      headers: { Accept: "application/json", "Content-Type": "application/json" },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    }),
  );
  return (await res.json()) as T;
}

export const api = {
  jobs: (signal?: AbortSignal) => getJson<{ jobs: JobRecord[] }>("/api/v1/jobs", signal),
  job: (id: string, signal?: AbortSignal) =>
    getJson<JobRecord>(`/api/v1/jobs/${encodeURIComponent(id)}`, signal),
  agents: (signal?: AbortSignal) => getJson<{ agents: AgentInfo[] }>("/api/v1/agents", signal),
  cancel: (id: string) => post<JobRecord>(`/api/v1/jobs/${encodeURIComponent(id)}/cancel`),
  retry: (id: string) => post<JobRecord>(`/api/v1/jobs/${encodeURIComponent(id)}/retry`),
  signIn: async (token: string): Promise<void> => {
    const res = await fetch("/login", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token }).toString(),
    });
    await check(res);
  },
};

/** Longest stretch of event handling before the page gets the main thread back. */
const SLICE_MS = 12;
/** Events handled between two looks at the clock: at most this many... */
const BATCH_EVENTS = 8;
/** ...and this many characters of them (an output event holds up to 256 KiB of a step's output). */
const BATCH_CHARS = 131_072;

/**
 * Follows `GET /api/v1/jobs/:id/events?follow=1`: calls `onEvents` with each batch of events as
 * they arrive, handing the main thread back every few milliseconds so that replaying a large log
 * never freezes the tab. Resolves when the stream ends (the job ended) or `signal` aborts.
 */
export async function followEvents(
  id: string,
  onEvents: (events: LogEvent[]) => void,
  signal: AbortSignal,
): Promise<void> {
  const res = await check(
    await fetch(`/api/v1/jobs/${encodeURIComponent(id)}/events?follow=1`, {
      signal,
      headers: { Accept: "application/x-ndjson" },
    }),
  );
  if (res.body === null) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  let sliceStart = performance.now();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      const lastNewline = buffered.lastIndexOf("\n");
      if (lastNewline < 0) continue;
      const lines = buffered.slice(0, lastNewline).split("\n");
      buffered = buffered.slice(lastNewline + 1);
      // A read can hold megabytes of events (a long log replaying): they are handed over a few at
      // a time, and the page gets the main thread back whenever a slice is used up.
      for (let next = 0; next < lines.length; ) {
        const events: LogEvent[] = [];
        let chars = 0;
        while (next < lines.length && events.length < BATCH_EVENTS && chars < BATCH_CHARS) {
          const line = lines[next++]!;
          chars += line.length;
          if (line !== "") events.push(JSON.parse(line) as LogEvent);
        }
        onEvents(events);
        if (performance.now() - sliceStart > SLICE_MS) {
          await new Promise((resolve) => setTimeout(resolve, 0));
          sliceStart = performance.now();
        }
      }
    }
  } catch (error) {
    if (signal.aborted) return;
    throw error;
  } finally {
    reader.releaseLock();
  }
}

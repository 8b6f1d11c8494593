import type { AddressInfo } from "node:net";
import * as wsModule from "ws";
import WebSocket, { WebSocketServer } from "ws";
import {
  AGENT_WS_PATH,
  encodeNameHeader,
  encodeOutputFrame,
  encodeTransferFrame,
  NAME_HEADER,
  SECRET_HEADER,
} from "../../agent-core/index.ts";

/** A hand-driven agent: a raw WebSocket to a real controller, for sending whatever a test needs. */
export async function rawAgent(
  controller: { url: string; secretFor(name: string): string },
  name: string,
  headers: Record<string, string> = {},
) {
  const url = `${controller.url.replace(/^http/, "ws")}${AGENT_WS_PATH}`;
  const socket = new WebSocket(url, {
    perMessageDeflate: false,
    headers: {
      [NAME_HEADER]: encodeNameHeader(name),
      [SECRET_HEADER]: controller.secretFor(name),
      ...headers,
    },
  });
  const received: unknown[] = [];
  // JSON messages; binary frames (a seed's `workspace` frames) are for the test's own listener.
  socket.on("message", (data, isBinary) => {
    if (!isBinary) received.push(JSON.parse(data.toString()));
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.once("close", (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  return {
    socket,
    received,
    closed,
    sendJson: (value: unknown) => socket.send(JSON.stringify(value)),
    /** `hello`, with the labels given, and asking to resume `resume` (a job id) when given. */
    hello: (labels: string[] = [], resume?: string) =>
      socket.send(
        JSON.stringify({
          v: 1,
          type: "hello",
          agent: { name, labels, runtime: "local", version: "test" },
          limits: { deadlineAt: null, diskBudgetBytes: null },
          capabilities: [],
          ...(resume !== undefined ? { resume: { jobId: resume } } : {}),
        }),
      ),
    output: (seq: number, stepId: string, offset: number, text: string) =>
      socket.send(encodeOutputFrame({ seq, stepId, stream: "stdout", offset, data: Buffer.from(text) })),
    /** A step that ran and wrote nothing: `step-start` (seq) and `step-end` (seq + 1). */
    emptyStep: (jobId: string, stepId: string, seq: number) => {
      socket.send(JSON.stringify({ v: 1, type: "step-start", seq, jobId, stepId, startedAt: Date.now() }));
      socket.send(
        JSON.stringify({
          v: 1,
          type: "step-end",
          seq: seq + 1,
          jobId,
          stepId,
          exitCode: 0,
          signal: null,
          reason: "exit",
          durationMs: 1,
          stdoutBytes: 0,
          stderrBytes: 0,
        }),
      );
    },
    artifact: (seq: number, offset: number, data: Buffer) =>
      socket.send(encodeTransferFrame({ kind: "artifact", seq, offset, data })),
    /** `artifacts-end` of one entry, saying `bytes` and `sha256` (whatever the test wants checked). */
    artifactsEnd: (seq: number, jobId: string, bytes: number, sha256: string) =>
      socket.send(
        JSON.stringify({
          v: 1,
          type: "artifacts-end",
          seq,
          jobId,
          bytes,
          sha256,
          entries: 1,
          skipped: [],
          skippedCount: 0,
          unmatched: [],
        }),
      ),
    /** Resolves with the first received message matching `type`. */
    next: async (type: string, timeoutMs = 5_000) => {
      const started = Date.now();
      for (;;) {
        const found = received.find((m) => (m as { type: string }).type === type);
        if (found) return found as Record<string, unknown>;
        if (Date.now() - started > timeoutMs) throw new Error(`no ${type} message within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

/**
 * A hand-driven controller: accepts any agent on 127.0.0.1 port 0 and lets the test script
 * what it sends back.
 */
export async function fakeController(onAgent: (socket: WebSocket, messages: AgentTraffic) => void) {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  const closes: { code: number; reason: string }[] = [];
  server.on("connection", (socket) => {
    const traffic: AgentTraffic = { json: [], binary: [] };
    socket.on("message", (data, isBinary) => {
      if (isBinary) traffic.binary.push(data as Buffer);
      else traffic.json.push(JSON.parse(data.toString()) as Record<string, unknown>);
    });
    socket.on("close", (code, reason) => closes.push({ code, reason: reason.toString() }));
    onAgent(socket, traffic);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    closes,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of server.clients) client.terminate();
        server.close(() => resolve());
      }),
  };
}

export interface AgentTraffic {
  json: Record<string, unknown>[];
  binary: Buffer[];
}

/** Resolves when the agent has sent a JSON message of `type`. */
export async function waitForType(
  traffic: AgentTraffic,
  type: string,
  timeoutMs = 5_000,
): Promise<Record<string, unknown>> {
  const started = Date.now();
  for (;;) {
    const found = traffic.json.find((m) => m.type === type);
    if (found) return found;
    if (Date.now() - started > timeoutMs) throw new Error(`no ${type} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** ws's frame builder (the one its sockets use; @types/ws does not declare it). */
const { Sender } = wsModule as unknown as {
  Sender: {
    frame(
      data: Buffer,
      options: { fin: boolean; rsv1: boolean; opcode: number; mask: boolean; readOnly: boolean },
    ): Buffer[];
  };
};

/**
 * Sends the messages as text frames in ONE write on the TCP socket, so that the agent reads
 * them together (one read, one parse): what a controller does when it answers quickly.
 */
export function sendInOneRead(socket: WebSocket, messages: unknown[]): void {
  const frames = messages.flatMap((message) =>
    Sender.frame(Buffer.from(JSON.stringify(message)), {
      fin: true,
      rsv1: false,
      opcode: 1,
      mask: false,
      readOnly: false,
    }),
  );
  (socket as unknown as { _socket: { write(data: Buffer): void } })._socket.write(Buffer.concat(frames));
}

/** The seq of a sequenced message the agent sent (JSON, or an output frame's header). */
export function seqOf(data: Buffer, isBinary: boolean): number | undefined {
  if (isBinary) return data.readUInt32BE(4);
  const seq = (JSON.parse(data.toString()) as { seq?: unknown }).seq;
  return typeof seq === "number" ? seq : undefined;
}

/** Acknowledges every sequenced message at once, as the reference controller does (until `stop()`). */
export function ackEverything(socket: WebSocket): { stop(): void; last(): number } {
  let last = 0;
  let stopped = false;
  socket.on("message", (data, isBinary) => {
    const seq = seqOf(data as Buffer, isBinary);
    if (seq === undefined || stopped) return;
    last = seq;
    socket.send(JSON.stringify({ v: 1, type: "ack", seq }));
  });
  return {
    stop: () => {
      stopped = true;
    },
    last: () => last,
  };
}

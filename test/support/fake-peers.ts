import type { AddressInfo } from "node:net";
import WebSocket, { WebSocketServer } from "ws";
import { AGENT_WS_PATH, encodeOutputFrame, NAME_HEADER, SECRET_HEADER } from "../../agent-core/index.ts";

/** A hand-driven agent: a raw WebSocket to a real controller, for sending whatever a test needs. */
export async function rawAgent(
  controller: { url: string; secretFor(name: string): string },
  name: string,
  headers: Record<string, string> = {},
) {
  const url = `${controller.url.replace(/^http/, "ws")}${AGENT_WS_PATH}`;
  const socket = new WebSocket(url, {
    perMessageDeflate: false,
    headers: { [NAME_HEADER]: name, [SECRET_HEADER]: controller.secretFor(name), ...headers },
  });
  const received: unknown[] = [];
  socket.on("message", (data) => received.push(JSON.parse(data.toString())));
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
    hello: (labels: string[] = []) =>
      socket.send(
        JSON.stringify({
          v: 1,
          type: "hello",
          agent: { name, labels, runtime: "local", version: "test" },
          limits: { deadlineAt: null, diskBudgetBytes: null },
          capabilities: [],
        }),
      ),
    output: (seq: number, stepId: string, offset: number, text: string) =>
      socket.send(encodeOutputFrame({ seq, stepId, stream: "stdout", offset, data: Buffer.from(text) })),
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

import type { AddressInfo } from "node:net";
import { connect, createServer, type Server } from "node:net";
import { networkInterfaces } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode, runAgent } from "../../agent-core/index.ts";
import { agentConfigFor, captureLogger, startController, type TestController } from "../support/harness.ts";

/** This machine's first non-loopback IPv4 address, if it has one. */
const externalAddress = Object.values(networkInterfaces())
  .flat()
  .find((i) => i !== undefined && i.family === "IPv4" && !i.internal)?.address;

/**
 * A TCP relay on `host` port 0 to the controller that records what the agent sends, so that the
 * frames can be read as they crossed the wire.
 */
async function recordingRelay(host: string, target: URL) {
  const sent: Buffer[] = [];
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    client.on("data", (data: Buffer) => {
      sent.push(data);
      upstream.write(data);
    });
    upstream.pipe(client);
    client.on("error", () => upstream.destroy()).on("close", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, host, () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}/`,
    sent: () => Buffer.concat(sent),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The masking keys of the client frames after the HTTP upgrade request (RFC 6455 section 5.2). */
function maskingKeys(wire: Buffer): { masked: boolean; key: string; payloadBytes: number }[] {
  let at = wire.indexOf("\r\n\r\n") + 4;
  const frames = [];
  while (at + 2 <= wire.length) {
    const masked = (wire[at + 1]! & 0x80) !== 0;
    let length = wire[at + 1]! & 0x7f;
    at += 2;
    if (length === 126) {
      length = wire.readUInt16BE(at);
      at += 2;
    } else if (length === 127) {
      length = Number(wire.readBigUInt64BE(at));
      at += 8;
    }
    const key = masked ? wire.subarray(at, at + 4).toString("hex") : "";
    at += (masked ? 4 : 0) + length;
    frames.push({ masked, key, payloadBytes: length });
  }
  return frames;
}

describe("the agent's frames on the wire", () => {
  let ctl: TestController;
  beforeAll(async () => {
    ctl = await startController();
  });
  afterAll(async () => {
    await ctl.close();
  });

  async function runThrough(host: string, name: string) {
    const relay = await recordingRelay(host, new URL(ctl.controller.url));
    try {
      const job = ctl.controller.submit({ steps: [{ run: "head -c 300000 /dev/zero | tr '\\0' x" }] });
      const { logger } = captureLogger();
      const outcome = await runAgent(agentConfigFor(ctl.controller, name, { url: relay.url }), { logger });
      expect(outcome.exitCode).toBe(ExitCode.ok);
      expect((await ctl.client.log(job.id)).toString()).toBe("x".repeat(300_000));
      return maskingKeys(relay.sent());
    } finally {
      await relay.close();
    }
  }

  it("to a loopback address: every frame masked with the zero key, and the output arrives whole", async () => {
    const frames = await runThrough("127.0.0.1", "masking-loopback");
    expect(frames.length).toBeGreaterThan(3);
    expect(frames.every((f) => f.masked && f.key === "00000000")).toBe(true);
  });

  it.skipIf(externalAddress === undefined)(
    "to another address (plain ws://): a random key per frame (skipped without a non-loopback IPv4 address)",
    async () => {
      const frames = await runThrough(externalAddress!, "masking-external");
      expect(frames.length).toBeGreaterThan(3);
      expect(frames.every((f) => f.masked)).toBe(true);
      expect(new Set(frames.map((f) => f.key)).size).toBeGreaterThan(frames.length / 2);
      expect(frames.some((f) => f.key === "00000000")).toBe(false);
    },
  );
});

import type { AddressInfo } from "node:net";
import { connect, createServer, type Socket } from "node:net";

/**
 * A TCP proxy on 127.0.0.1 port 0 in front of a real server, for breaking the network on demand:
 * `cut()` resets every connection at once; `stall()` stops forwarding client -> server bytes
 * (the server stops reading, as a frozen controller would), `unstall()` resumes.
 */
export async function tcpProxy(targetUrl: string) {
  const target = new URL(targetUrl);
  const pairs = new Set<{ client: Socket; upstream: Socket }>();
  let stalled = false;
  let connections = 0;
  const server = createServer((client) => {
    connections++;
    const upstream = connect(Number(target.port), target.hostname);
    const pair = { client, upstream };
    pairs.add(pair);
    client.on("data", (data) => {
      if (!upstream.write(data)) client.pause();
    });
    upstream.on("drain", () => {
      if (!stalled) client.resume();
    });
    upstream.pipe(client);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    if (stalled) client.pause();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    get connections() {
      return connections;
    },
    /** Resets every open connection (both sides see it drop). */
    cut() {
      for (const { client, upstream } of pairs) {
        client.resetAndDestroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    stall() {
      stalled = true;
      for (const { client } of pairs) client.pause();
    },
    unstall() {
      stalled = false;
      for (const { client } of pairs) client.resume();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const { client, upstream } of pairs) {
          client.destroy();
          upstream.destroy();
        }
        server.close(() => resolve());
      }),
  };
}

import { createServer, type IncomingMessage, request } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";

/** One request the proxy handled: a CONNECT tunnel or a forwarded request. */
export interface ProxiedRequest {
  kind: "connect" | "forward";
  /** `host:port` as the client asked for it (before the proxy's own name resolution). */
  target: string;
}

/**
 * An HTTP proxy on 127.0.0.1 port 0, as a corporate proxy behaves: CONNECT tunnels (https, and
 * WebSockets) and forwarded requests with an absolute URI (plain http). It resolves the names
 * in `hosts` itself (say `controller.invalid` -> 127.0.0.1), so a test can use a host name that
 * only the proxy can reach. Any other name is refused with 502, as a proxy with no route would.
 */
export async function httpProxy(hosts: Record<string, string>) {
  const handled: ProxiedRequest[] = [];
  const sockets = new Set<Socket>();
  const resolve = (hostname: string) => hosts[hostname];
  const server = createServer((req, res) => {
    // Forward mode: `GET http://host:port/path HTTP/1.1`.
    let url: URL;
    try {
      url = new URL(req.url ?? "");
    } catch {
      res.writeHead(400).end("absolute URI required");
      return;
    }
    handled.push({ kind: "forward", target: url.host });
    const address = resolve(url.hostname);
    if (address === undefined) {
      res.writeHead(502).end(`no route to ${url.hostname}`);
      return;
    }
    const upstream = request(
      {
        host: address,
        port: url.port || 80,
        method: req.method,
        path: url.pathname + url.search,
        headers: req.headers,
      },
      (answer: IncomingMessage) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.writeHead(502).end());
    req.pipe(upstream);
  });
  server.on("connect", (req: IncomingMessage, client: Socket, head: Buffer) => {
    const target = req.url ?? "";
    handled.push({ kind: "connect", target });
    const [hostname = "", port = "443"] = target.split(/:(?=\d+$)/);
    const address = resolve(hostname);
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => client.destroy());
    if (address === undefined) {
      client.end(`HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    const upstream = connect(Number(port), address, () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on("close", () => sockets.delete(upstream));
    upstream.on("error", () => client.destroy());
  });
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", () => done()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    handled,
    close: () =>
      new Promise<void>((done) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => done());
      }),
  };
}

import { type AddressInfo, createServer, type Socket } from "node:net";

/**
 * A TCP server on 127.0.0.1 port 0 that answers an HTTP upgrade one byte per `intervalMs`,
 * forever (a tarpit): each byte resets an idle timeout, so only a total deadline ends the wait.
 */
export async function slowPeer(intervalMs = 1_000) {
  const sockets = new Set<Socket>();
  let connections = 0;
  const answer = Buffer.from(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Padding: " +
      "x".repeat(10_000),
  );
  const server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    let sent = 0;
    const timer = setInterval(() => {
      if (sent < answer.length) socket.write(answer.subarray(sent, ++sent));
    }, intervalMs);
    socket.on("error", () => socket.destroy());
    socket.on("close", () => {
      clearInterval(timer);
      sockets.delete(socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

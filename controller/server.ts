import { createServer, type RequestListener, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { AgentGate } from "./upgrade.ts";

export interface ServerOptions {
  /** Interface to listen on. */
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Answers HTTP requests (the API). */
  api: RequestListener;
  /** Takes WebSocket upgrades (agents). */
  gate: AgentGate;
}

/** The controller's one listening socket: the HTTP API and the agents' WebSocket endpoint. */
export class ControllerServer {
  readonly #server: Server;
  readonly url: string;

  private constructor(server: Server, url: string) {
    this.#server = server;
    this.url = url;
  }

  /** Listens; resolves once the port is bound, rejects with the listen error (EADDRINUSE...). */
  static async listen(options: ServerOptions): Promise<ControllerServer> {
    const server = createServer(options.api);
    server.on("upgrade", (req, socket: Socket, head) => options.gate.handle(req, socket, head));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port, options.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    return new ControllerServer(server, `http://${host}:${address.port}/`);
  }

  /** Drops every connection and stops listening. */
  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

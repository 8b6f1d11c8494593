import { createServer, type RequestListener, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { ControllerApiError } from "./errors.ts";
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
  /** Serve HTTPS (and WSS) with this certificate chain and key, PEM. */
  tls?: TlsFiles;
}

/** A certificate (chain) and its private key, PEM. */
export interface TlsFiles {
  cert: string | Buffer;
  key: string | Buffer;
}

/** The controller's one listening socket: the HTTP API and the agents' WebSocket endpoint. */
export class ControllerServer {
  readonly #server: Server;
  readonly url: string;

  private constructor(server: Server, url: string) {
    this.#server = server;
    this.url = url;
  }

  /**
   * Listens; resolves once the port is bound, rejects with the listen error (EADDRINUSE...) or,
   * for a certificate or key that cannot be used, ControllerApiError `CONTROLLER_ERR_CONFIG`.
   */
  static async listen(options: ServerOptions): Promise<ControllerServer> {
    const server = options.tls ? createTlsServer(options.tls, options.api) : createServer(options.api);
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
    return new ControllerServer(server, `${options.tls ? "https" : "http"}://${host}:${address.port}/`);
  }

  /** Drops every connection and stops listening. */
  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

function createTlsServer(tls: TlsFiles, api: RequestListener): Server {
  try {
    return createHttpsServer({ cert: tls.cert, key: tls.key }, api);
  } catch (error) {
    throw new ControllerApiError(
      400,
      "CONTROLLER_ERR_CONFIG",
      `the TLS certificate or key cannot be used: ${(error as Error).message}`,
    );
  }
}

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
   * Listens; resolves once the port is bound. Rejects with ControllerApiError
   * `CONTROLLER_ERR_LISTEN` when the address cannot be bound (in use, no permission), or
   * `CONTROLLER_ERR_CONFIG` for a certificate or key that cannot be used.
   */
  static async listen(options: ServerOptions): Promise<ControllerServer> {
    const server = options.tls ? createTlsServer(options.tls, options.api) : createServer(options.api);
    server.on("upgrade", (req, socket: Socket, head) => options.gate.handle(req, socket, head));
    await new Promise<void>((resolve, reject) => {
      const failed = (error: NodeJS.ErrnoException) => reject(listenError(error, options.host, options.port));
      server.once("error", failed);
      server.listen(options.port, options.host, () => {
        server.off("error", failed);
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

const LISTEN_PROBLEMS: Record<string, string> = {
  EADDRINUSE: "the port is in use by another process",
  EACCES: "permission denied (ports below 1024 need privileges)",
  EADDRNOTAVAIL: "the address is not one of this machine's",
  ENOTFOUND: "the host name does not resolve to an address",
  EAI_AGAIN: "the host name could not be resolved (DNS did not answer)",
  EAI_FAIL: "the host name could not be resolved",
  EINVAL: "the address is not valid for listening",
};

/**
 * A listen failure as a clear error (`CONTROLLER_ERR_LISTEN`) naming the address, the problem and
 * the fix. Every failure to bind is one (a code not listed shows the system's own words).
 */
function listenError(error: NodeJS.ErrnoException, host: string, port: number): Error {
  const problem = LISTEN_PROBLEMS[error.code ?? ""] ?? error.message;
  return new ControllerApiError(
    0,
    "CONTROLLER_ERR_LISTEN",
    `cannot listen on ${host}:${port}: ${problem} (${error.code ?? "no error code"}); choose another with --host/--port`,
    [],
    {},
    { cause: error },
  );
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

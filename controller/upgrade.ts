import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { type WebSocket, WebSocketServer } from "ws";
import {
  AGENT_WS_PATH,
  decodeNameHeader,
  type Logger,
  NAME_HEADER,
  PROTOCOL_HEADER,
  PROTOCOL_VERSION,
  RESUME_HEADER,
  SECRET_HEADER,
  verifyAgentSecret,
} from "../agent-core/index.ts";

/** An HTTP answer to a refused upgrade: status and a one-line text (`"Forbidden: ..."`). */
export type UpgradeRefusal = [status: number, text: string];

/** What the upgrade checks need to know of the controller's state. */
export interface UpgradeContext {
  key: string;
  stopping: boolean;
  /** The id of the job run by the open session of this agent name, `null` for an idle one, or undefined when none is open. */
  openSession(name: string): string | null | undefined;
  /** The id of the job this agent name ran, when that job (or its attempt) ended: a spent name. */
  spentBy(name: string): string | undefined;
}

/** The value of a request header (the first one when repeated). */
export function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * The agent's name from `Node-Name` (percent-encoded UTF-8, see `decodeNameHeader`): undefined
 * when the header is missing, null when it cannot be decoded.
 */
export function agentName(req: IncomingMessage): string | null | undefined {
  const header = headerValue(req, NAME_HEADER);
  return header === undefined ? undefined : (decodeNameHeader(header) ?? null);
}

/**
 * Why an agent's upgrade request is refused, or undefined to accept it. The checks run in the
 * order docs/protocol.md §2.4 gives: path, headers, secret, protocol version, spent name, open
 * session, shutdown. A spent name (single-use: its job ended) is let in only to resume that job,
 * so that the agent learns how it ended; a leaked secret of a finished job opens nothing.
 */
export function upgradeRefusal(req: IncomingMessage, context: UpgradeContext): UpgradeRefusal | undefined {
  const path = new URL(req.url ?? "/", "http://localhost").pathname;
  if (path !== `/${AGENT_WS_PATH}`) return [404, `Not Found: no agent endpoint at ${path}`];
  const name = agentName(req);
  const secret = headerValue(req, SECRET_HEADER);
  if (name === null) return [400, "Bad Request: the Node-Name header is not valid percent-encoded UTF-8"];
  if (!name || !secret) return [400, "Bad Request: the Node-Name and Secret-Key headers are required"];
  if (!verifyAgentSecret(context.key, name, secret))
    return [403, `Forbidden: wrong secret for agent ${name}`];
  const version = headerValue(req, PROTOCOL_HEADER);
  if (version !== undefined && version !== String(PROTOCOL_VERSION)) {
    return [
      426,
      `Upgrade Required: this controller speaks protocol ${PROTOCOL_VERSION}, the agent ${version}`,
    ];
  }
  const resuming = headerValue(req, RESUME_HEADER);
  const spentBy = context.spentBy(name);
  if (spentBy !== undefined && resuming !== spentBy) {
    return [410, `Gone: agent name ${name} is single-use and its job ${spentBy} ended`];
  }
  const open = context.openSession(name);
  if (open !== undefined && (resuming === undefined || open !== resuming)) {
    return [409, `Conflict: agent ${name} is already connected`];
  }
  if (context.stopping) return [503, "Service Unavailable: shutting down"];
  return undefined;
}

export interface AgentGateOptions {
  maxPayloadBytes: number;
  logger: Logger;
  context: UpgradeContext;
  /** Called with each accepted agent's socket, name, and for a spent name the only job it may resume. */
  accepted(socket: WebSocket, name: string, resumeOnly: string | undefined): void;
}

/**
 * The door agents come in by: checks each upgrade request (`upgradeRefusal`), answers a refusal
 * as a plain HTTP response, and completes the WebSocket handshake of the others.
 */
export class AgentGate {
  readonly #wss: WebSocketServer;
  readonly #options: AgentGateOptions;

  constructor(options: AgentGateOptions) {
    this.#options = options;
    this.#wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: options.maxPayloadBytes,
    });
  }

  /** Handles the server's `upgrade` event. */
  handle(req: IncomingMessage, socket: Socket, head: Buffer): void {
    socket.on("error", () => socket.destroy());
    const refusal = upgradeRefusal(req, this.#options.context);
    const name = agentName(req);
    if (refusal !== undefined) {
      const [status, text] = refusal;
      this.#options.logger.warn("agent refused", { status, reason: text, name });
      socket.end(
        `HTTP/1.1 ${status} ${text.split(":")[0]}\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
      );
      return;
    }
    const resumeOnly = this.#options.context.spentBy(name!);
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#options.accepted(ws, name!, resumeOnly));
  }

  close(): void {
    this.#wss.close();
  }
}

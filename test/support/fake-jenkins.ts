import { createHash, generateKeyPairSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { type AddressInfo, createServer as createTcpServer, type Server, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { type WebSocket, WebSocketServer } from "ws";

/**
 * A Jenkins controller on loopback, as the agent and remoting see one (no Jenkins can be
 * installed here). Every answer carries `X-Jenkins`. It serves:
 * - `GET /jnlpJars/agent.jar` with `ETag` and `Last-Modified`, answering 304 to a matching
 *   `If-None-Match` / `If-Modified-Since`;
 * - `GET /tcpSlaveAgentListener/` with `X-Jenkins-JNLP-Port`, `X-Instance-Identity` (a real
 *   base64 RSA public key), `X-Jenkins-Agent-Protocols: JNLP4-connect, Ping`, body `Jenkins`
 *   (404 when the TCP port is disabled);
 * - `GET /login` (200, or `loginStatus`);
 * - the `/wsagents/` upgrade: `Node-Name` and `Secret-Key` checked (400 unknown agent, 403 wrong
 *   secret);
 * - the TCP agent port, speaking the fake remoting's JNLP4-connect stand-in (test/fixtures).
 * Nodes are single-use: once a node's channel closed, the node is gone (`Unknown client name`).
 * Past the handshake the controller sends the node's script, one command at a time, waiting for
 * each `ack`; then it closes the channel, unless the script ends with `hang`.
 */
export interface FakeJenkinsOptions {
  version?: string;
  /** The agent.jar served (a path), or null to answer 404. */
  jar?: string | null;
  tcpPortEnabled?: boolean;
  loginStatus?: number;
}

export interface FakeNode {
  secret: string;
  /** Commands for the fake remoting: echo X, log X, print-secret, ignore-sigterm, fill-disk N, spawn S, spawn-detached S, sleep MS, halt N, hang. */
  script: string[];
}

export interface RecordedHttp {
  method: string;
  path: string;
  headers: IncomingMessage["headers"];
  status: number;
  at: number;
}

export interface Session {
  name: string;
  transport: "tcp" | "websocket";
  acks: string[];
  openedAt: number;
  closedAt?: number;
}

export class FakeJenkins {
  readonly version: string;
  readonly requests: RecordedHttp[] = [];
  readonly sessions: Session[] = [];
  readonly nodes = new Map<string, FakeNode>();
  tcpPortEnabled: boolean;
  loginStatus: number;
  /** Holds every agent.jar answer this long (a slow network), to show what happens meanwhile. */
  jarAnswerDelayMs = 0;
  readonly #http: ReturnType<typeof createServer>;
  readonly #tcp: Server;
  readonly #wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  readonly #identity: string;
  readonly #sockets = new Set<Socket | Duplex>();
  #jar: { data: Buffer; etag: string; lastModified: string } | null = null;

  private constructor(options: FakeJenkinsOptions) {
    this.version = options.version ?? "2.479.3";
    this.tcpPortEnabled = options.tcpPortEnabled ?? true;
    this.loginStatus = options.loginStatus ?? 200;
    const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    this.#identity = publicKey.export({ type: "spki", format: "der" }).toString("base64");
    this.setJar(options.jar ?? null);
    this.#http = createServer((req, res) => this.#answer(req, res));
    this.#http.on("upgrade", (req, socket, head) => this.#upgrade(req, socket, head));
    this.#http.on("connection", (socket) => this.#track(socket));
    this.#tcp = createTcpServer((socket) => this.#agentPort(socket));
  }

  static async start(options: FakeJenkinsOptions = {}): Promise<FakeJenkins> {
    const jenkins = new FakeJenkins(options);
    await new Promise<void>((resolve) => jenkins.#http.listen(0, "127.0.0.1", resolve));
    await new Promise<void>((resolve) => jenkins.#tcp.listen(0, "127.0.0.1", resolve));
    return jenkins;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#http.address() as AddressInfo).port}/`;
  }

  get agentPort(): number {
    return (this.#tcp.address() as AddressInfo).port;
  }

  /** Serves `path` as agent.jar from now on (a new ETag and Last-Modified); null answers 404. */
  setJar(path: string | null): void {
    if (path === null) {
      this.#jar = null;
      return;
    }
    const data = readFileSync(path);
    const sha = createHash("sha1").update(data).digest("hex");
    this.#jar = { data, etag: `"${sha}"`, lastModified: new Date(Date.now() - 60_000).toUTCString() };
  }

  addNode(name: string, node: FakeNode): void {
    this.nodes.set(name, node);
  }

  /** The first request remoting makes (TCP discovery or the WebSocket /login ping). */
  firstRemotingRequest(): RecordedHttp | undefined {
    return this.requests.find((r) => r.path === "/tcpSlaveAgentListener/" || r.path === "/login");
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    for (const client of this.#wss.clients) client.terminate();
    await Promise.all([
      new Promise((resolve) => this.#http.close(resolve)),
      new Promise((resolve) => this.#tcp.close(resolve)),
    ]);
  }

  #track(socket: Socket | Duplex): void {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
  }

  #record(req: IncomingMessage, status: number): void {
    this.requests.push({
      method: req.method ?? "GET",
      path: new URL(req.url ?? "/", "http://x").pathname,
      headers: req.headers,
      status,
      at: Date.now(),
    });
  }

  #answerJar(
    req: IncomingMessage,
    send: (status: number, body?: string | Buffer, headers?: Record<string, string>) => true,
  ): true {
    const jar = this.#jar;
    if (jar === null) return send(404, "Not Found");
    const headers = { ETag: jar.etag, "Last-Modified": jar.lastModified };
    const since = req.headers["if-modified-since"];
    if (req.headers["if-none-match"] === jar.etag || (since !== undefined && since === jar.lastModified)) {
      return send(304, "", headers);
    }
    return send(200, jar.data, {
      ...headers,
      "Content-Type": "application/java-archive",
      "Content-Length": String(jar.data.length),
    });
  }

  #answer(req: IncomingMessage, res: ServerResponse): boolean {
    res.setHeader("X-Jenkins", this.version);
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const send = (status: number, body: string | Buffer = "", headers: Record<string, string> = {}): true => {
      this.#record(req, status);
      res.writeHead(status, headers);
      res.end(body);
      return true;
    };
    if (path === "/jnlpJars/agent.jar" && this.jarAnswerDelayMs > 0) {
      const delayMs = this.jarAnswerDelayMs;
      setTimeout(() => this.#answerJar(req, send), delayMs);
      return true;
    }
    if (path === "/jnlpJars/agent.jar") return this.#answerJar(req, send);
    if (path === "/tcpSlaveAgentListener/") {
      if (!this.tcpPortEnabled) return send(404, "Not Found");
      return send(200, "Jenkins", {
        "X-Jenkins-JNLP-Port": String(this.agentPort),
        "X-Instance-Identity": this.#identity,
        "X-Jenkins-Agent-Protocols": "JNLP4-connect, Ping",
        "Content-Type": "text/plain",
      });
    }
    if (path === "/login")
      return send(this.loginStatus, "<html>login</html>", { "Content-Type": "text/html" });
    return send(404, "Not Found");
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    this.#track(socket);
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const refuse = (status: number, text: string): true => {
      this.#record(req, status);
      socket.end(
        `HTTP/1.1 ${status} ${text}\r\nX-Jenkins: ${this.version}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
      );
      return true;
    };
    if (path !== "/wsagents/") return refuse(404, "Not Found");
    const name = String(req.headers["node-name"] ?? "");
    const node = this.nodes.get(name);
    if (node === undefined) return refuse(400, "Bad Request");
    if (req.headers["secret-key"] !== node.secret) return refuse(403, "Forbidden");
    this.#record(req, 101);
    this.#wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const session = this.#open(name, "websocket");
      const script = [...node.script];
      const next = () => {
        const command = script.shift();
        if (command === undefined) ws.close(1000);
        else if (command !== "hang") ws.send(command);
      };
      ws.on("message", (data) => {
        session.acks.push(String(data));
        next();
      });
      ws.on("close", () => this.#closed(session));
      next();
    });
    return true;
  }

  #agentPort(socket: Socket): void {
    this.#track(socket);
    let buffer = "";
    let session: Session | undefined;
    let script: string[] = [];
    const next = () => {
      const command = script.shift();
      if (command === undefined) socket.end();
      else if (command !== "hang") socket.write(`${command}\n`);
    };
    socket.on("error", () => {});
    socket.on("close", () => {
      if (session) this.#closed(session);
    });
    socket.on("data", (chunk) => {
      buffer += chunk.toString("utf8");
      if (session === undefined) {
        const end = buffer.indexOf("\n\n");
        if (end === -1) return;
        const headers = buffer.slice(0, end).split("\n");
        buffer = buffer.slice(end + 2);
        const name = headers.find((h) => h.startsWith("Node-Name: "))?.slice(11) ?? "";
        const secret = headers.find((h) => h.startsWith("Secret-Key: "))?.slice(12);
        const node = this.nodes.get(name);
        if (headers[0] !== "Protocol:JNLP4-connect" || node === undefined) {
          socket.end(`Unknown client name: ${name}\n`);
          return;
        }
        if (secret !== node.secret) {
          socket.end("Authorization failure\n");
          return;
        }
        socket.write("Welcome\n");
        session = this.#open(name, "tcp");
        script = [...node.script];
        next();
      }
      for (let nl = buffer.indexOf("\n"); nl !== -1; nl = buffer.indexOf("\n")) {
        session.acks.push(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
        next();
      }
    });
  }

  #open(name: string, transport: Session["transport"]): Session {
    const session: Session = { name, transport, acks: [], openedAt: Date.now() };
    this.sessions.push(session);
    return session;
  }

  #closed(session: Session): void {
    if (session.closedAt !== undefined) return;
    session.closedAt = Date.now();
    this.nodes.delete(session.name); // single-use: the node is removed once its channel closed
  }
}

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import ssh2 from "ssh2";

/**
 * Git servers on 127.0.0.1 for the image tests: the host's git serves a directory of bare
 * repositories over smart HTTP behind TLS (`git http-backend` as a CGI program, as Apache or
 * nginx run it) and over SSH (an ssh2 server that runs `git-upload-pack` / `git-receive-pack`
 * for the commands an OpenSSH client sends, as a git host's sshd does). The image's own git and
 * ssh clients connect to them.
 */

/** A bare repository `NAME.git` under `root` with one commit (a README) on `main`. */
export function bareRepository(root: string, name: string): string {
  const work = join(root, `${name}.work`);
  const bare = join(root, `${name}.git`);
  const git = (args: string[], cwd = work) => execFileSync("git", args, { cwd, stdio: "pipe" });
  execFileSync("git", ["init", "-q", "-b", "main", work]);
  git(["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "init"]);
  execFileSync("sh", ["-c", `echo "hello from ${name}" > README && git add README`], { cwd: work });
  git(["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "readme"]);
  git(["clone", "-q", "--bare", work, bare], root);
  git(["config", "http.receivepack", "true"], bare);
  return bare;
}

/** A self-signed certificate for 127.0.0.1 (P-256, one day), with the host's openssl. */
export function selfSignedCertificate(dir: string): { cert: string; key: string; certPath: string } {
  const certPath = join(dir, "server.crt");
  const keyPath = join(dir, "server.key");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
      "-keyout",
      keyPath,
      "-out",
      certPath,
    ],
    { stdio: "pipe" },
  );
  return {
    cert: execFileSync("cat", [certPath]).toString(),
    key: execFileSync("cat", [keyPath]).toString(),
    certPath,
  };
}

export interface GitServer {
  /** `https://127.0.0.1:PORT/` or `ssh://git@127.0.0.1:PORT/`: append `NAME.git`. */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Smart HTTP over TLS: `git http-backend` for every request, its CGI headers turned into HTTP. */
export async function startGitHttps(root: string, tls: { cert: string; key: string }): Promise<GitServer> {
  const children = new Set<ChildProcess>();
  const server: HttpsServer = createHttpsServer(tls, (req, res) => {
    const url = new URL(req.url ?? "/", "https://127.0.0.1");
    const child = spawn("git", ["http-backend"], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: "1",
        PATH_INFO: decodeURIComponent(url.pathname),
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? "GET",
        CONTENT_TYPE: req.headers["content-type"] ?? "",
        HTTP_CONTENT_ENCODING: req.headers["content-encoding"] ?? "",
        GIT_PROTOCOL: String(req.headers["git-protocol"] ?? ""),
        REMOTE_USER: "agent",
        REMOTE_ADDR: "127.0.0.1",
      },
      stdio: ["pipe", "pipe", "ignore"],
    });
    children.add(child);
    child.once("close", () => children.delete(child));
    req.pipe(child.stdin!);
    let head = Buffer.alloc(0);
    let headersDone = false;
    child.stdout!.on("data", (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      headersDone = true;
      let status = 200;
      for (const line of head.subarray(0, end).toString("latin1").split("\r\n")) {
        const colon = line.indexOf(":");
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === "status") status = Number.parseInt(value, 10);
        else res.setHeader(name, value);
      }
      res.writeHead(status);
      res.write(head.subarray(end + 4));
    });
    child.once("close", () => res.end());
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}/`,
    port,
    async close() {
      for (const child of children) child.kill("SIGKILL");
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };
}

/** An ed25519 key pair in OpenSSH formats (`private` for `ssh -i`, `public` for authorized keys). */
export function sshKeyPair(): { private: string; public: string } {
  return ssh2.utils.generateKeyPairSync("ed25519");
}

/**
 * SSH for git: public-key authentication with `clientPublicKey` only, and the two commands git
 * sends (`git-upload-pack '/NAME.git'`, `git-receive-pack '/NAME.git'`), run on `root`.
 */
export async function startGitSsh(root: string, clientPublicKey: string): Promise<GitServer> {
  const allowed = ssh2.utils.parseKey(clientPublicKey);
  if (allowed instanceof Error) throw allowed;
  const children = new Set<ChildProcess>();
  const server = new ssh2.Server({ hostKeys: [sshKeyPair().private] }, (client) => {
    client.on("error", () => {});
    client.on("authentication", (ctx) => {
      const ok =
        ctx.method === "publickey" &&
        ctx.key.algo === allowed.type &&
        ctx.key.data.equals(allowed.getPublicSSH()) &&
        (ctx.signature === undefined || allowed.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) === true);
      if (ok) ctx.accept();
      else ctx.reject(["publickey"]);
    });
    client.on("ready", () => {
      client.on("session", (acceptSession) => {
        const session = acceptSession();
        session.on("env", (accept) => accept?.());
        session.on("exec", (accept, reject, info) => {
          const match = /^(git-upload-pack|git-receive-pack) '\/?([\w.-]+\.git)'$/.exec(info.command);
          if (!match) {
            reject?.();
            return;
          }
          const stream = accept();
          const child = spawn(match[1]!, [join(root, match[2]!)], { stdio: ["pipe", "pipe", "pipe"] });
          children.add(child);
          stream.pipe(child.stdin!);
          child.stdout!.pipe(stream, { end: false });
          child.stderr!.pipe(stream.stderr, { end: false });
          child.once("close", (code) => {
            children.delete(child);
            stream.exit(code ?? 1);
            stream.end();
          });
        });
      });
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `ssh://git@127.0.0.1:${port}/`,
    port,
    async close() {
      for (const child of children) child.kill("SIGKILL");
      server.close();
    },
  };
}

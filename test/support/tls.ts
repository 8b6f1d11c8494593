import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

export interface TestPki {
  /** The private CA's certificate (what NODE_EXTRA_CA_CERTS names). */
  caCert: string;
  /** A server certificate for 127.0.0.1 and localhost, signed by the CA, and its key. */
  cert: string;
  key: string;
  /** A self-signed certificate for 127.0.0.1 that no one trusts, and its key. */
  untrustedCert: string;
  untrustedKey: string;
}

/**
 * Makes a private CA and certificates with Debian's openssl in `dir` (a few hundred ms): what an
 * operator does for a controller on a private network.
 */
export function makeTestPki(dir: string): TestPki {
  const path = (name: string) => join(dir, name);
  // Arguments as one line each, `{name}` standing for a file in `dir`.
  const openssl = (args: string, ...extra: string[]) =>
    execFileSync(
      "openssl",
      [...args.split(" ").map((arg) => arg.replace(/^\{(.+)\}$/, (_, name: string) => path(name))), ...extra],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
  const ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  const san = "subjectAltName=IP:127.0.0.1,DNS:localhost";
  openssl(
    `req -x509 ${ec} -keyout {ca.key} -out {ca.pem} -days 2 -addext basicConstraints=critical,CA:TRUE`,
    "-subj",
    "/CN=Test CI CA",
  );
  openssl(`req ${ec} -keyout {server.key} -out {server.csr} -subj /CN=127.0.0.1`);
  writeFileSync(path("server.ext"), `${san}\nextendedKeyUsage=serverAuth\n`);
  openssl(
    "x509 -req -in {server.csr} -CA {ca.pem} -CAkey {ca.key} -CAcreateserial -out {server.pem} -days 2 -extfile {server.ext}",
  );
  openssl(
    `req -x509 ${ec} -keyout {untrusted.key} -out {untrusted.pem} -days 2 -subj /CN=127.0.0.1 -addext ${san}`,
  );
  return {
    caCert: path("ca.pem"),
    cert: path("server.pem"),
    key: path("server.key"),
    untrustedCert: path("untrusted.pem"),
    untrustedKey: path("untrusted.key"),
  };
}

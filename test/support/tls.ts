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
  const openssl = (...args: string[]) =>
    execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  const san = "subjectAltName=IP:127.0.0.1,DNS:localhost";
  openssl(
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    path("ca.key"),
    "-out",
    path("ca.pem"),
    "-days",
    "2",
    "-subj",
    "/CN=Test CI CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  );
  openssl(
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    path("server.key"),
    "-out",
    path("server.csr"),
    "-subj",
    "/CN=127.0.0.1",
  );
  writeFileSync(path("server.ext"), `${san}\nextendedKeyUsage=serverAuth\n`);
  openssl(
    "x509",
    "-req",
    "-in",
    path("server.csr"),
    "-CA",
    path("ca.pem"),
    "-CAkey",
    path("ca.key"),
    "-CAcreateserial",
    "-out",
    path("server.pem"),
    "-days",
    "2",
    "-extfile",
    path("server.ext"),
  );
  openssl(
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    path("untrusted.key"),
    "-out",
    path("untrusted.pem"),
    "-days",
    "2",
    "-subj",
    "/CN=127.0.0.1",
    "-addext",
    san,
  );
  return {
    caCert: path("ca.pem"),
    cert: path("server.pem"),
    key: path("server.key"),
    untrustedCert: path("untrusted.pem"),
    untrustedKey: path("untrusted.key"),
  };
}

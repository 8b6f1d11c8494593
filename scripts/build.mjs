// Bundles the three programs with esbuild: self-contained ESM files that need no node_modules.
import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { build } from "esbuild";

const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));

const common = {
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  minify: true,
  // Error classes keep their names (ConfigError...) in logs and in Lambda's errorType.
  keepNames: true,
  sourcemap: "linked",
  legalComments: "linked",
  // ws loads these optional native helpers in a try/catch. proxy-agent loads its PAC and SOCKS
  // agents on demand; the agent accepts only http(s) proxies (agent-core/net/proxy.ts), so they
  // are never loaded and stay out of the bundles (the PAC one carries a JavaScript engine).
  external: ["bufferutil", "utf-8-validate", "pac-proxy-agent", "socks-proxy-agent"],
  define: { __AGENT_VERSION__: JSON.stringify(version) },
  // CommonJS dependencies (ws) call require() on Node built-ins.
  banner: {
    js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
  },
  logLevel: "warning",
};

// Code splitting keeps what is loaded on demand (the AWS SDK behind the CloudWatch copy of the
// job log) in chunks beside each program, so a start that does not use it does not parse it.
const split = (entry, outdir, name, extension) => ({
  ...common,
  entryPoints: { [name]: entry },
  outdir,
  splitting: true,
  chunkNames: "chunks/[name]-[hash]",
  outExtension: { ".js": extension },
});

await rm("dist", { recursive: true, force: true });
await Promise.all([
  build(split("container-entrypoint/bin.ts", "dist", "container-entrypoint", ".mjs")),
  build(split("controller/bin.ts", "dist", "controller", ".mjs")),
  // osls invoke local loads the handler with require(): a .js file in this "type": "module" package.
  build(split("lambda-handler/index.ts", "dist/lambda", "handler", ".js")),
]);

// Bundles the three programs with esbuild: self-contained ESM files that need no node_modules;
// and the controller's web view (dist/web: index.html, assets/app.js, assets/app.css), which
// the controller serves: nothing is fetched from elsewhere at run time.
import { readFileSync } from "node:fs";
import { copyFile, mkdir, rm } from "node:fs/promises";
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
  // ws loads these optional native helpers in a try/catch.
  external: ["bufferutil", "utf-8-validate"],
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
  buildWeb(),
]);

async function buildWeb() {
  await build({
    entryPoints: { app: "controller/web/main.tsx" },
    outdir: "dist/web/assets",
    bundle: true,
    platform: "browser",
    target: ["chrome111", "firefox111", "safari16.4"],
    format: "esm",
    minify: true,
    sourcemap: "linked",
    legalComments: "linked",
    jsx: "automatic",
    jsxImportSource: "preact",
    logLevel: "warning",
  });
  await mkdir("dist/web", { recursive: true });
  await copyFile("controller/web/index.html", "dist/web/index.html");
}

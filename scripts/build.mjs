// Bundles the programs with esbuild: self-contained ESM files that need no node_modules; and the
// controller's web view (dist/web: index.html, assets/app.js, assets/app.css), which the
// controller serves: nothing is fetched from elsewhere at run time.
//   node scripts/build.mjs                                  # all of them
//   node scripts/build.mjs container-entrypoint lambda      # only these (the image's build stage)
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
const split = (entryPoints, outdir, extension) => ({
  ...common,
  entryPoints,
  outdir,
  splitting: true,
  chunkNames: "chunks/[name]-[hash]",
  outExtension: { ".js": extension },
});

const programs = {
  "container-entrypoint": () =>
    build(split({ "container-entrypoint": "container-entrypoint/bin.ts" }, "dist", ".mjs")),
  controller: () => build(split({ controller: "controller/bin.ts" }, "dist", ".mjs")),
  // The deploy command (npm run rollout): not part of the Lambda package.
  deploy: () => build(split({ deploy: "deploy/bin.ts" }, "dist", ".mjs")),
  // osls invoke local loads the handler with require(): a .js file in this "type": "module" package.
  // The bootstrap (the Runtime API loop of the container image) shares the handler's chunks.
  lambda: () =>
    build(
      split(
        { handler: "lambda-handler/handler.ts", bootstrap: "lambda-handler/bootstrap-bin.ts" },
        "dist/lambda",
        ".js",
      ),
    ),
  web: buildWeb,
};
const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !Object.hasOwn(programs, name));
if (unknown.length > 0) {
  console.error(
    `build: unknown program ${unknown.join(", ")}; expected some of ${Object.keys(programs).join(", ")}`,
  );
  process.exit(2);
}

await rm("dist", { recursive: true, force: true });
await Promise.all((wanted.length > 0 ? wanted : Object.keys(programs)).map((name) => programs[name]()));

/** The web view: a browser bundle and its page. */
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

// Bundles the three programs with esbuild: self-contained ESM files that need no node_modules.
import { readFileSync } from "node:fs";
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

await Promise.all([
  build({
    ...common,
    entryPoints: ["container-entrypoint/bin.ts"],
    outfile: "dist/container-entrypoint.mjs",
  }),
  build({ ...common, entryPoints: ["controller/bin.ts"], outfile: "dist/controller.mjs" }),
  // osls invoke local loads the handler with require(): a .js file in this "type": "module" package.
  build({ ...common, entryPoints: ["lambda-handler/index.ts"], outfile: "dist/lambda/handler.js" }),
]);

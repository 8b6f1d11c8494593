// npm test: lint (biome), then the type check (tsc, both projects) beside the test suite (vitest,
// whose global setup builds the bundles first: test/support/global-setup.ts), so that tsc's CPU
// overlaps the suite's waits for processes, sockets and timers instead of adding to them. Every
// step must pass; the type check's output is printed once it ends.
// The type check is incremental (node_modules/.cache/tsc): unchanged files are not checked again.
//   node scripts/test.mjs [vitest arguments...]
import { spawn } from "node:child_process";

/** Runs a command; resolves with its exit code and, when `capture`, its output (stdout and stderr). */
function run(command, args, { capture = false } = {}) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: capture ? ["ignore", "pipe", "pipe"] : "inherit" });
    let output = "";
    if (capture) {
      child.stdout.on("data", (d) => {
        output += d;
      });
      child.stderr.on("data", (d) => {
        output += d;
      });
    }
    child.on("error", (error) => resolve({ code: 127, output: `${command}: ${error.message}\n` }));
    child.on("close", (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), output }));
  });
}

const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const lint = await run(npm, ["run", "--silent", "lint"]);
if (lint.code !== 0) process.exit(lint.code);

const typecheck = run(npm, ["run", "--silent", "typecheck"], { capture: true });
const tests = await run("npx", ["vitest", "run", ...process.argv.slice(2)]);
const checked = await typecheck;
process.stdout.write(checked.output);
process.stdout.write(`typecheck: ${checked.code === 0 ? "passed" : `failed (exit ${checked.code})`}\n`);
process.exit([tests.code, checked.code].find((code) => code !== 0) ?? 0);

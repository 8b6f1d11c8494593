// The image test: `npm run image:test` (and .ci/run). Builds images/Dockerfile with buildah
// against a local Debian + node base (no Docker engine, no registry here), both targets, then
// runs the image scenarios in test/image/*.test.ts with vitest. Too slow for `npm test`.
//
// Environment:
//   IMAGE_TEST_SKIP=<reason>   skip, saying why (not honoured in CI)
//   IMAGE_TEST_NODE=<path>     the node binary of the base (default: the official Node.js binary
//                              of the version images/Dockerfile's BASE names, from the npm
//                              registry's node-linux-<arch> package, so that the image tested and
//                              measured is the Node 22 image that ships); npm comes from
//                              IMAGE_TEST_NPM=<dir> (default: this npm's package directory)
//   IMAGE_TEST_CACHE=<dir>     where the debootstrap tree and build logs are kept
//                              (default: ~/.cache/ephemeral-agent/image-test)
//   IMAGE_TEST_REBUILD_BASE=1  rebuild the base even when one of the same inputs exists
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fakeRemotingJar, JAVAC_MISSING } from "../support/fake-remoting-jar.ts";
import { IMAGES } from "./support/image.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const CI = process.env.CI === "true" || process.env.CI === "1";
const cacheDir = process.env.IMAGE_TEST_CACHE ?? join(homedir(), ".cache/ephemeral-agent/image-test");

function say(message: string): void {
  process.stderr.write(`image:test: ${message}\n`);
}

function skipReason(): string | undefined {
  const asked = process.env.IMAGE_TEST_SKIP;
  if (asked !== undefined && asked.trim() !== "") {
    if (CI) say(`IMAGE_TEST_SKIP is not honoured in CI (${asked}); running`);
    else return asked;
  }
  if (process.getuid?.() !== 0) {
    if (CI) throw new Error("the image test needs root (buildah, debootstrap, unshare); CI runs as root");
    return "needs root (buildah builds, debootstrap and unshare --pid); run it as root or in CI";
  }
  return undefined;
}

function has(tool: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" }).status === 0;
}

/** buildah, debootstrap and unshare from Debian, when missing (a teammate's apt may hold the lock: wait). */
function ensureTools(): void {
  const packages: Record<string, string> = {
    buildah: "buildah",
    debootstrap: "debootstrap",
    unshare: "util-linux",
  };
  const missing = Object.entries(packages).filter(([tool]) => !has(tool));
  if (missing.length === 0) return;
  const names = missing.map(([, pkg]) => pkg);
  say(`installing ${names.join(", ")} from Debian`);
  const apt = (args: string[]) =>
    execFileSync("apt-get", ["-o", "DPkg::Lock::Timeout=300", ...args], {
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
  apt(["update", "-qq"]);
  apt(["install", "-y", "-qq", "--no-install-recommends", ...names]);
}

function buildah(args: string[], log?: string): void {
  const result = spawnSync("buildah", args, {
    cwd: ROOT,
    env: { ...process.env, BUILDAH_ISOLATION: "chroot" },
    stdio: ["ignore", "pipe", "pipe"],
    maxBuffer: 256 * 1024 * 1024,
  });
  const output = `${result.stdout?.toString() ?? ""}${result.stderr?.toString() ?? ""}`;
  if (log) writeFileSync(log, output);
  if (result.status !== 0) {
    process.stderr.write(output.split("\n").slice(-40).join("\n"));
    throw new Error(`buildah ${args[0]} failed (exit ${result.status})${log ? `; full log: ${log}` : ""}`);
  }
}

function imageExists(tag: string): boolean {
  return spawnSync("buildah", ["inspect", "--type", "image", tag], { stdio: "ignore" }).status === 0;
}

/** The Node.js version the Dockerfile's default BASE pins (`node:22.23.5-bookworm-slim` -> 22.23.5). */
function baseNodeVersion(dockerfile: string): string {
  const match = /^ARG BASE=\S*node:(\d+\.\d+\.\d+)-/m.exec(dockerfile);
  if (!match)
    throw new Error(
      "images/Dockerfile: no `ARG BASE=...node:X.Y.Z-...` line to take the Node.js version from",
    );
  return match[1]!;
}

/**
 * The official Node.js binary of the BASE's version: the npm registry's `node-linux-<arch>`
 * package (the release tarball's contents), fetched once with `npm pack` (which checks the
 * registry's integrity hash) and unpacked in the cache.
 */
function officialNode(): string {
  const version = baseNodeVersion(readFileSync(join(ROOT, "images/Dockerfile"), "utf8"));
  const pkg = `node-linux-${process.arch}`;
  const dir = join(cacheDir, `${pkg}-${version}`);
  const binary = join(dir, "package/bin/node");
  if (existsSync(binary)) return binary;
  say(`fetching ${pkg}@${version} from the npm registry`);
  mkdirSync(dir, { recursive: true });
  const tarball = execFileSync("npm", ["pack", `${pkg}@${version}`, "--pack-destination", dir, "--silent"], {
    stdio: ["ignore", "pipe", "inherit"],
  })
    .toString()
    .trim()
    .split("\n")
    .at(-1)!;
  execFileSync("tar", ["-xzf", join(dir, tarball), "-C", dir, "package/bin/node"]);
  rmSync(join(dir, tarball));
  return binary;
}

/** The npm package directory of the npm that runs this (…/lib/node_modules/npm). */
function npmDir(): string {
  if (process.env.IMAGE_TEST_NPM) return process.env.IMAGE_TEST_NPM;
  const cli = realpathSync(execFileSync("sh", ["-c", "command -v npm"]).toString().trim());
  return dirname(dirname(cli));
}

/** A base tag that changes with its inputs: the node binary, npm, and the script that builds it. */
function baseTag(node: string, npm: string): string {
  const hash = createHash("sha256");
  hash.update(readFileSync(join(ROOT, "test/image/build-base.sh")));
  hash.update(execFileSync(node, ["--version"]));
  hash.update(JSON.parse(readFileSync(join(npm, "package.json"), "utf8")).version as string);
  hash.update(readFileSync(node));
  return `localhost/ephemeral-agent-base:bookworm-${hash.digest("hex").slice(0, 12)}`;
}

/** The CA bundle of this machine, for the build stage's `npm ci` behind a TLS-intercepting proxy. */
function caBundle(): string | undefined {
  for (const path of [process.env.NODE_EXTRA_CA_CERTS, "/etc/ssl/certs/ca-certificates.crt"]) {
    if (path && existsSync(path)) return path;
  }
  return undefined;
}

function timed<T>(what: string, run: () => T): { value: T; ms: number } {
  const started = performance.now();
  const value = run();
  const ms = Math.round(performance.now() - started);
  say(`${what}: ${(ms / 1000).toFixed(1)} s`);
  return { value, ms };
}

async function main(): Promise<number> {
  const reason = skipReason();
  if (reason !== undefined) {
    say(`skipped: ${reason}`);
    return 0;
  }
  mkdirSync(cacheDir, { recursive: true });
  ensureTools();

  const node = realpathSync(process.env.IMAGE_TEST_NODE ?? officialNode());
  const npm = npmDir();
  const base = baseTag(node, npm);
  const baseBuild = timed(`base ${base}`, () => {
    if (!process.env.IMAGE_TEST_REBUILD_BASE && imageExists(base)) return "cached";
    execFileSync(join(ROOT, "test/image/build-base.sh"), [base, node, npm, cacheDir], {
      stdio: ["ignore", "inherit", "inherit"],
    });
    return "built";
  });

  const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
  const revision =
    spawnSync("git", ["rev-parse", "HEAD"], { cwd: ROOT }).stdout?.toString().trim() || "unknown";
  const ca = caBundle();
  const common = [
    "bud",
    "--layers",
    "-f",
    "images/Dockerfile",
    "--build-arg",
    `BASE=${base}`,
    "--build-arg",
    `VERSION=${version}`,
    "--build-arg",
    `REVISION=${revision}`,
    "--build-arg",
    `CREATED=${new Date().toISOString()}`,
    ...(ca ? ["--secret", `id=build-ca,src=${ca}`] : []),
  ];
  const builds: Record<string, number> = {};
  // The jenkins image is built with a baked agent.jar (and so its class-data archive): the test
  // fixture that behaves like remoting, which the image tests' fake Jenkins serves too.
  const bakedJar = join(ROOT, "images/jenkins-agent/agent.jar");
  if (JAVAC_MISSING === null) copyFileSync(fakeRemotingJar(), bakedJar);
  else say(`the jenkins image is built without a baked agent.jar: ${JAVAC_MISSING}`);
  try {
    for (const [target, tag] of Object.entries(IMAGES)) {
      const log = join(cacheDir, `build-${target}.log`);
      builds[target] = timed(`build ${tag} (--target ${target})`, () =>
        buildah([...common, "--target", target, "-t", tag, "."], log),
      ).ms;
    }
  } finally {
    rmSync(bakedJar, { force: true });
  }
  writeFileSync(
    join(cacheDir, "last-build.json"),
    `${JSON.stringify({ date: new Date().toISOString(), revision, node: execFileSync(node, ["--version"]).toString().trim(), base, baseBuild: { how: baseBuild.value, ms: baseBuild.ms }, images: IMAGES, buildMs: builds }, null, 2)}\n`,
  );

  const vitest = spawn(
    process.execPath,
    [join(ROOT, "node_modules/vitest/vitest.mjs"), "run", "--config", "test/image/vitest.config.ts"],
    {
      cwd: ROOT,
      stdio: "inherit",
      env: {
        ...process.env,
        BUILDAH_ISOLATION: "chroot",
        IMAGE_TEST_DEFAULT: IMAGES.default,
        IMAGE_TEST_JENKINS: IMAGES.jenkins,
      },
    },
  );
  const [code] = (await once(vitest, "close")) as [number | null];
  return code ?? 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    say(`failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);

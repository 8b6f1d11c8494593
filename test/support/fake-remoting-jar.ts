import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FIXTURES } from "./harness.ts";

const SOURCE = join(FIXTURES, "fake-remoting", "FakeRemoting.java");

/** Why the fake agent.jar cannot be built here (no javac or jar), or null when it can. */
export const JAVAC_MISSING: string | null = (() => {
  for (const tool of ["javac", "jar", "java"]) {
    try {
      execFileSync(tool, ["--version"], { stdio: "ignore" });
    } catch {
      return `no ${tool} on PATH`;
    }
  }
  return null;
})();

/**
 * The fake remoting agent.jar (test/fixtures/fake-remoting), compiled with javac on first use and
 * kept in the temp dir, keyed by its source and `version` (a different version is a different jar,
 * for the tests that change the controller's jar). Safe when test files build it at once.
 */
export function fakeRemotingJar(version = "3355.v388858a_47b_33"): string {
  const source = readFileSync(SOURCE);
  const key = createHash("sha256").update(source).update(version).digest("hex").slice(0, 16);
  const dir = join(tmpdir(), `fake-remoting-${key}`);
  const jar = join(dir, "agent.jar");
  if (existsSync(jar)) return jar;
  const work = `${dir}.${process.pid}.${Date.now()}`;
  mkdirSync(join(work, "classes"), { recursive: true });
  execFileSync("javac", ["-nowarn", "-XDignore.symbol.file", "-d", join(work, "classes"), SOURCE], {
    stdio: "pipe",
  });
  writeFileSync(join(work, "manifest.txt"), `Main-Class: FakeRemoting\nVersion: ${version}\n`);
  execFileSync("jar", [
    "cfm",
    join(work, "agent.jar"),
    join(work, "manifest.txt"),
    "-C",
    join(work, "classes"),
    ".",
  ]);
  try {
    renameSync(work, dir);
  } catch {
    rmSync(work, { recursive: true, force: true }); // another worker built it first
  }
  return jar;
}

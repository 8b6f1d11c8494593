import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../support/harness.ts";

/**
 * The sources a built program loads before it runs anything: the program and every chunk it
 * imports statically, read from their source maps; with `dynamic`, the chunks it may `import()` too.
 */
function startSources(program: string, dynamic = false): string[] {
  const seen = new Set<string>();
  const sources = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const code = readFileSync(file, "utf8");
    const map = JSON.parse(readFileSync(`${file}.map`, "utf8")) as { sources: string[] };
    for (const source of map.sources) sources.add(resolve(dirname(file), source).slice(ROOT.length + 1));
    for (const match of code.matchAll(
      /(?:^|[;}\s])(?:import|export)\s*(?:[^"'();]*?from\s*)?["'](\.[^"']+)["']/g,
    )) {
      visit(resolve(dirname(file), match[1]!));
    }
    if (dynamic)
      for (const match of code.matchAll(/import\("(\.[^"]+)"\)/g)) visit(resolve(dirname(file), match[1]!));
  };
  visit(join(ROOT, program));
  return [...sources];
}

// What a start loads on demand only: Jenkins mode, a job's transfers, the smoke test.
const ON_DEMAND = [
  "agent-core/jenkins/supervisor.ts",
  "agent-core/job/transfer-phases.ts",
  "agent-core/job/transfers.ts",
  "agent-core/workspace/caches.ts",
  "agent-core/workspace/select.ts",
  "agent-core/workspace/extract.ts",
  "node_modules/picomatch/lib/picomatch.js",
];

describe("start graph: what the bundles load before they run (issue 16)", () => {
  it("the container entrypoint loads the runner of the agent, not Jenkins mode or the transfers", () => {
    const sources = startSources("dist/container-entrypoint.mjs");
    expect(sources).toContain("agent-core/run-agent.ts");
    expect(sources.filter((source) => ON_DEMAND.includes(source))).toEqual([]);
  });

  it("the Lambda handler's import loads the handler, not the smoke test, Jenkins mode or the transfers", () => {
    const sources = startSources("dist/lambda/handler.js");
    expect(sources).toContain("lambda-handler/handler.ts");
    expect(sources.filter((source) => [...ON_DEMAND, "lambda-handler/smoke.ts"].includes(source))).toEqual(
      [],
    );
  });

  it("the Lambda image's bootstrap (the Runtime API loop) loads the loop, not the smoke test, Jenkins mode or the transfers", () => {
    const sources = startSources("dist/lambda/bootstrap.js");
    expect(sources).toContain("lambda-handler/runtime-loop.ts");
    expect(sources.filter((source) => [...ON_DEMAND, "lambda-handler/smoke.ts"].includes(source))).toEqual(
      [],
    );
  });

  it("the on-demand code is still in both bundles, in the chunks they load with import()", () => {
    expect(startSources("dist/container-entrypoint.mjs", true)).toEqual(expect.arrayContaining(ON_DEMAND));
    expect(startSources("dist/lambda/handler.js", true)).toEqual(
      expect.arrayContaining([...ON_DEMAND, "lambda-handler/smoke.ts"]),
    );
  });

  it("no program holds classic zod: the schemas are zod/mini's, whose schemas carry no methods to build", () => {
    for (const program of [
      "dist/container-entrypoint.mjs",
      "dist/lambda/handler.js",
      "dist/lambda/bootstrap.js",
      "dist/controller.mjs",
      "dist/deploy.mjs",
    ]) {
      const sources = startSources(program, true);
      expect(sources.filter((source) => source.startsWith("node_modules/zod/v4/classic/"))).toEqual([]);
    }
    expect(startSources("dist/container-entrypoint.mjs")).toContain("node_modules/zod/v4/mini/schemas.js");
  });
});

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ExitCode } from "../../agent-core/index.ts";

const root = join(import.meta.dirname, "../..");
const readme = readFileSync(join(root, "README.md"), "utf8");

/** The rows of the first table after `heading`, as trimmed cells. */
function tableAfter(heading: string): string[][] {
  const start = readme.indexOf(`\n${heading}\n`);
  expect(start, heading).toBeGreaterThanOrEqual(0);
  const lines = readme.slice(start).split("\n");
  const first = lines.findIndex((line) => line.startsWith("|"));
  const rows: string[][] = [];
  for (const line of lines.slice(first + 2)) {
    if (!line.startsWith("|")) break;
    rows.push(
      line
        .split("|")
        .slice(1, -1)
        .map((cell) => cell.trim()),
    );
  }
  return rows;
}

/** Every `"AGENT_ERR_..."` string in the agent's sources (the core and both wrappers). */
function agentCodesInSource(): Set<string> {
  const codes = new Set<string>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith(".ts")) {
        for (const m of readFileSync(path, "utf8").matchAll(/"(AGENT_ERR_[A-Z_]+)"/g)) codes.add(m[1]!);
      }
    }
  };
  for (const dir of ["agent-core", "lambda-handler", "container-entrypoint"]) walk(join(root, dir));
  return codes;
}

describe("the README's tables are the code's", () => {
  it("the exit code table is ExitCode: every code with its name, nothing more", () => {
    const documented = tableAfter("## Exit codes").flatMap(([codes, names]) => {
      const c = codes!.split("/").map((x) => Number(x.trim()));
      const n = names!.split("/").map((x) => x.trim());
      expect(c.length).toBe(n.length);
      return c.map((code, i) => [n[i]!, code] as const);
    });
    expect(Object.fromEntries(documented)).toEqual({ ...ExitCode });
  });

  it("the agent error code table lists every AGENT_ERR_* code the agent raises, and no other", () => {
    const documented = tableAfter("## Error codes").map(([code]) => code!.replaceAll("`", ""));
    const inSource = [...agentCodesInSource()];
    expect(inSource.length).toBeGreaterThan(15);
    const covered = (code: string) =>
      documented.includes(code) ||
      (code.startsWith("AGENT_ERR_ARCHIVE_") && documented.includes("AGENT_ERR_ARCHIVE_*"));
    expect(inSource.filter((code) => !covered(code))).toEqual([]);
    expect(documented.filter((code) => code !== "AGENT_ERR_ARCHIVE_*" && !inSource.includes(code))).toEqual(
      [],
    );
  });
});

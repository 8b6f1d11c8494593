import { describe, expect, it } from "vitest";
import { argMaxBytes, explainSpawnError, MAX_ARG_STRLEN } from "../../agent-core/runner/spawn-errors.ts";

const errno = (code: string) => Object.assign(new Error(`spawn ${code}`), { code });
const attempt = (over: Partial<Parameters<typeof explainSpawnError>[1]> = {}) => ({
  command: { run: "true" },
  file: "bash",
  args: ["-c", "true"],
  env: { PATH: "/usr/bin:/bin" },
  cwd: "/",
  ...over,
});

describe("argMaxBytes (Linux's bprm_stack_limits)", () => {
  const limits = (stack: string) =>
    `Limit                     Soft Limit           Hard Limit           Units\nMax stack size            ${stack}              unlimited            bytes\n`;
  it.each([
    ["8388608", 2_097_152],
    ["unlimited", 6 * 1_048_576],
    ["65536", 131_072],
    ["67108864", 6 * 1_048_576],
  ])("a stack limit of %s gives %i bytes", (stack, expected) => {
    expect(argMaxBytes(limits(stack))).toBe(expected);
  });
  it("falls back to 2 MiB when the limit cannot be read", () => {
    expect(argMaxBytes("nothing useful")).toBe(2_097_152);
  });
});

describe("explainSpawnError", () => {
  it("E2BIG: names the variable over MAX_ARG_STRLEN with its size, counting NAME=VALUE and the NUL", () => {
    const message = explainSpawnError(errno("E2BIG"), attempt({ env: { A: "a".repeat(MAX_ARG_STRLEN) } }));
    expect(message).toBe(
      "could not start the step: the environment variable A is 131,075 bytes, over Linux's limit of 131,072 bytes for one argument or environment string (MAX_ARG_STRLEN). Pass a value this large through a file in the workspace instead. (E2BIG)",
    );
  });

  it("E2BIG: a run script is named as such, with the advice to use a file", () => {
    const script = "s".repeat(200_000);
    const message = explainSpawnError(
      errno("E2BIG"),
      attempt({ command: { run: script }, args: ["-c", script] }),
    );
    expect(message).toMatch(/the `run` script is 200,001 bytes.*Put the script in a file in the workspace/);
  });

  it("E2BIG: multibyte values are counted in bytes, not characters", () => {
    const message = explainSpawnError(errno("E2BIG"), attempt({ env: { E: "é".repeat(70_000) } }));
    expect(message).toMatch(/the environment variable E is 140,003 bytes/);
  });

  it("E2BIG: under the per-string limit, the totals are given against ARG_MAX", () => {
    const env = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`V${i}`, "v".repeat(100_000)]));
    const message = explainSpawnError(errno("E2BIG"), attempt({ env }));
    expect(message).toMatch(
      /the arguments and environment take 3,000,\d{3} bytes \(environment: 3,000,\d{3} bytes in 30 variables; arguments: 13 bytes in 3; pointers: 264\), over the kernel's limit of [\d,]+ bytes \(ARG_MAX/,
    );
  });

  it("ENAMETOOLONG: the working directory is named when it is the long path", () => {
    const message = explainSpawnError(errno("ENAMETOOLONG"), attempt({ cwd: `/${"d".repeat(300)}` }));
    expect(message).toMatch(/a component of the working directory's path is 300 bytes.*NAME_MAX/);
  });

  it("quotes long values clipped", () => {
    const message = explainSpawnError(errno("ENOENT"), attempt({ file: `/x/${"p".repeat(3_000)}` }));
    expect(message).toMatch(/\.\.\." \(3,003 characters\)/);
    expect(message.length).toBeLessThan(300);
  });

  it("an unknown errno keeps the system's message", () => {
    expect(explainSpawnError(errno("EIO"), attempt())).toBe("could not start the step: spawn EIO (EIO)");
  });
});

import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { resolveInWorkspace } from "../../agent-core/workspace/workspace.ts";
import { tempDir } from "../support/harness.ts";

let dir: ReturnType<typeof tempDir>;
let ws: string;
beforeEach(() => {
  dir = tempDir("ws-paths-");
  ws = join(dir.path, "ws");
  mkdirSync(join(ws, "src", "deep"), { recursive: true });
  mkdirSync(join(dir.path, "sibling"));
  writeFileSync(join(ws, "file.txt"), "x");
});
afterEach(() => dir.remove());

const code = (fn: () => unknown) => {
  try {
    fn();
    return "none";
  } catch (error) {
    return (error as { code?: string }).code;
  }
};

describe("resolveInWorkspace checks real paths", () => {
  it("resolves plain relative directories, and the workspace itself", () => {
    expect(resolveInWorkspace(ws, undefined)).toBe(ws);
    expect(resolveInWorkspace(ws, "src/deep")).toBe(join(ws, "src", "deep"));
    expect(resolveInWorkspace(ws, "src/../src")).toBe(join(ws, "src"));
  });

  it("follows a symbolic link that stays inside the workspace", () => {
    symlinkSync("src/deep", join(ws, "shortcut"));
    expect(resolveInWorkspace(ws, "shortcut")).toBe(join(ws, "src", "deep"));
  });

  it.each([
    ["ln -s / link; link/etc", "/", "link/etc"],
    ["a link to the parent directory", "..", "up"],
    ["a link to a sibling of the workspace", "../sibling", "side"],
    ["a link chain that ends outside", "hop2", "hop1"],
  ])("refuses %s", (_what, target, path) => {
    if (path === "hop1") {
      symlinkSync("..", join(ws, "hop2"));
      symlinkSync("hop2", join(ws, "hop1"));
    } else symlinkSync(target, join(ws, path.split("/")[0]!));
    expect(() => resolveInWorkspace(ws, path)).toThrow(/outside the workspace \(through a symbolic link\)/);
    expect(code(() => resolveInWorkspace(ws, path))).toBe("AGENT_ERR_WORKSPACE");
  });

  it.each([
    ["an absolute path", "/etc", /outside the workspace/],
    ["..", "..", /outside the workspace/],
    ["a path through ..", "src/../../sibling", /outside the workspace/],
    ["a regular file", "file.txt", /"file\.txt" is not a directory/],
    ["a path through a regular file", "file.txt/x", /a component of it is not a directory/],
    ["a missing directory", "missing", /"missing" does not exist in the workspace/],
  ])("refuses %s", (_what, path, message) => {
    expect(() => resolveInWorkspace(ws, path)).toThrow(message);
  });

  it("accepts a directory whose name starts with two dots", () => {
    mkdirSync(join(ws, "..cache"));
    expect(resolveInWorkspace(ws, "..cache")).toBe(join(ws, "..cache"));
  });

  it("names the workspace when an earlier step removed it", () => {
    rmSync(ws, { recursive: true });
    expect(() => resolveInWorkspace(ws, undefined)).toThrow(
      new RegExp(`the job's workspace ${ws} no longer exists \\(was it removed by an earlier step\\?\\)`),
    );
  });

  it.each([
    ["a symbolic link to /", "/"],
    ["a symbolic link to a sibling directory", "sibling"],
  ])(
    "refuses a workspace that an earlier step replaced with %s (every later step would run there)",
    (_what, target) => {
      rmSync(ws, { recursive: true });
      symlinkSync(target === "/" ? "/" : join(dir.path, target), ws);
      expect(code(() => resolveInWorkspace(ws, undefined))).toBe("AGENT_ERR_WORKSPACE");
      expect(() => resolveInWorkspace(ws, "etc")).toThrow(
        /the job's workspace .* is no longer a directory \(an earlier step replaced it with a symbolic link\)/,
      );
    },
  );

  it("refuses a workspace that an earlier step replaced with a file", () => {
    rmSync(ws, { recursive: true });
    writeFileSync(ws, "x");
    expect(() => resolveInWorkspace(ws, undefined)).toThrow(
      /is no longer a directory \(an earlier step replaced it\)/,
    );
  });

  it.each([
    [
      "a working directory of 5,000 characters (PATH_MAX)",
      "d".repeat(5_000),
      /working directory "d{120}\.\.\. \(5000 characters\)": its path is 5,\d{3} bytes, over Linux's limit of 4,096 bytes for a path \(PATH_MAX\)/,
    ],
    [
      "a component of 300 characters (NAME_MAX)",
      `src/${"c".repeat(300)}`,
      /a component of it is 300 bytes, over Linux's limit of 255 bytes for a file name \(NAME_MAX\)/,
    ],
    [
      "a NUL byte",
      "src\0/deep",
      /working directory "src\\u0000\/deep" contains a NUL byte \(at character 3\)/,
    ],
  ])("names %s, its size against the limit, and never echoes it in full", (_what, path, message) => {
    let error: Error | undefined;
    try {
      resolveInWorkspace(ws, path);
    } catch (caught) {
      error = caught as Error;
    }
    expect((error as { code?: string }).code).toBe("AGENT_ERR_WORKSPACE");
    expect(error?.message).toMatch(message);
    expect(error!.message.length).toBeLessThan(400);
  });

  it("names a symbolic link loop (ELOOP)", () => {
    symlinkSync("loop-b", join(ws, "loop-a"));
    symlinkSync("loop-a", join(ws, "loop-b"));
    expect(() => resolveInWorkspace(ws, "loop-a")).toThrow(/too many levels of symbolic links \(ELOOP\)/);
  });
});

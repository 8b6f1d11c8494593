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
});

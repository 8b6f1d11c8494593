import { posix } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { linkTargetRefusal, normalizeEntryPath, patternRefusal } from "../../agent-core/index.ts";

const refusalCode = (raw: string) => {
  const result = normalizeEntryPath(raw);
  return "refusal" in result ? result.refusal.code : null;
};

describe("normalizeEntryPath", () => {
  it.each([
    ["a/b.txt", "a/b.txt"],
    ["./a/b.txt", "a/b.txt"],
    ["a//b/./c/", "a/b/c"],
    ["./", ""],
    [".", ""],
    ["ünïcødé/日本語 file.txt", "ünïcødé/日本語 file.txt"],
    ["..foo/bar..", "..foo/bar.."],
    ["C:foo", "C:foo"],
    ["a\\b", "a\\b"],
  ])("keeps %j as %j", (raw, normal) => {
    expect(normalizeEntryPath(raw)).toEqual({ path: normal });
  });

  it.each([
    ["/etc/passwd", "AGENT_ERR_ARCHIVE_ABSOLUTE_PATH"],
    ["//server/share", "AGENT_ERR_ARCHIVE_ABSOLUTE_PATH"],
    ["\\\\server\\share", "AGENT_ERR_ARCHIVE_ABSOLUTE_PATH"],
    ["C:\\Windows\\x", "AGENT_ERR_ARCHIVE_ABSOLUTE_PATH"],
    ["c:/x", "AGENT_ERR_ARCHIVE_ABSOLUTE_PATH"],
    ["../x", "AGENT_ERR_ARCHIVE_PARENT_PATH"],
    ["a/../../x", "AGENT_ERR_ARCHIVE_PARENT_PATH"],
    ["a/..", "AGENT_ERR_ARCHIVE_PARENT_PATH"],
    ["./../x", "AGENT_ERR_ARCHIVE_PARENT_PATH"],
    ["a\0b", "AGENT_ERR_ARCHIVE_BAD_PATH"],
    [`${"x".repeat(256)}/y`, "AGENT_ERR_ARCHIVE_BAD_PATH"],
    [Array(1025).fill("d").join("/"), "AGENT_ERR_ARCHIVE_BAD_PATH"],
    [Array(820).fill("dddd").join("/"), "AGENT_ERR_ARCHIVE_BAD_PATH"],
  ])("refuses %j with %s", (raw, code) => {
    expect(refusalCode(raw)).toBe(code);
  });

  it("never yields a path that is absolute or climbs, whatever the input", () => {
    const part = fc.constantFrom("a", "b", ".", "..", "", "ü", "\\", "C:", "x y");
    fc.assert(
      fc.property(fc.array(part, { maxLength: 8 }), fc.boolean(), (parts, leadingSlash) => {
        const raw = (leadingSlash ? "/" : "") + parts.join("/");
        const result = normalizeEntryPath(raw);
        if ("refusal" in result) return;
        expect(result.path.startsWith("/")).toBe(false);
        expect(result.path.split("/")).not.toContain("..");
        expect(posix.normalize(`/${result.path}`)).toBe(`/${result.path}`.replace(/\/$/, "") || "/");
      }),
    );
  });
});

describe("linkTargetRefusal", () => {
  it.each([
    ["link", "target"],
    ["link", "./target"],
    ["a/link", "../b/target"],
    ["a/b/link", "../../c"],
    ["a/link", ".."],
    ["a/link", "b/c/d"],
    ["link", "."],
  ])("accepts %j -> %j", (link, target) => {
    expect(linkTargetRefusal(link, target)).toBeNull();
  });

  it.each([
    ["link", "/etc/passwd", /absolute path/],
    ["link", "C:/x", /absolute path/],
    ["link", "..", /outside the workspace/],
    ["a/link", "../../x", /outside the workspace/],
    ["a/b/link", "../../../x", /outside the workspace/],
    // `d/s -> ..` is fine by itself, but `a -> d/s/..` would then resolve above the workspace.
    ["a", "d/s/..", /after its start/],
    ["a/link", "../b/../../x", /after its start/],
    ["link", "", /empty link target/],
  ])("refuses %j -> %j", (link, target, why) => {
    const refusal = linkTargetRefusal(link, target);
    expect(refusal?.code).toBe("AGENT_ERR_ARCHIVE_LINK_ESCAPE");
    expect(refusal?.why).toMatch(why);
  });

  it("accepts only targets that resolve inside the workspace", () => {
    const part = fc.constantFrom("a", "b", "..", ".", "");
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom("a", "b", "c"), { minLength: 1, maxLength: 4 }),
        fc.array(part, { minLength: 1, maxLength: 6 }),
        (link, target) => {
          const linkPath = link.join("/");
          const targetPath = target.join("/");
          if (linkTargetRefusal(linkPath, targetPath) !== null) return;
          const resolved = posix.normalize(posix.join("/ws", posix.dirname(linkPath), targetPath));
          expect(resolved === "/ws" || resolved.startsWith("/ws/")).toBe(true);
        },
      ),
    );
  });
});

describe("patternRefusal", () => {
  it.each(["dist/**", "**/*.xml", "./out", "a/{b,c}/*.txt", ".cache/x"])("accepts %j", (pattern) => {
    expect(patternRefusal(pattern)).toBeNull();
  });
  it.each([
    ["", /empty/],
    ["  ", /empty/],
    ["/etc/*", /relative/],
    ["../x/**", /\.\./],
    ["a/../../x", /\.\./],
  ])("refuses %j", (pattern, why) => {
    expect(patternRefusal(pattern)).toMatch(why);
  });
});

import { describe, expect, it } from "vitest";
import {
  CLIP_CHARS,
  ConfigError,
  clip,
  decodeNameHeader,
  deriveAgentSecret,
  encodeNameHeader,
  parseAgentConfig,
} from "../../agent-core/index.ts";

describe("agent names in the Node-Name header", () => {
  const names = [
    ["plain ASCII (unchanged on the wire)", "build-1.lambda-abcdef"],
    ["a Jenkins label expression with spaces", "linux && docker.lambda-abcdef"],
    ["CJK", "构建节点-1"],
    ["emoji", "🚀 agent 🐳"],
    ["leading and trailing spaces", "  padded  "],
    ["a percent sign", "100%-busy"],
    ["mixed scripts", "Ünïcødé ビルド ✓"],
  ];

  it.each(names)("%s round-trips through a header value that Node accepts", (_what, name) => {
    const header = encodeNameHeader(name);
    expect(header).toMatch(/^[\x21-\x7e]+$/); // printable ASCII only: valid in any HTTP header
    expect(decodeNameHeader(header)).toBe(name);
  });

  it("leaves printable ASCII without % unchanged, so older peers interoperate", () => {
    expect(encodeNameHeader("git&&bash.lambda-xyz")).toBe("git&&bash.lambda-xyz");
    expect(decodeNameHeader("git&&bash.lambda-xyz")).toBe("git&&bash.lambda-xyz");
    expect(decodeNameHeader("raw name with spaces")).toBe("raw name with spaces");
  });

  it.each([
    ["a % without two hex digits", "50%off"],
    ["a truncated escape", "abc%4"],
    ["bytes that are not UTF-8", "%FF%FE"],
    ["a lone continuation byte", "a%80b"],
  ])("refuses %s", (_what, header) => {
    expect(decodeNameHeader(header)).toBeUndefined();
  });

  it("the secret is derived from the decoded name, the same on both sides", () => {
    const name = "构建 🚀";
    expect(deriveAgentSecret("k", decodeNameHeader(encodeNameHeader(name))!)).toBe(
      deriveAgentSecret("k", name),
    );
  });

  it("the config accepts spaces and non-ASCII names, and refuses control characters and slashes", () => {
    const base = { url: "http://127.0.0.1:1/", secret: "s3cret-value" };
    expect(parseAgentConfig({ ...base, name: "构建 节点 🚀.lambda-abcdef" }).name).toBe(
      "构建 节点 🚀.lambda-abcdef",
    );
    for (const name of ["a\tb", "a/b", "a\\b", "a\u007fb"]) {
      expect(() => parseAgentConfig({ ...base, name })).toThrow(ConfigError);
    }
  });

  it("the config refuses a secret that no HTTP header can carry (exit 2, not a failure at connect)", () => {
    const base = { url: "http://127.0.0.1:1/", name: "a" };
    for (const secret of ["sécret-value", "with space", "line\nbreak", "秘密の値です"]) {
      let error: unknown;
      try {
        parseAgentConfig({ ...base, secret });
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems[0]).toMatchObject({ field: "secret" });
      expect((error as ConfigError).message).not.toContain(secret);
    }
  });
});

describe("clip: one helper for every echoed value", () => {
  it("leaves short values alone", () => {
    expect(clip("short")).toBe("short");
    expect(clip("x".repeat(CLIP_CHARS))).toBe("x".repeat(CLIP_CHARS));
  });

  it("cuts long values and says how long they were", () => {
    const clipped = clip("y".repeat(1_048_576));
    expect(clipped).toBe(`${"y".repeat(CLIP_CHARS)}... (1048576 characters)`);
  });

  it("never cuts a surrogate pair in half", () => {
    const clipped = clip(`${"a".repeat(CLIP_CHARS - 1)}😀😀😀`);
    expect(clipped.startsWith(`${"a".repeat(CLIP_CHARS - 1)}...`)).toBe(true);
    expect(clipped).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])/);
  });

  it("a config error never echoes a 1 MB field name or value in full", () => {
    const huge = "k".repeat(1_048_576);
    let error: ConfigError | undefined;
    try {
      parseAgentConfig({ url: huge, secret: "s3cret-value", name: "a", [huge]: 1 });
    } catch (caught) {
      error = caught as ConfigError;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(error!.message.length).toBeLessThan(2_000);
    expect(JSON.stringify(error!.problems).length).toBeLessThan(2_000);
  });
});

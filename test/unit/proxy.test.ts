import { afterEach, describe, expect, it } from "vitest";
import { PROXY_VARIABLES, proxyFor, proxyProblems } from "../../agent-core/index.ts";

const saved = Object.fromEntries(
  [...PROXY_VARIABLES, "NO_PROXY", "no_proxy"].map((n) => [n, process.env[n]]),
);
afterEach(() => {
  for (const [name, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});
function setEnv(values: Record<string, string>): void {
  for (const name of Object.keys(saved)) delete process.env[name];
  Object.assign(process.env, values);
}

describe("the proxy for a connection, from the environment", () => {
  it.each([
    [
      "HTTPS_PROXY for wss",
      { HTTPS_PROXY: "http://p:3128" },
      "wss://ci.example.com/agents/v1",
      "http://p:3128",
    ],
    [
      "https_proxy (lower case) for wss",
      { https_proxy: "http://p:3128" },
      "wss://ci.example.com/x",
      "http://p:3128",
    ],
    ["HTTP_PROXY for ws", { HTTP_PROXY: "http://p:8080" }, "ws://ci.example.com/agents/v1", "http://p:8080"],
    [
      "http_proxy (lower case) for ws",
      { http_proxy: "http://p:8080" },
      "ws://ci.example.com/x",
      "http://p:8080",
    ],
    ["HTTPS_PROXY does not apply to ws", { HTTPS_PROXY: "http://p:3128" }, "ws://ci.example.com/x", null],
    ["ALL_PROXY as the fallback", { ALL_PROXY: "http://all:1" }, "wss://ci.example.com/x", "http://all:1"],
    [
      "NO_PROXY by name",
      { HTTPS_PROXY: "http://p:1", NO_PROXY: "ci.example.com" },
      "wss://ci.example.com/x",
      null,
    ],
    [
      "no_proxy by suffix",
      { HTTPS_PROXY: "http://p:1", no_proxy: ".example.com" },
      "wss://ci.example.com/x",
      null,
    ],
    [
      "NO_PROXY with a port",
      { HTTP_PROXY: "http://p:1", NO_PROXY: "127.0.0.1:8080" },
      "ws://127.0.0.1:8080/",
      null,
    ],
    ["NO_PROXY=* turns it off", { HTTPS_PROXY: "http://p:1", NO_PROXY: "*" }, "wss://ci.example.com/x", null],
    ["nothing set", {}, "wss://ci.example.com/x", null],
  ])("%s", (_what, env, url, expected) => {
    setEnv(env);
    expect(proxyFor(url)).toBe(expected);
  });
});

describe("checking the proxy variables at start", () => {
  it("accepts http:// and https:// proxy URLs, set in either case", () => {
    expect(
      proxyProblems({
        HTTPS_PROXY: "http://proxy:3128",
        http_proxy: "https://user:pw@proxy.corp:8443/",
        ALL_PROXY: "",
      }),
    ).toEqual([]);
  });

  it.each([
    ["no scheme", "HTTPS_PROXY", "proxy.corp:3128"],
    ["a SOCKS proxy", "ALL_PROXY", "socks5://proxy:1080"],
    ["not a URL", "http_proxy", "::::"],
  ])("refuses %s, naming the variable", (_what, name, value) => {
    const problems = proxyProblems({ [name]: value });
    expect(problems).toHaveLength(1);
    expect(problems[0]!.field).toBe(name);
    expect(problems[0]!.message).toMatch(/http:\/\/ or https:\/\//);
  });

  it("never shows a proxy password, and clips a long value", () => {
    const [problem] = proxyProblems({ HTTPS_PROXY: `ftp://user:hunter2@proxy/${"x".repeat(5_000)}` });
    expect(problem!.message).not.toContain("hunter2");
    expect(problem!.message).toContain("***");
    expect(problem!.message.length).toBeLessThan(300);
  });
});

import { describe, expect, it } from "vitest";
import { frameMaskingFor, zeroMaskingKey } from "../../agent-core/session/frame-masking.ts";

describe("the masking key of the agent's frames", () => {
  it.each([
    ["wss://ci.example.com/agents/v1", true, "zero-key"],
    ["wss://ci.example.com/agents/v1", false, "zero-key"],
    ["https://ci.example.com/", false, "zero-key"],
    ["ws://127.0.0.1:8080/agents/v1", true, "zero-key"],
    ["ws://127.9.9.9:8080/agents/v1", true, "zero-key"],
    ["ws://localhost:8080/agents/v1", true, "zero-key"],
    ["ws://[::1]:8080/agents/v1", true, "zero-key"],
    // Through a proxy, the bytes cross more than this machine.
    ["ws://127.0.0.1:8080/agents/v1", false, "random"],
    ["ws://10.0.0.5:8080/agents/v1", true, "random"],
    ["ws://ci.example.com/agents/v1", true, "random"],
    ["http://0.0.0.0:8080/", true, "random"],
  ] as const)("%s (direct: %s): %s", (url, direct, expected) => {
    expect(frameMaskingFor(url, direct)).toBe(expected);
  });

  it("the zero key clears whatever the buffer held (ws reuses one buffer per socket)", () => {
    const key = Buffer.from([1, 2, 3, 4]);
    zeroMaskingKey(key);
    expect([...key]).toEqual([0, 0, 0, 0]);
  });
});

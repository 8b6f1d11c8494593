import { describe, expect, it } from "vitest";
import {
  CloseCode,
  closeReason,
  decodeAgentMessage,
  decodeControllerMessage,
  decodeOutputFrame,
  deriveAgentSecret,
  encodeMessage,
  encodeOutputFrame,
  OUTPUT_HEADER_BYTES,
  type OutputFrame,
  ProtocolError,
  verifyAgentSecret,
} from "../../agent-core/index.ts";

/** Runs `fn`, expects a ProtocolError, and returns it. */
function protocolError(fn: () => unknown): ProtocolError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ProtocolError);
    const e = error as ProtocolError;
    expect(e.code).toBe("AGENT_ERR_PROTOCOL");
    return e;
  }
  throw new Error("expected a ProtocolError");
}

const frame = (overrides: Partial<OutputFrame> = {}): OutputFrame => ({
  seq: 7,
  stepId: "build",
  stream: "stdout",
  offset: 0,
  data: Buffer.from("hello\n"),
  ...overrides,
});

describe("output frames", () => {
  it.each([
    ["stdout with data", frame()],
    ["stderr", frame({ stream: "stderr", data: Buffer.from("oops") })],
    ["empty data", frame({ data: Buffer.alloc(0) })],
    ["a multibyte step id", frame({ stepId: "ステップ-😀", data: Buffer.from([0, 1, 2, 0xff]) })],
    ["an offset above 2^32", frame({ offset: 2 ** 32 + 12_345 })],
    ["the largest safe offset", frame({ offset: Number.MAX_SAFE_INTEGER })],
    ["the largest seq", frame({ seq: 2 ** 32 - 1 })],
  ])("round-trips %s", (_name, input) => {
    const encoded = encodeOutputFrame(input);
    expect(encoded.length).toBe(
      OUTPUT_HEADER_BYTES + Buffer.byteLength(input.stepId, "utf8") + input.data.length,
    );
    const decoded = decodeOutputFrame(encoded);
    expect(decoded.seq).toBe(input.seq);
    expect(decoded.stepId).toBe(input.stepId);
    expect(decoded.stream).toBe(input.stream);
    expect(decoded.offset).toBe(input.offset);
    expect(Buffer.from(decoded.data).equals(input.data)).toBe(true);
  });

  it("lays the header out as documented (big-endian)", () => {
    const encoded = encodeOutputFrame(frame({ seq: 0x01020304, stream: "stderr", offset: 2 ** 33 }));
    expect(encoded.readUInt8(0)).toBe(0x01);
    expect(encoded.readUInt8(1)).toBe(2);
    expect(encoded.readUInt16BE(2)).toBe(5);
    expect(encoded.readUInt32BE(4)).toBe(0x01020304);
    expect(encoded.readDoubleBE(8)).toBe(2 ** 33);
    expect(encoded.toString("utf8", 16, 21)).toBe("build");
    expect(encoded.toString("utf8", 21)).toBe("hello\n");
  });

  const valid = () => encodeOutputFrame(frame());
  const patched = (patch: (buf: Buffer) => void) => {
    const buf = valid();
    patch(buf);
    return buf;
  };

  it.each([
    ["an empty buffer", Buffer.alloc(0)],
    ["a buffer shorter than the header", valid().subarray(0, OUTPUT_HEADER_BYTES - 1)],
    ["a wrong kind", patched((b) => b.writeUInt8(0x02, 0))],
    ["kind 0", patched((b) => b.writeUInt8(0x00, 0))],
    ["stream 0", patched((b) => b.writeUInt8(0, 1))],
    ["stream 3", patched((b) => b.writeUInt8(3, 1))],
    ["a zero step id length", patched((b) => b.writeUInt16BE(0, 2))],
    ["a step id length past the end", patched((b) => b.writeUInt16BE(1_000, 2))],
    ["seq 0", patched((b) => b.writeUInt32BE(0, 4))],
    ["a negative offset", patched((b) => b.writeDoubleBE(-1, 8))],
    ["a NaN offset", patched((b) => b.writeDoubleBE(Number.NaN, 8))],
    ["an infinite offset", patched((b) => b.writeDoubleBE(Number.POSITIVE_INFINITY, 8))],
    ["a fractional offset", patched((b) => b.writeDoubleBE(1.5, 8))],
    ["an offset beyond 2^53", patched((b) => b.writeDoubleBE(2 ** 54, 8))],
  ])("rejects %s with close code malformed", (_name, buf) => {
    const error = protocolError(() => decodeOutputFrame(buf));
    expect(error.closeCode).toBe(CloseCode.malformed);
  });

  it("accepts a step id that ends exactly at the end of the buffer (no data)", () => {
    const buf = valid().subarray(0, OUTPUT_HEADER_BYTES + 5);
    const decoded = decodeOutputFrame(buf);
    expect(decoded.stepId).toBe("build");
    expect(decoded.data.length).toBe(0);
  });
});

const job = (overrides: Record<string, unknown> = {}) => ({
  id: "job-1",
  steps: [{ id: "s1", run: "echo hi" }],
  ...overrides,
});
const jobText = (jobValue: unknown) => JSON.stringify({ v: 1, type: "job", job: jobValue });

describe("decodeControllerMessage / decodeAgentMessage", () => {
  const decoders = [
    ["decodeControllerMessage", decodeControllerMessage],
    ["decodeAgentMessage", decodeAgentMessage],
  ] as const;

  describe.each(decoders)("%s envelope errors", (_name, decode) => {
    it.each([
      ["not JSON", "{not json"],
      ["an empty text", ""],
      ["a JSON array", '[{"v":1,"type":"ack","seq":1}]'],
      ["JSON null", "null"],
      ["a JSON number", "42"],
      ["a JSON string", '"ack"'],
    ])("closes with malformed for %s", (_label, text) => {
      expect(protocolError(() => decode(text)).closeCode).toBe(CloseCode.malformed);
    });

    it.each([
      ["v: 2", { v: 2, type: "ack", seq: 1 }],
      ["v: '1' (a string)", { v: "1", type: "ack", seq: 1 }],
      ["no v", { type: "ack", seq: 1 }],
    ])("closes with unsupportedVersion for %s", (_label, value) => {
      expect(protocolError(() => decode(JSON.stringify(value))).closeCode).toBe(CloseCode.unsupportedVersion);
    });

    it.each([
      ["an unknown type", { v: 1, type: "launch-missiles" }],
      ["no type", { v: 1 }],
      ["a non-string type", { v: 1, type: 3 }],
      ["an inherited property name", { v: 1, type: "toString" }],
    ])("closes with unknownType for %s", (_label, value) => {
      expect(protocolError(() => decode(JSON.stringify(value))).closeCode).toBe(CloseCode.unknownType);
    });
  });

  it("does not accept the other side's message types", () => {
    const hello = JSON.stringify({ v: 1, type: "hello" });
    expect(protocolError(() => decodeControllerMessage(hello)).closeCode).toBe(CloseCode.unknownType);
    const ack = JSON.stringify({ v: 1, type: "ack", seq: 1 });
    expect(protocolError(() => decodeAgentMessage(ack)).closeCode).toBe(CloseCode.unknownType);
  });

  it("closes with invalidMessage for a schema failure and names the field", () => {
    const error = protocolError(() =>
      decodeControllerMessage(JSON.stringify({ v: 1, type: "ack", seq: -1 })),
    );
    expect(error.closeCode).toBe(CloseCode.invalidMessage);
    expect(error.message).toMatch(/\bseq\b/);

    const nested = protocolError(() =>
      decodeControllerMessage(jobText(job({ steps: [{ id: "s1", run: "x", timeoutMs: "soon" }] }))),
    );
    expect(nested.closeCode).toBe(CloseCode.invalidMessage);
    expect(nested.message).toContain("job.steps.0.timeoutMs");
  });

  it.each([
    ["20,000 values to mask", { mask: Array.from({ length: 20_000 }, (_, i) => `secret-${i}`) }, "job.mask"],
    ["65,537 bytes to mask", { mask: ["m".repeat(65_537)] }, "job.mask"],
    ["a job timeout over 365 days", { timeoutMs: 365 * 86_400_000 + 1 }, "job.timeoutMs"],
  ])("refuses a job with %s as an invalid message, naming the field", (_what, fields, field) => {
    const error = protocolError(() => decodeControllerMessage(jobText(job(fields))));
    expect(error.closeCode).toBe(CloseCode.invalidMessage);
    expect(error.message).toContain(field);
    expect(error.message).not.toContain("secret-1");
  });

  it("names the field of an invalid agent message", () => {
    const stepEnd = {
      v: 1,
      type: "step-end",
      seq: 3,
      jobId: "job-1",
      stepId: "s1",
      exitCode: 0,
      signal: null,
      durationMs: 5,
      reason: "bored",
      stdoutBytes: 0,
      stderrBytes: 0,
    };
    const error = protocolError(() => decodeAgentMessage(JSON.stringify(stepEnd)));
    expect(error.closeCode).toBe(CloseCode.invalidMessage);
    expect(error.message).toMatch(/\breason\b/);
    expect(decodeAgentMessage(JSON.stringify({ ...stepEnd, reason: "exit" }))).toMatchObject({
      type: "step-end",
      reason: "exit",
    });
  });

  it("parses a valid job message and applies the defaults", () => {
    const message = decodeControllerMessage(jobText(job()));
    expect(message).toEqual({
      v: 1,
      type: "job",
      job: {
        id: "job-1",
        env: {},
        mask: [],
        steps: [{ id: "s1", run: "echo hi", env: {}, continueOnError: false }],
      },
    });
  });

  it("keeps the values given instead of the defaults", () => {
    const message = decodeControllerMessage(
      jobText(
        job({
          env: { A: "1" },
          mask: ["hunter2"],
          steps: [{ id: "s1", argv: ["node", "-v"], env: { B: "2" }, continueOnError: true, timeoutMs: 50 }],
        }),
      ),
    );
    if (message.type !== "job") throw new Error(`expected a job message, got ${message.type}`);
    expect(message.job.env).toEqual({ A: "1" });
    expect(message.job.mask).toEqual(["hunter2"]);
    expect(message.job.steps[0]).toEqual({
      id: "s1",
      argv: ["node", "-v"],
      env: { B: "2" },
      continueOnError: true,
      timeoutMs: 50,
    });
  });

  it.each([
    [
      "duplicate step ids",
      job({
        steps: [
          { id: "s1", run: "a" },
          { id: "s1", run: "b" },
        ],
      }),
    ],
    ["a step with both run and argv", job({ steps: [{ id: "s1", run: "a", argv: ["b"] }] })],
    ["a step with neither run nor argv", job({ steps: [{ id: "s1" }] })],
    ["no steps", job({ steps: [] })],
    ["a job id with a slash", job({ id: "../etc" })],
    ["an env name with a space", job({ env: { "BAD NAME": "x" } })],
  ])("rejects a job with %s as invalidMessage", (_label, value) => {
    expect(protocolError(() => decodeControllerMessage(jobText(value))).closeCode).toBe(
      CloseCode.invalidMessage,
    );
  });

  it("round-trips a message through encodeMessage", () => {
    const cancel = { v: 1, type: "cancel", jobId: "job-1", reason: "user asked" } as const;
    expect(decodeControllerMessage(encodeMessage(cancel))).toEqual(cancel);
  });
});

describe("closeReason", () => {
  it("keeps a short reason as it is", () => {
    expect(closeReason("bye")).toBe("bye");
    expect(closeReason("")).toBe("");
    const exact = `${"é".repeat(61)}x`; // 123 bytes
    expect(closeReason(exact)).toBe(exact);
  });

  it.each([
    ["ASCII", "a".repeat(500)],
    ["2-byte characters", "é".repeat(100)],
    ["3-byte characters", "€".repeat(100)],
    ["4-byte characters", "😀".repeat(100)],
    ["mixed text", "the agent sent an invalid message: ".repeat(10)],
  ])("truncates %s to at most 123 UTF-8 bytes, keeping a prefix", (_label, text) => {
    const reason = closeReason(text);
    expect(Buffer.byteLength(reason, "utf8")).toBeLessThanOrEqual(123);
    expect(Buffer.byteLength(reason, "utf8")).toBeGreaterThanOrEqual(120);
    expect(text.startsWith(reason)).toBe(true);
  });
});

describe("agent secrets", () => {
  const key = "controller-key";

  it("derives 64 lower-case hex characters, the same each time", () => {
    const secret = deriveAgentSecret(key, "agent-1");
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    expect(deriveAgentSecret(key, "agent-1")).toBe(secret);
    expect(deriveAgentSecret(Buffer.from(key), "agent-1")).toBe(secret);
  });

  it("differs per agent name and per key", () => {
    const secret = deriveAgentSecret(key, "agent-1");
    expect(deriveAgentSecret(key, "agent-2")).not.toBe(secret);
    expect(deriveAgentSecret("other-key", "agent-1")).not.toBe(secret);
  });

  it("verifies the derived secret and rejects anything else", () => {
    const secret = deriveAgentSecret(key, "agent-1");
    expect(verifyAgentSecret(key, "agent-1", secret)).toBe(true);
    expect(verifyAgentSecret(key, "agent-2", secret)).toBe(false);
    expect(verifyAgentSecret("other-key", "agent-1", secret)).toBe(false);
    const flipped = (secret[0] === "0" ? "1" : "0") + secret.slice(1);
    expect(verifyAgentSecret(key, "agent-1", flipped)).toBe(false);
    expect(secret).toMatch(/[a-f]/);
    expect(verifyAgentSecret(key, "agent-1", secret.toUpperCase())).toBe(false);
  });

  it("rejects secrets of a different length without throwing", () => {
    const secret = deriveAgentSecret(key, "agent-1");
    expect(verifyAgentSecret(key, "agent-1", "")).toBe(false);
    expect(verifyAgentSecret(key, "agent-1", secret.slice(0, 63))).toBe(false);
    expect(verifyAgentSecret(key, "agent-1", `${secret}0`)).toBe(false);
    // Same number of characters, different number of UTF-8 bytes.
    expect(verifyAgentSecret(key, "agent-1", `${secret.slice(0, 63)}é`)).toBe(false);
  });
});

import { describe, expect, it } from "vitest";
import { JobLogLines, MAX_EVENT_MESSAGE_BYTES } from "../../agent-core/index.ts";

function recorder() {
  const lines: string[] = [];
  return { lines, writer: { write: (line: string) => void lines.push(line) } };
}

describe("JobLogLines", () => {
  it("writes whole lines, empty ones included, and the unfinished one at the step's end", () => {
    const { lines, writer } = recorder();
    const log = new JobLogLines(writer);
    log.stepStart("==> step");
    log.output("stdout", Buffer.from("one\ntw"));
    log.output("stdout", Buffer.from("o\n\nthr"));
    log.output("stderr", Buffer.from("err"));
    log.stepEnd("<== step");
    expect(lines).toEqual(["==> step", "one", "two", "", "thr", "err", "<== step"]);
  });

  it("cuts a 48 MiB line without a newline at the event limit as it arrives, holding at most one event", () => {
    const { lines, writer } = recorder();
    const log = new JobLogLines(writer);
    const frame = Buffer.alloc(65_536, "x");
    const frames = (48 * 1_048_576) / frame.length;
    for (let i = 1; i <= frames; i++) {
      log.output("stdout", frame);
      expect(log.pendingBytes("stdout")).toBeLessThanOrEqual(MAX_EVENT_MESSAGE_BYTES);
      // Written as it arrives: after each frame, all but less than one event's worth is out.
      expect(lines.length).toBe(Math.floor((i * frame.length - 1) / MAX_EVENT_MESSAGE_BYTES));
    }
    log.stepEnd("<== done");
    const body = lines.slice(0, -1);
    expect(body.every((line) => Buffer.byteLength(line) <= MAX_EVENT_MESSAGE_BYTES)).toBe(true);
    expect(body.reduce((sum, line) => sum + line.length, 0)).toBe(48 * 1_048_576);
    expect(lines.at(-1)).toBe("<== done");
  });

  it("cuts between characters, also when a character is split across frames", () => {
    const { lines, writer } = recorder();
    const log = new JobLogLines(writer, { maxLineBytes: 7 });
    const text = "aé€😀b😀€éz\nnext";
    const bytes = Buffer.from(text);
    for (const byte of bytes) log.output("stdout", Buffer.from([byte]));
    log.stepEnd("end");
    expect(lines.join("")).toBe(`${text.replace("\n", "")}end`);
    for (const line of lines) {
      expect(line).not.toContain("\uFFFD");
      expect(Buffer.byteLength(line)).toBeLessThanOrEqual(7);
    }
    expect(lines.at(-2)).toBe("next");
  });

  it("keeps each stream's unfinished line apart", () => {
    const { lines, writer } = recorder();
    const log = new JobLogLines(writer, { maxLineBytes: 4 });
    log.output("stdout", Buffer.from("aaaaa"));
    log.output("stderr", Buffer.from("bb\n"));
    log.output("stdout", Buffer.from("a\n"));
    expect(lines).toEqual(["aaaa", "bb", "aa"]);
  });

  it("refuses a limit under 4 bytes (one character must fit)", () => {
    expect(() => new JobLogLines(recorder().writer, { maxLineBytes: 3 })).toThrow(/`maxLineBytes`/);
  });
});

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MaskAutomaton } from "../../agent-core/logs/mask-automaton.ts";

/** All (start, length) occurrences of `needles` in `text`, sorted, by brute force (no line breaks). */
function occurrences(text: Buffer, needles: readonly Buffer[]): number[][] {
  const found = new Set<string>();
  for (const needle of needles) {
    if (needle.length === 0) continue;
    for (let at = text.indexOf(needle); at !== -1; at = text.indexOf(needle, at + 1)) {
      found.add(`${at},${needle.length}`);
    }
  }
  return [...found].map((pair) => pair.split(",").map(Number)).sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
}

const pairs = (matches: number[] | undefined) => {
  const out: number[][] = [];
  for (let k = 0; k < (matches?.length ?? 0); k += 2) out.push([matches![k]!, matches![k + 1]!]);
  return out.sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
};

const bytes = (alphabet: string, max: number) =>
  fc
    .string({ unit: fc.constantFrom(...alphabet), maxLength: max })
    .map((text) => Buffer.from(text, "latin1"));

describe("MaskAutomaton", () => {
  it("finds every occurrence, whatever part of it has dense rows (dense, hybrid, compact)", () => {
    fc.assert(
      fc.property(
        fc.array(bytes("abcab\u00ff", 6), { minLength: 1, maxLength: 8 }),
        bytes("abcab\u00ffx", 60),
        (needles, text) => {
          const expected = occurrences(text, needles);
          for (const denseMaxEntries of [1 << 20, 16, 1]) {
            const automaton = new MaskAutomaton(needles, false, denseMaxEntries);
            expect(pairs(automaton.scan(text).matches)).toEqual(expected);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("gives the same occurrences and undecided tail with line breaks, dense or compact", () => {
    fc.assert(
      fc.property(
        fc.array(bytes("ABCAB", 9), { minLength: 1, maxLength: 6 }),
        fc.string({ unit: fc.constantFrom("A", "B", "C", "\n", "\r"), maxLength: 80 }),
        (needles, text) => {
          const input = Buffer.from(text, "latin1");
          const dense = new MaskAutomaton(needles, true);
          const compact = new MaskAutomaton(needles, true, 1);
          const a = dense.scan(input);
          const b = compact.scan(input);
          expect(pairs(b.matches)).toEqual(pairs(a.matches));
          expect(compact.undecidedStart(b.endState, input, 0)).toBe(
            dense.undecidedStart(a.endState, input, 0),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it("is linear in size: at most one state per byte of the sequences, plus the root", () => {
    const sequences = Array.from({ length: 500 }, (_, i) =>
      Buffer.from(`sequence-${i}-${"x".repeat(i % 50)}`),
    );
    const automaton = new MaskAutomaton([...sequences, ...sequences], false);
    expect(automaton.sequenceCount).toBe(500);
    expect(automaton.stateCount).toBeLessThanOrEqual(1 + sequences.reduce((sum, s) => sum + s.length, 0));
  });
});

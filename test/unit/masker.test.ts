import { isUtf8 } from "node:buffer";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { LogFields, Logger } from "../../agent-core/index.ts";
// Deep import until agent-core/index.ts exports the masker.
import {
  buildMaskSet,
  type MaskSet,
  maskText,
  maskVariants,
  StreamMasker,
} from "../../agent-core/logs/masker.ts";

/**
 * The reference masking, written independently of the automaton: every variant of every
 * accepted secret (at least 4 characters) as an alternative of one regular expression over the
 * bytes (as latin1 text), longest alternatives first, replaced by `String.replaceAll`.
 *
 * The rule this pins down is **leftmost-longest, non-overlapping**: the regex engine tries each
 * position from the left; at the first position where some variant occurs it takes the first
 * alternative that matches there, which is the longest because of the order; `replaceAll`
 * resumes after it, so occurrences overlapping a replaced one are not masked separately (their
 * bytes are inside the mask, or, for a tail sticking out, left as is).
 */
function referenceMask(input: Buffer, secrets: readonly string[]): Buffer {
  const variants = secrets.filter((s) => [...s].length >= 4).flatMap(maskVariants);
  if (variants.length === 0) return input;
  const alternatives = variants
    .map((v) => v.toString("latin1"))
    .sort((a, b) => b.length - a.length)
    .map((v) => v.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&"));
  const pattern = new RegExp(alternatives.join("|"), "g");
  return Buffer.from(input.toString("latin1").replaceAll(pattern, "***"), "latin1");
}

/** Feeds `chunks` to one masker and returns everything it emitted, `end()` included. */
function maskChunks(set: MaskSet, chunks: readonly Buffer[]): Buffer {
  const masker = new StreamMasker(set);
  const out: Buffer[] = [];
  for (const chunk of chunks) {
    out.push(Buffer.from(masker.write(chunk)));
    expect(masker.heldBytes).toBeLessThan(Math.max(1, set.maxVariantBytes));
  }
  out.push(masker.end());
  return Buffer.concat(out);
}

/** `buf` cut at the given (sorted, in-range) positions. */
function splitAt(buf: Buffer, cuts: readonly number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let from = 0;
  for (const cut of cuts) {
    chunks.push(buf.subarray(from, cut));
    from = cut;
  }
  chunks.push(buf.subarray(from));
  return chunks;
}

const bytesOf = (buf: Buffer): Buffer[] => [...buf].map((b) => Buffer.from([b]));

interface Warning {
  msg: string;
  fields: LogFields | undefined;
}

/** A Logger that records warnings (a plain object, no module mocks). */
function recordingLogger(): { logger: Logger; warnings: Warning[] } {
  const warnings: Warning[] = [];
  const logger: Logger = {
    debug: () => {},
    info: () => {},
    warn: (msg, fields) => warnings.push({ msg, fields }),
    error: () => {},
    child: () => logger,
    redacting: () => logger,
  };
  return { logger, warnings };
}

/** Deterministic pseudo-random bytes (xorshift32), so that failures reproduce. */
function pseudoRandomBytes(length: number, seed: number): Buffer {
  const buf = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf[i] = x & 0xff;
  }
  return buf;
}

/** Characters of a base64 encoding that depend on unknown neighbours, per alignment. */
const LEADING_TRIM = [0, 2, 3] as const;

describe("maskVariants", () => {
  it("lists the raw value, its base64 forms and cores, without duplicates", () => {
    expect(maskVariants("hunter2!").map(String)).toEqual([
      "hunter2!",
      "aHVudGVyMiE=",
      "aHVudGVyMiE",
      "aHVudGVyMi",
      "h1bnRlcjIh",
      "odW50ZXIyI",
      "hunter2%21",
    ]);
  });

  it("adds URL-safe base64, percent, form and JSON forms when they differ", () => {
    const secret = 'a b/c?~>"é';
    const variants = maskVariants(secret).map(String);
    const b64 = Buffer.from(secret).toString("base64");
    expect(b64).toMatch(/[+/]/);
    expect(variants).toContain(b64);
    expect(variants).toContain(Buffer.from(secret).toString("base64url"));
    expect(variants).toContain(encodeURIComponent(secret));
    expect(variants).toContain(encodeURIComponent(secret).replaceAll("%20", "+"));
    expect(variants).toContain(new URLSearchParams({ k: secret }).toString().slice(2));
    expect(variants).toContain(JSON.stringify(secret).slice(1, -1));
    expect(variants).toContain('a b/c?~>\\"\\u00e9');
    expect(new Set(variants).size).toBe(variants.length);
  });

  it("drops variants shorter than 4 bytes", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", minLength: 1, maxLength: 12 }), (secret) => {
        for (const variant of maskVariants(secret)) expect(variant.length).toBeGreaterThanOrEqual(4);
      }),
    );
  });
});

describe("buildMaskSet", () => {
  it("refuses values under 4 characters with one warning each, never naming the value", () => {
    const { logger, warnings } = recordingLogger();
    const set = buildMaskSet(["abc", "", "ab€", "okay", "okay", "😀😀", "😀😀😀😀"], logger);
    expect(warnings).toHaveLength(4);
    expect(warnings.map((w) => w.fields?.index)).toEqual([0, 1, 2, 5]);
    expect(JSON.stringify(warnings)).not.toMatch(/abc|ab€|😀/);
    expect(set.secretCount).toBe(2);
    expect(maskText("abc ab€ 😀😀 okay 😀😀😀😀", set)).toBe("abc ab€ 😀😀 *** ***");
  });

  it("trims nothing: surrounding spaces are part of the secret", () => {
    const set = buildMaskSet([" pad "]);
    expect(maskText("x pad y", set)).toBe("x***y");
    expect(maskText("[pad] x pad.", set)).toBe("[pad] x pad.");
  });

  it("returns an immutable set; an empty one passes everything through", () => {
    const set = buildMaskSet([]);
    expect(Object.isFrozen(set)).toBe(true);
    expect(set.isEmpty).toBe(true);
    const chunk = Buffer.from("anything");
    expect(new StreamMasker(set).write(chunk)).toBe(chunk);
    expect(maskText("anything", set)).toBe("anything");
    expect(buildMaskSet(["secret"]).isEmpty).toBe(false);
  });
});

describe("StreamMasker", () => {
  const secret = "hunter2!";
  const set = buildMaskSet([secret]);

  it("masks the exact value", () => {
    expect(maskChunks(set, [Buffer.from(secret)]).toString()).toBe("***");
    expect(maskChunks(set, [Buffer.from(`pw=${secret}\n`)]).toString()).toBe("pw=***\n");
    expect(maskText(`${secret}${secret} ${secret}`, set)).toBe("****** ***");
  });

  describe("a secret split across chunks", () => {
    const multibyte = "pässwörd€";
    const both = buildMaskSet([secret, multibyte]);
    const input = Buffer.from(
      `log ${secret} and ${Buffer.from(secret).toString("base64")} hunt ${multibyte}|${encodeURIComponent(multibyte)}.\n`,
    );
    const expected = "log *** and *** hunt ***|***.\n";

    it("is masked when cut into 2 chunks at every position", () => {
      for (let a = 0; a <= input.length; a++) {
        expect(maskChunks(both, splitAt(input, [a])).toString(), `cut at ${a}`).toBe(expected);
      }
    });

    it("is masked when cut into 3 chunks at every pair of positions", () => {
      for (let a = 0; a <= input.length; a++) {
        for (let b = a; b <= input.length; b++) {
          expect(maskChunks(both, splitAt(input, [a, b])).toString(), `cuts at ${a}, ${b}`).toBe(expected);
        }
      }
    });

    it("is masked when written one byte at a time", () => {
      expect(maskChunks(both, bytesOf(input)).toString()).toBe(expected);
      expect(referenceMask(input, [secret, multibyte]).toString()).toBe(expected);
    });
  });

  it("releases a held prefix unchanged when it turns out not to be a secret", () => {
    const masker = new StreamMasker(set);
    expect(masker.write(Buffer.from("before hunt")).toString()).toBe("before ");
    expect(masker.heldBytes).toBe(4);
    expect(masker.write(Buffer.from("ing\n")).toString()).toBe("hunting\n");
    expect(masker.heldBytes).toBe(0);
    expect(masker.write(Buffer.from("x hunter2")).toString()).toBe("x ");
    expect(masker.end().toString()).toBe("hunter2");
  });

  it("holds back only a proper prefix of some variant, at most the longest variant less one byte", () => {
    const masker = new StreamMasker(set);
    expect(masker.write(Buffer.from("zzz")).toString()).toBe("zzz");
    expect(masker.heldBytes).toBe(0);
    // "aHVudGVyMiE" (11 bytes) could still become the padded "aHVudGVyMiE=" (12 bytes).
    expect(masker.write(Buffer.from("x aHVudGVyMiE")).toString()).toBe("x ");
    expect(masker.heldBytes).toBe(11);
    expect(masker.heldBytes).toBeLessThan(set.maxVariantBytes);
    expect(masker.write(Buffer.from("=")).toString()).toBe("***");
    expect(masker.write(Buffer.from("aHVudGVyMiE!")).toString()).toBe("***!");
  });

  it("masks the held tail at end() when it completes a variant", () => {
    const masker = new StreamMasker(set);
    expect(masker.write(Buffer.from("token aHVudGVyMiE")).toString()).toBe("token ");
    expect(masker.end().toString()).toBe("***");
    expect(masker.end().length).toBe(0);
  });

  it("refuses writes after end()", () => {
    const masker = new StreamMasker(set);
    masker.end();
    expect(() => masker.write(Buffer.from("x"))).toThrow(
      expect.objectContaining({ code: "AGENT_ERR_INTERNAL" }),
    );
  });

  it("passes bytes that are not valid UTF-8 through unchanged", () => {
    const invalid = Buffer.from([0xff, 0xc3, 0x28, 0xe2, 0x82, 0x80, 0x80, 0xf0, 0x9f, 0x68]);
    const input = Buffer.concat([invalid, Buffer.from(secret), invalid, Buffer.from("hunter2"), invalid]);
    const expected = Buffer.concat([invalid, Buffer.from("***"), invalid, Buffer.from("hunter2"), invalid]);
    expect(maskChunks(set, [input]).equals(expected)).toBe(true);
    expect(maskChunks(set, bytesOf(input)).equals(expected)).toBe(true);
    const noSecret = Buffer.concat([invalid, invalid.subarray(3), invalid]);
    expect(maskChunks(set, bytesOf(noSecret)).equals(noSecret)).toBe(true);
  });

  it("loses nothing: without secrets in the output, 4 MiB in 64 KiB chunks come out byte for byte", () => {
    const secrets = Array.from({ length: 20 }, (_, i) => pseudoRandomBytes(18, 1000 + i).toString("base64"));
    const many = buildMaskSet(secrets);
    expect(many.variantCount).toBeGreaterThan(secrets.length * 3);
    const input = pseudoRandomBytes(4 * 1024 * 1024, 42);
    expect(referenceMask(input, secrets).equals(input)).toBe(true);
    const chunks: Buffer[] = [];
    for (let at = 0; at < input.length; at += 64 * 1024) chunks.push(input.subarray(at, at + 64 * 1024));
    expect(maskChunks(many, chunks).equals(input)).toBe(true);
  });

  it("masks secrets across 64 KiB chunk boundaries in a large output", () => {
    const secrets = ["first-secret-value", "second/secret+value"];
    const many = buildMaskSet(secrets);
    const parts: Buffer[] = [];
    for (let i = 0; i < 40; i++) {
      parts.push(pseudoRandomBytes(64 * 1024 - 9 + (i % 7), i + 1));
      const s = secrets[i % 2]!;
      parts.push(
        Buffer.from(i % 3 === 0 ? s : Buffer.from(s).toString(i % 3 === 1 ? "base64" : "base64url")),
      );
    }
    const input = Buffer.concat(parts);
    const chunks: Buffer[] = [];
    for (let at = 0; at < input.length; at += 64 * 1024) chunks.push(input.subarray(at, at + 64 * 1024));
    const out = maskChunks(many, chunks);
    expect(out.equals(referenceMask(input, secrets))).toBe(true);
    expect(out.includes("first-secret-value")).toBe(false);
    expect(out.includes(Buffer.from("second/secret+value").toString("base64"))).toBe(false);
  });
});

describe("encoded forms", () => {
  const secret = "s3~~~???wörd!"; // its base64 has "+" and "/" at every alignment, and padding
  const set = buildMaskSet([secret]);
  const prefix = Buffer.from('header: {"k":1}\n');
  const suffix = Buffer.from("trailer bytes");

  for (const alphabet of ["base64", "base64url"] as const) {
    it.each([0, 1, 2])(`masks the secret inside a longer ${alphabet} blob at alignment %i`, (k) => {
      const blob = Buffer.concat([prefix, Buffer.alloc(k, 0x41), Buffer.from(secret), suffix]).toString(
        alphabet,
      );
      const offset = prefix.length + k; // bytes before the secret
      const groups = Math.floor(offset / 3);
      const start = groups * 4 + LEADING_TRIM[offset % 3]!;
      const core = Buffer.concat([Buffer.alloc(offset % 3), Buffer.from(secret)])
        .toString(alphabet)
        .replace(/=+$/, "")
        .slice(LEADING_TRIM[offset % 3]!, (offset + Buffer.byteLength(secret)) % 3 === 0 ? undefined : -1);
      expect(blob.slice(start, start + core.length)).toBe(core);
      const expected = `${blob.slice(0, start)}***${blob.slice(start + core.length)}`;
      expect(maskText(blob, set)).toBe(expected);
      expect(maskChunks(set, bytesOf(Buffer.from(blob))).toString()).toBe(expected);
      // At most one partial character stays visible on each side of the mask.
      const encodedSecretStart = (offset * 4) / 3;
      const encodedSecretEnd = ((offset + Buffer.byteLength(secret)) * 4) / 3;
      expect(start - encodedSecretStart).toBeLessThanOrEqual(1);
      expect(encodedSecretEnd - (start + core.length)).toBeLessThanOrEqual(1);
    });
  }

  it("masks the whole base64 value, padded and unpadded, in both alphabets", () => {
    const std = Buffer.from(secret).toString("base64");
    const url = Buffer.from(secret).toString("base64url");
    expect(std).toMatch(/[+/]/);
    expect(std).toMatch(/=$/);
    for (const form of [std, std.replace(/=+$/, ""), url, `${url}=`]) {
      expect(maskText(`v=${form};`, set)).toBe("v=***;");
    }
  });

  it("masks URL-encoded forms", () => {
    const pw = "p@ss w/rd&x=1!";
    const urlSet = buildMaskSet([pw]);
    const query = `GET /login?user=bob&pass=${encodeURIComponent(pw)}&next=/`;
    expect(maskText(query, urlSet)).toBe("GET /login?user=bob&pass=***&next=/");
    expect(maskText(new URLSearchParams({ user: "bob", pass: pw }).toString(), urlSet)).toBe(
      "user=bob&pass=***",
    );
    expect(maskText(`pass=${encodeURIComponent(pw).replaceAll("%20", "+")}`, urlSet)).toBe("pass=***");
  });

  it("masks JSON-escaped forms", () => {
    const token = 'pa"ss\\wörd';
    const jsonSet = buildMaskSet([token]);
    expect(maskText(JSON.stringify({ token }), jsonSet)).toBe('{"token":"***"}');
    expect(maskText('{"token": "pa\\"ss\\\\w\\u00f6rd"}', jsonSet)).toBe('{"token": "***"}');
  });
});

describe("property: streaming equals the reference on the concatenated input", () => {
  /** Secrets over a tiny alphabet collide and overlap a lot, which is what the rule is about. */
  const overlapping = fc.string({ unit: fc.constantFrom("a", "b", "é", "+"), minLength: 4, maxLength: 7 });
  const anySecret = fc.string({ unit: "binary", minLength: 1, maxLength: 14 });

  function scenario(secret: fc.Arbitrary<string>) {
    return fc
      .array(secret, { minLength: 1, maxLength: 4 })
      .chain((secrets) => {
        const variants = secrets.flatMap(maskVariants);
        const piece = fc.oneof(
          fc.uint8Array({ maxLength: 6 }).map((b) => Buffer.from(b)),
          fc
            .string({ unit: fc.constantFrom("a", "b", "é", "=", "Y", "W"), maxLength: 4 })
            .map((s) => Buffer.from(s)),
          ...(variants.length === 0
            ? []
            : [
                fc.nat(variants.length - 1).map((i) => variants[i]!),
                fc
                  .tuple(fc.nat(variants.length - 1), fc.nat())
                  .map(([i, n]) => variants[i]!.subarray(0, n % variants[i]!.length)),
              ]),
        );
        return fc.tuple(
          fc.constant(secrets),
          fc.array(piece, { maxLength: 24 }).map((pieces) => Buffer.concat(pieces)),
          fc.array(fc.nat(), { maxLength: 12 }),
        );
      })
      .map(([secrets, input, rawCuts]) => ({
        secrets,
        input,
        cuts: [...new Set(rawCuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b),
      }));
  }

  it.each([
    ["overlapping secrets", overlapping],
    ["any secrets", anySecret],
  ] as const)("%s", (_name, secret) => {
    fc.assert(
      fc.property(scenario(secret), ({ secrets, input, cuts }) => {
        const set = buildMaskSet(secrets);
        const expected = referenceMask(input, secrets);
        expect(maskChunks(set, splitAt(input, cuts)).equals(expected)).toBe(true);
        expect(maskChunks(set, [input]).equals(expected)).toBe(true);
        if (isUtf8(input)) expect(maskText(input.toString("utf8"), set)).toBe(expected.toString("utf8"));
      }),
      { numRuns: 400 },
    );
  });

  it("one byte at a time equals the reference", () => {
    fc.assert(
      fc.property(scenario(overlapping), ({ secrets, input }) => {
        expect(maskChunks(buildMaskSet(secrets), bytesOf(input)).equals(referenceMask(input, secrets))).toBe(
          true,
        );
      }),
      { numRuns: 200 },
    );
  });

  it("without occurrences, output equals input byte for byte", () => {
    fc.assert(
      fc.property(
        fc.array(anySecret, { maxLength: 4 }),
        fc.uint8Array({ maxLength: 300 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (secrets, bytes, rawCuts) => {
          const input = Buffer.from(bytes);
          fc.pre(referenceMask(input, secrets).equals(input));
          const cuts = [...new Set(rawCuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
          expect(maskChunks(buildMaskSet(secrets), splitAt(input, cuts)).equals(input)).toBe(true);
        },
      ),
    );
  });
});

import { isUtf8 } from "node:buffer";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { LogFields, Logger } from "../../agent-core/index.ts";
// Deep import until agent-core/index.ts exports the masker.
import {
  buildMaskSet,
  MAX_MASK_BYTES,
  MAX_MASK_VALUES,
  type MaskSet,
  maskText,
  maskVariants,
  StreamMasker,
} from "../../agent-core/logs/masker.ts";

/** Wrapped forms: a line break must end a line of at least this many base64 characters. */
const MIN_WRAP_COLUMNS = 16;
const BASE64_CHAR = /^[A-Za-z0-9+/\-_=]$/;

/** Whether a variant is also matched wrapped: 7 bytes or more, all in the base64 alphabets. */
const isWrappable = (variant: Buffer) =>
  variant.length >= 7 && /^[A-Za-z0-9+/\-_=]+$/.test(variant.toString("latin1"));

/** Whether the line break at `text[at]` ends a line of base64 text (16 base64 characters before it). */
function endsBase64Line(text: Buffer, at: number): boolean {
  if (at < MIN_WRAP_COLUMNS) return false;
  for (let i = at - MIN_WRAP_COLUMNS; i < at; i++) {
    if (!BASE64_CHAR.test(String.fromCharCode(text[i]!))) return false;
  }
  return true;
}

/**
 * The span in bytes of `variant` at `text[at]`, or -1. A wrappable variant may have one line
 * break (CR LF, CR or LF) between two characters where that line break ends a line of base64
 * text.
 */
function spanAt(text: Buffer, at: number, variant: Buffer, wrapped: boolean): number {
  let i = at;
  for (let j = 0; j < variant.length; j++) {
    if (j > 0 && wrapped && (text[i] === 10 || text[i] === 13)) {
      if (!endsBase64Line(text, i)) return -1;
      i += text[i] === 13 && text[i + 1] === 10 ? 2 : 1;
    }
    if (i >= text.length || text[i] !== variant[j]) return -1;
    i++;
  }
  return i - at;
}

/**
 * The reference masking, written independently of the automaton, by brute force: every variant
 * of every accepted secret (at least 4 characters) is tried at every position.
 *
 * The rule this pins down is **leftmost-longest, non-overlapping**: at the first position where
 * some variant occurs, the occurrence spanning the most bytes is replaced by `***` (followed by
 * the line breaks it spanned, for a wrapped one), and the search resumes after it; occurrences
 * overlapping a replaced one are not masked separately.
 */
function referenceMask(input: Buffer, secrets: readonly string[]): Buffer {
  const variants = secrets
    .filter((s) => [...s].length >= 4)
    .flatMap(maskVariants)
    .map((variant) => ({ variant, wrapped: isWrappable(variant) }));
  // Only the variants starting with a position's byte can occur there (spanAt compares that byte
  // first): trying just those keeps the brute force, at a cost that lets inputs of megabytes in.
  const byFirstByte = new Map<number, typeof variants>();
  for (const v of variants) byFirstByte.set(v.variant[0]!, [...(byFirstByte.get(v.variant[0]!) ?? []), v]);
  const out: Buffer[] = [];
  let plainFrom = 0;
  let i = 0;
  while (i < input.length) {
    let best = { span: -1, wrapped: false };
    for (const { variant, wrapped } of byFirstByte.get(input[i]!) ?? []) {
      const span = spanAt(input, i, variant, wrapped);
      if (span > best.span) best = { span, wrapped };
    }
    if (best.span <= 0) {
      i++;
      continue;
    }
    const spanned = input.subarray(i, i + best.span);
    const breaks = best.wrapped ? spanned.filter((b) => b === 10 || b === 13) : Buffer.alloc(0);
    out.push(input.subarray(plainFrom, i), Buffer.from("***"), Buffer.from(breaks));
    i += best.span;
    plainFrom = i;
  }
  out.push(input.subarray(plainFrom));
  return Buffer.concat(out);
}

/** `text` with a line break inserted every `width` characters from `offset` (as a wrapper does). */
function wrap(text: string, width: number, lineBreak = "\n", offset = 0): string {
  const lines: string[] = [];
  let at = 0;
  for (let end = width - offset; at < text.length; end += width) {
    lines.push(text.slice(at, Math.max(at, end)));
    at = Math.max(at, end);
  }
  return lines.filter((line) => line !== "").join(lineBreak);
}

/** Feeds `chunks` to one masker and returns everything it emitted, `end()` included. */
function maskChunks(set: MaskSet, chunks: readonly Buffer[]): Buffer {
  const masker = new StreamMasker(set);
  const out: Buffer[] = [];
  for (const chunk of chunks) {
    out.push(Buffer.from(masker.write(chunk)));
    // A proper prefix of a variant, with the line breaks of a wrapped one.
    expect(masker.heldBytes).toBeLessThan(Math.max(1, 2 * set.maxVariantBytes));
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

describe("wrapped base64 (coreutils base64, openssl base64, PEM, MIME)", () => {
  /** Line breaks out, base64 decoded: what a reader of the log could recover. */
  const decoded = (text: string) => Buffer.from(text.replace(/[\r\n]/g, ""), "base64").toString("latin1");

  const secrets = [
    "a-40-character-api-token-0123456789abcd",
    `${"long secret: ".repeat(12)}end`,
    "pässwörd with spaces & sÿmbols!",
    "short6",
  ];
  for (const secret of secrets) {
    const set = buildMaskSet([secret]);
    for (const [tool, width, lineBreak] of [
      ["coreutils base64", 76, "\n"],
      ["openssl base64 / PEM", 64, "\n"],
      ["MIME", 76, "\r\n"],
    ] as const) {
      it(`${tool} of ${JSON.stringify(secret.slice(0, 20))} (${Buffer.byteLength(secret)} bytes), after 0 to 80 bytes of context: masked, nothing decodes to it`, () => {
        for (let before = 0; before <= 80; before++) {
          const blob = Buffer.concat([
            Buffer.alloc(before, "#"),
            Buffer.from(secret),
            Buffer.from("...tail"),
          ]);
          const text = wrap(blob.toString("base64"), width, lineBreak);
          const masked = maskText(text, set);
          expect(decoded(masked), `${before} bytes before`).not.toContain(secret);
          expect(masked, `${before} bytes before`).toContain("***");
          // Line breaks are kept: the block keeps its shape.
          expect(masked.split(lineBreak).length).toBe(text.split(lineBreak).length);
          expect(maskChunks(set, bytesOf(Buffer.from(text))).toString()).toBe(masked);
          expect(Buffer.from(masked).equals(referenceMask(Buffer.from(text), [secret]))).toBe(true);
        }
      });
    }
  }

  it("a PEM block between its header lines", () => {
    const secret = "-----BEGIN-not-a-key but a 64-byte secret value: 0123456789abcdef";
    const body = wrap(Buffer.from(`prefix ${secret} suffix`).toString("base64"), 64);
    const pem = `-----BEGIN DATA-----\n${body}\n-----END DATA-----\n`;
    const masked = maskText(pem, buildMaskSet([secret]));
    expect(masked).toMatch(/^-----BEGIN DATA-----\n.*\*\*\*/s);
    expect(masked.endsWith("\n-----END DATA-----\n")).toBe(true);
    expect(decoded(masked.split("\n").slice(1, -2).join(""))).not.toContain("0123456789abcdef");
  });

  it("joins text only across a line break that ends a line of 16 base64 characters or more", () => {
    const secret = "token-abcdefghijklmnop";
    const set = buildMaskSet([secret]);
    expect(maskText("token-abcdefghij\nklmnop", set)).toBe("***\n");
    expect(maskText("xxxxxxxxxxxxxtoken-abc\ndefghijklmnop", set)).toBe("xxxxxxxxxxxxx***\n");
    expect(maskText("token-abcdefghij\n\nklmnop", set)).toBe("token-abcdefghij\n\nklmnop");
    expect(maskText("token-abc\ndefghijklmnop", set)).toBe("token-abc\ndefghijklmnop");
    expect(maskText("a line: token-abc\ndefghijklmnop", set)).toBe("a line: token-abc\ndefghijklmnop");
    expect(maskText("t\noken-abcdefghijklmnop", set)).toBe("t\noken-abcdefghijklmnop");
  });

  it("holds nothing of a short line of ordinary output for the next line", () => {
    const set = buildMaskSet(["token-abcdefghijklmnop"]);
    const masker = new StreamMasker(set);
    // "tok" could begin the secret, but a line break after a short line ends no wrapped form.
    expect(masker.write(Buffer.from("filling tok\n")).toString()).toBe("filling tok\n");
    expect(masker.heldBytes).toBe(0);
    // After a base64 line, the same tail may go on on the next line: it is held.
    expect(masker.write(Buffer.from("QUJDREVGR0hJSktMtok\n")).toString()).toBe("QUJDREVGR0hJSktM");
    expect(masker.write(Buffer.from("en-abcdefghijklmnop!")).toString()).toBe("***\n!");
  });

  it("a raw token of the base64 alphabet is masked wrapped too; other raw values only as they are", () => {
    const set = buildMaskSet(["ghp_0123456789abcdefABCDEF", "pass word!"]);
    expect(maskText("ghp_0123456789abcdef\nABCDEF", set)).toBe("***\n");
    expect(maskText("pass\nword!", set)).toBe("pass\nword!");
  });
});

describe("bounds of a mask set", () => {
  it("builds the largest set allowed (1,001 values, 69,632 bytes) and masks with it", () => {
    const values = Array.from({ length: MAX_MASK_VALUES }, (_, i) =>
      pseudoRandomBytes(51, i + 1)
        .toString("base64")
        .slice(0, 68),
    );
    expect(values.join("").length).toBeLessThanOrEqual(MAX_MASK_BYTES);
    const set = buildMaskSet(values);
    expect(set.secretCount).toBe(MAX_MASK_VALUES);
    const input = Buffer.from(`a ${values[500]} b ${Buffer.from(values[7]!).toString("base64")} c\n`);
    expect(maskChunks(set, splitAt(input, [40, 41, 90])).toString()).toBe("a *** b *** c\n");
  });

  it.each([
    [
      "20,000 values (a 669 KB submission)",
      Array.from({ length: 20_000 }, (_, i) => `secret-value-${i}-abcdefghij`),
    ],
    ["one value more than allowed", Array.from({ length: MAX_MASK_VALUES + 1 }, (_, i) => `value-${i}`)],
    ["70,000 bytes in one value", ["v".repeat(70_000)]],
  ])("refuses %s with AGENT_ERR_MASK_LIMIT, naming the figures and no value", (_what, values) => {
    let error: unknown;
    try {
      buildMaskSet(values);
    } catch (caught) {
      error = caught;
    }
    expect(error).toMatchObject({ code: "AGENT_ERR_MASK_LIMIT" });
    expect((error as Error).message).toMatch(
      /too many secrets to mask: [\d,]+ values of [\d,]+ bytes in all; at most 1,001 values and 69,632 bytes/,
    );
    expect((error as Error).message).not.toMatch(/secret-value|value-1|vvvv/);
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
          fc.constantFrom("\n", "\r\n", "\r", "\n\n").map((b) => Buffer.from(b)),
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
                // A variant wrapped: line breaks at random columns (some closer than the rule allows).
                fc
                  .tuple(
                    fc.nat(variants.length - 1),
                    fc.integer({ min: 1, max: 20 }),
                    fc.nat(19),
                    fc.constantFrom("\n", "\r\n", "\r"),
                  )
                  .map(([i, width, offset, lineBreak]) =>
                    Buffer.from(
                      wrap(variants[i]!.toString("latin1"), width, lineBreak, offset % width),
                      "latin1",
                    ),
                  ),
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

/**
 * Secret masking for job output and agent diagnostics.
 *
 * Every secret expands into a set of byte sequences ("variants": the raw value and its common
 * encodings, see {@link maskVariants}); every occurrence of any variant is replaced by `***`.
 * Matching is on bytes, so it is indifferent to how the output is split into chunks and to
 * bytes that are not valid UTF-8.
 *
 * **Wrapped forms.** A variant of at least {@link MIN_WRAPPED_BYTES} bytes made only of base64
 * characters (`A-Z a-z 0-9 + / - _ =`: the base64 forms of a secret of 6 bytes or more, and a
 * raw token of that alphabet) also matches with a line break (LF, CR LF or CR) between two of
 * its characters where that line break ends a line of base64 text (at least 16 base64
 * characters before it): as `base64` (76 columns), `openssl base64` and PEM (64) and MIME (76,
 * CR LF) wrap it. Its mask keeps those line breaks: `QUJD\nREVG` becomes `***\n`. A short line
 * of ordinary output ends no wrapped form, so nothing of it is held for the next line.
 *
 * Overlaps are resolved **leftmost-longest, non-overlapping**: scanning from the left, at the
 * first position where some variant occurs, the one spanning the most bytes is replaced and the
 * scan resumes right after it. {@link StreamMasker} gives exactly this result for the
 * concatenated input, however it is chunked.
 *
 * **Bounds.** A set holds at most {@link MAX_MASK_VALUES} values of {@link MAX_MASK_BYTES} bytes
 * in all; more is refused with `AGENT_ERR_MASK_LIMIT`. It is built in time and memory linear in
 * the variants' total length (see mask-automaton.ts), and searched with one table lookup per
 * input byte while its table stays small.
 */
import { AgentError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { MAX_JOB_MASK_BYTES, MAX_JOB_MASK_VALUES } from "../protocol/messages.ts";
import { BASE64_BYTE, base64RunAt, MaskAutomaton } from "./mask-automaton.ts";

/** What a masked occurrence becomes. */
export const MASK = "***";

/** Values shorter than this many characters (code points) are refused as secrets. */
export const MIN_SECRET_CHARS = 4;

/** Variants shorter than this many bytes are not masked (they would mask ordinary text). */
export const MIN_VARIANT_BYTES = 4;

/** Shortest variant also matched wrapped by line breaks (shorter ones are matched as they are). */
export const MIN_WRAPPED_BYTES = 7;

/** Most values in one mask set: a job's {@link MAX_JOB_MASK_VALUES} and the agent's own secret. */
export const MAX_MASK_VALUES = MAX_JOB_MASK_VALUES + 1;

/** Most UTF-8 bytes of all values of one mask set: a job's, and 4 KiB for the agent's secret. */
export const MAX_MASK_BYTES = MAX_JOB_MASK_BYTES + 4_096;

const MASK_BYTES = Buffer.from(MASK);
const EMPTY = Buffer.alloc(0);

/** Characters trimmed from the start of the base64 of `k` unknown bytes followed by the secret. */
const LEADING_TRIM = [0, 2, 3] as const;

/**
 * The byte sequences masked for one secret. All are derived from the UTF-8 bytes `S` of
 * `secret` (a lone surrogate in `secret` becomes U+FFFD, as in `Buffer.from`):
 *
 * - **raw**: `S`.
 * - **base64, whole value**: `base64(S)` with and without `=` padding, in the standard
 *   (`+/`) and the URL-safe (`-_`) alphabet.
 * - **base64, embedded**: for `k` = 0, 1, 2 the "core" of `base64(k bytes + S)`: the characters
 *   that depend on `S` alone, i.e. without the first 0, 2 or 3 characters (which mix in the
 *   unknown preceding bytes), without the padding, and without the last character when
 *   `(k + |S|) % 3 != 0` (it mixes in the unknown following byte). Each core in both alphabets.
 *   Since any byte stream places `S` at offset `k` modulo 3 for one of these `k`, the core occurs
 *   in `base64(anything + S + anything)` and is masked there. What stays visible is at most one
 *   partial character on each side, carrying at most 4 bits of the first and 4 bits of the last
 *   byte of `S`.
 * - **percent-encoded**: `encodeURIComponent(secret)`; the same with `%20` written `+`; and the
 *   WHATWG `application/x-www-form-urlencoded` form (what `URLSearchParams` writes: `+` for
 *   space, `!'()~` escaped too). Hex digits are upper-case, as every common encoder writes them.
 * - **JSON string body**: `JSON.stringify(secret)` without its quotes, and the ASCII-only form
 *   with every non-ASCII code unit as a lower-case `\uXXXX` escape (what Python's `json.dumps`
 *   writes by default).
 *
 * Duplicates are removed and variants shorter than {@link MIN_VARIANT_BYTES} bytes are dropped.
 * The base64 forms are also matched wrapped (see the module comment). Not covered: other
 * encodings (hex, double encoding, base64 of the percent-encoded form, ...), lower-case percent
 * escapes, base64 wrapped with two line breaks (or spaces) between characters.
 *
 * @example
 * ```ts
 * maskVariants("hunter2!").map(String);
 * // ["hunter2!", "aHVudGVyMiE=", "aHVudGVyMiE", "aHVudGVyMi", "h1bnRlcjIh", "odW50ZXIyI", "hunter2%21"]
 * // (no URL-safe forms here: this base64 has no `+` or `/`; the JSON form equals the raw one)
 * ```
 */
export function maskVariants(secret: string): Buffer[] {
  const raw = Buffer.from(secret, "utf8");
  const candidates: string[] = [];
  const standard: string[] = [];
  const whole = raw.toString("base64");
  standard.push(whole, whole.replace(/=+$/, ""));
  for (let k = 0; k < 3; k++) {
    const shifted = Buffer.concat([Buffer.alloc(k), raw])
      .toString("base64")
      .replace(/=+$/, "");
    const trailing = (k + raw.length) % 3 === 0 ? 0 : 1;
    standard.push(shifted.slice(LEADING_TRIM[k]!, shifted.length - trailing));
  }
  for (const b64 of standard) candidates.push(b64, b64.replaceAll("+", "-").replaceAll("/", "_"));
  const uriComponent = encodeURIComponent(raw.toString("utf8"));
  candidates.push(uriComponent, uriComponent.replaceAll("%20", "+"));
  candidates.push(new URLSearchParams([["", raw.toString("utf8")]]).toString().slice(1));
  const json = JSON.stringify(raw.toString("utf8")).slice(1, -1);
  candidates.push(
    json,
    json.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`),
  );

  const seen = new Set<string>();
  const variants: Buffer[] = [];
  const add = (bytes: Buffer) => {
    const key = bytes.toString("latin1");
    if (bytes.length < MIN_VARIANT_BYTES || seen.has(key)) return;
    seen.add(key);
    variants.push(bytes);
  };
  add(raw);
  for (const text of candidates) add(Buffer.from(text, "utf8"));
  return variants;
}

/**
 * An immutable, compiled set of secrets to mask, shared by any number of {@link StreamMasker}s.
 * Build it with {@link buildMaskSet}.
 */
export class MaskSet {
  /** Number of distinct secrets accepted. */
  readonly secretCount: number;
  /** Number of distinct byte sequences masked (all variants of all secrets). */
  readonly variantCount: number;
  /**
   * Length in bytes of the longest variant. A masker holds back at most one byte less, plus the
   * line breaks inside a wrapped form: at most three times that.
   */
  readonly maxVariantBytes: number;
  /** @internal Use {@link buildMaskSet}. */
  constructor(secretCount: number, engines: Engines) {
    this.secretCount = secretCount;
    this.variantCount = (engines.literal?.sequenceCount ?? 0) + (engines.wrapped?.sequenceCount ?? 0);
    this.maxVariantBytes = Math.max(
      engines.literal?.maxSequenceBytes ?? 0,
      engines.wrapped?.maxSequenceBytes ?? 0,
    );
    if (this.variantCount > 0) automata.set(this, engines);
    Object.freeze(this);
  }

  /** True when no secret was accepted: maskers pass everything through unchanged. */
  get isEmpty(): boolean {
    return !automata.has(this);
  }
}

/**
 * The two searches of a set (variants matched as they are, and those matched wrapped too), and
 * the needles of the quick path when there are few: byte strings of which every occurrence of a
 * variant, and every undecided tail longer than {@link QUIET_TAIL_BYTES}, holds at least one.
 */
interface Engines {
  literal: MaskAutomaton | undefined;
  wrapped: MaskAutomaton | undefined;
  needles: Buffer[] | undefined;
}

/** Above this many distinct needles, searching each natively costs more than one scan. */
const MAX_NEEDLES = 32;

/**
 * Longest undecided tail in input that holds no needle: 3 bytes of a literal variant, or 6
 * characters of a wrapped one with a line break (up to 2 bytes) after any of them.
 */
const QUIET_TAIL_BYTES = 10;

/**
 * The needles for `literal` and `wrapped` variants: the first 4 bytes of each, and for a wrapped
 * one also its bytes 3 to 6. An occurrence of a wrapped variant holds at most one line break
 * among its first 7 characters (line breaks are 16 characters apart): after the 4th character
 * (bytes 0-3 intact) or before it (bytes 3-6 intact, right after that line break).
 */
function needlesOf(literal: readonly Buffer[], wrapped: readonly Buffer[]): Buffer[] | undefined {
  const needles = new Map<string, Buffer>();
  const add = (bytes: Buffer) => needles.set(bytes.toString("latin1"), bytes);
  for (const variant of literal) add(variant.subarray(0, MIN_VARIANT_BYTES));
  for (const variant of wrapped) {
    add(variant.subarray(0, 4));
    add(variant.subarray(3, 7));
  }
  return needles.size <= MAX_NEEDLES ? [...needles.values()] : undefined;
}

/** The compiled automata of each non-empty {@link MaskSet}, out of reach of its users. */
const automata = new WeakMap<MaskSet, Engines>();

/** Whether a variant is base64 text (A-Z a-z 0-9 + / - _ =): one that may be wrapped. */
function isBase64Text(bytes: Buffer): boolean {
  for (const byte of bytes) if (BASE64_BYTE[byte] === 0) return false;
  return true;
}

/**
 * Compiles the secrets to mask. Values shorter than {@link MIN_SECRET_CHARS} characters (code
 * points) are refused, each with one warning through `logger` that names its position and
 * length but never the value. Values are used exactly as given (nothing is trimmed); duplicates
 * count once. Time and memory are linear in the values' total length.
 *
 * @throws AgentError `AGENT_ERR_MASK_LIMIT` when given more than {@link MAX_MASK_VALUES} values
 *   or more than {@link MAX_MASK_BYTES} bytes in all (the error names the figures, never a value).
 * @example
 * ```ts
 * const set = buildMaskSet([config.secret, ...job.mask], logger);
 * const stdout = new StreamMasker(set);
 * ```
 */
export function buildMaskSet(values: readonly string[], logger?: Logger): MaskSet {
  checkMaskLimits(values, MAX_MASK_VALUES, MAX_MASK_BYTES);
  const accepted = new Set<string>();
  values.forEach((value, index) => {
    const chars = [...value].length;
    if (chars < MIN_SECRET_CHARS) {
      logger?.warn("secret value refused for masking: too short", {
        index,
        chars,
        minChars: MIN_SECRET_CHARS,
      });
      return;
    }
    accepted.add(value);
  });
  const literal: Buffer[] = [];
  const wrapped: Buffer[] = [];
  for (const value of accepted) {
    for (const variant of maskVariants(value)) {
      (variant.length >= MIN_WRAPPED_BYTES && isBase64Text(variant) ? wrapped : literal).push(variant);
    }
  }
  return new MaskSet(accepted.size, {
    literal: literal.length > 0 ? new MaskAutomaton(literal, false) : undefined,
    wrapped: wrapped.length > 0 ? new MaskAutomaton(wrapped, true) : undefined,
    needles: needlesOf(literal, wrapped),
  });
}

/**
 * Throws `AGENT_ERR_MASK_LIMIT` when `values` are more than `maxValues` or take more than
 * `maxBytes` UTF-8 bytes in all. The message gives the figures, never a value.
 */
export function checkMaskLimits(values: readonly string[], maxValues: number, maxBytes: number): void {
  let bytes = 0;
  for (const value of values) bytes += Buffer.byteLength(value, "utf8");
  if (values.length <= maxValues && bytes <= maxBytes) return;
  throw new AgentError(
    "AGENT_ERR_MASK_LIMIT",
    `too many secrets to mask: ${values.length.toLocaleString("en-US")} values of ${bytes.toLocaleString("en-US")} bytes in all; ` +
      `at most ${maxValues.toLocaleString("en-US")} values and ${maxBytes.toLocaleString("en-US")} bytes are accepted`,
  );
}

/**
 * Masks one output stream (stdout and stderr each need their own). `write` returns the bytes
 * that are safe to emit now; it holds back only the longest tail that could still become a
 * variant (a proper prefix of one, with the line breaks inside it when wrapped), so a secret
 * split across any number of chunks, down to one byte each, is still masked. `end` releases that
 * tail. The concatenated outputs equal the leftmost-longest masking of the concatenated inputs.
 *
 * A returned buffer may be `chunk` itself or a view of it (no copy when nothing is masked).
 *
 * @example
 * ```ts
 * const masker = new StreamMasker(set);
 * child.stdout.on("data", (chunk: Buffer) => sink.write(masker.write(chunk)));
 * child.stdout.on("end", () => sink.write(masker.end()));
 * ```
 */
export class StreamMasker {
  readonly #engines: Engines | undefined;
  #held: Buffer = EMPTY;
  /** Base64 characters right before the held tail (a line break inside a wrapped form needs 16). */
  #base64Before = 0;
  #ended = false;

  constructor(set: MaskSet) {
    this.#engines = automata.get(set);
  }

  /** Bytes currently held back (a possible start of a secret). */
  get heldBytes(): number {
    return this.#held.length;
  }

  /** Masks `chunk` (after any held tail) and returns what may be emitted now. */
  write(chunk: Buffer): Buffer {
    if (this.#ended) throw new AgentError("AGENT_ERR_INTERNAL", "StreamMasker.write() called after end()");
    const engines = this.#engines;
    if (engines === undefined || chunk.length === 0) return chunk;
    const input = this.#held.length === 0 ? chunk : Buffer.concat([this.#held, chunk]);
    const { output, holdFrom } = maskBytes(engines, input, false, this.#base64Before);
    this.#base64Before = base64RunAt(input, holdFrom, this.#base64Before);
    // Copy the tail: `chunk` belongs to the caller.
    this.#held = holdFrom === input.length ? EMPTY : Buffer.from(input.subarray(holdFrom));
    return output;
  }

  /** Releases the held tail, masked if it completes a variant. Further writes throw. */
  end(): Buffer {
    if (this.#ended) return EMPTY;
    this.#ended = true;
    const held = this.#held;
    this.#held = EMPTY;
    if (this.#engines === undefined || held.length === 0) return held;
    return maskBytes(this.#engines, held, true, this.#base64Before).output;
  }
}

/**
 * Masks a whole string (a diagnostics line, an error message). The text is masked as its UTF-8
 * bytes; when nothing matches, the very same string is returned.
 *
 * @example
 * ```ts
 * maskText(`token=${secret}`, set); // "token=***"
 * ```
 */
export function maskText(text: string, set: MaskSet): string {
  const engines = automata.get(set);
  if (engines === undefined || text.length === 0) return text;
  const input = Buffer.from(text, "utf8");
  const { output } = maskBytes(engines, input, true);
  return output === input ? text : output.toString("utf8");
}

/**
 * Masks `input` scanned from the start. With `final`, every complete occurrence is masked and
 * nothing is held; otherwise `holdFrom` is where the undecided tail begins: the longest suffix,
 * after the last mask, that is a proper prefix of some variant. `base64Before`: base64
 * characters right before `input` (0 at the start of a stream).
 */
function maskBytes(
  engines: Engines,
  input: Buffer,
  final: boolean,
  base64Before = 0,
): { output: Buffer; holdFrom: number } {
  const length = input.length;
  const quiet = engines.needles?.every((needle) => input.indexOf(needle) === -1) ?? false;
  if (quiet && final) return { output: input, holdFrom: length };
  if (quiet && length > QUIET_TAIL_BYTES) {
    // Quick path: nothing to mask, and only the last few bytes can start a variant.
    const tailStart = length - QUIET_TAIL_BYTES;
    const before = base64RunAt(input, tailStart, base64Before);
    const holdFrom = tailStart + undecidedStart(engines, input.subarray(tailStart), before);
    return { output: input.subarray(0, holdFrom), holdFrom };
  }
  const searches = [engines.literal, engines.wrapped].flatMap((automaton) =>
    automaton === undefined ? [] : [{ automaton, ...automaton.scan(input, base64Before) }],
  );
  const holdFrom = (after: number) => {
    if (final) return length;
    let from = length;
    for (const { automaton, endState } of searches) {
      from = Math.min(from, automaton.undecidedStart(endState, input, after));
    }
    return from;
  };

  // (start, length, wrapped) triples.
  const found: number[] = [];
  for (const { automaton, matches } of searches) {
    if (matches === undefined) continue;
    const wrapped = automaton.lineBreaks ? 1 : 0;
    for (let k = 0; k < matches.length; k += 2) found.push(matches[k]!, matches[k + 1]!, wrapped);
  }
  if (found.length === 0) {
    const from = holdFrom(0);
    return { output: from === length ? input : input.subarray(0, from), holdFrom: from };
  }

  // Leftmost first, then longest first.
  const order = Array.from({ length: found.length / 3 }, (_, k) => k * 3);
  order.sort((a, b) => found[a]! - found[b]! || found[b + 1]! - found[a + 1]!);
  const pieces: Buffer[] = [];
  let position = 0;
  for (const k of order) {
    const start = found[k]!;
    if (start < position) continue; // overlaps the previous mask, or a shorter one at its start
    if (start >= holdFrom(position)) break; // may still grow into a longer variant
    if (start > position) pieces.push(input.subarray(position, start));
    const end = start + found[k + 1]!;
    pieces.push(found[k + 2] === 1 ? wrappedMask(input, start, end) : MASK_BYTES);
    position = end;
  }
  const from = holdFrom(position);
  if (from > position) pieces.push(input.subarray(position, from));
  return { output: Buffer.concat(pieces), holdFrom: from };
}

/**
 * Where the undecided tail of `input` begins (`input.length` when none), for input in which no
 * variant occurs (the needles said so): the scans then find nothing to mask.
 */
function undecidedStart(engines: Engines, input: Buffer, base64Before: number): number {
  let from = input.length;
  for (const automaton of [engines.literal, engines.wrapped]) {
    if (automaton === undefined) continue;
    const { endState } = automaton.scan(input, base64Before);
    from = Math.min(from, automaton.undecidedStart(endState, input, 0));
  }
  return from;
}

/** The mask of a wrapped occurrence: `***` followed by the line breaks it spanned. */
function wrappedMask(input: Buffer, start: number, end: number): Buffer {
  const breaks: number[] = [];
  for (let i = start; i < end; i++) if (input[i] === 10 || input[i] === 13) breaks.push(input[i]!);
  return breaks.length === 0 ? MASK_BYTES : Buffer.concat([MASK_BYTES, Buffer.from(breaks)]);
}

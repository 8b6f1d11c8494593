/**
 * Secret masking for job output and agent diagnostics.
 *
 * Every secret expands into a set of byte sequences ("variants": the raw value and its common
 * encodings, see {@link maskVariants}); every occurrence of any variant is replaced by `***`.
 * Matching is on bytes, so it is indifferent to how the output is split into chunks and to
 * bytes that are not valid UTF-8.
 *
 * Overlaps are resolved **leftmost-longest, non-overlapping**: scanning from the left, at the
 * first position where some variant occurs, the longest variant occurring there is replaced and
 * the scan resumes right after it. {@link StreamMasker} gives exactly this result for the
 * concatenated input, however it is chunked.
 *
 * The engine is an Aho-Corasick automaton compiled to a dense transition table over the byte
 * classes that occur in the variants: one table lookup per input byte, whatever the number of
 * secrets.
 */
import { AgentError } from "../errors.ts";
import type { Logger } from "../logger.ts";

/** What a masked occurrence becomes. */
export const MASK = "***";

/** Values shorter than this many characters (code points) are refused as secrets. */
export const MIN_SECRET_CHARS = 4;

/** Variants shorter than this many bytes are not masked (they would mask ordinary text). */
export const MIN_VARIANT_BYTES = 4;

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
 * Not covered: other encodings (hex, double encoding, base64 of the percent-encoded form, ...),
 * base64 wrapped by line breaks inside the secret's span, lower-case percent escapes.
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
  /** Length in bytes of the longest variant; a masker holds back at most one byte less. */
  readonly maxVariantBytes: number;
  /** @internal Use {@link buildMaskSet}. */
  constructor(secretCount: number, variants: readonly Buffer[]) {
    this.secretCount = secretCount;
    this.variantCount = variants.length;
    this.maxVariantBytes = variants.reduce((max, v) => Math.max(max, v.length), 0);
    if (variants.length > 0) automata.set(this, new Automaton(variants));
    Object.freeze(this);
  }

  /** True when no secret was accepted: maskers pass everything through unchanged. */
  get isEmpty(): boolean {
    return !automata.has(this);
  }
}

/** Above this many distinct variant heads, searching each natively costs more than one scan. */
const MAX_NEEDLES = 32;

/** The compiled automaton of each non-empty {@link MaskSet}, out of reach of its users. */
const automata = new WeakMap<MaskSet, Automaton>();

/**
 * Compiles the secrets to mask. Values shorter than {@link MIN_SECRET_CHARS} characters (code
 * points) are refused, each with one warning through `logger` that names its position and
 * length but never the value. Values are used exactly as given (nothing is trimmed); duplicates
 * count once.
 *
 * @example
 * ```ts
 * const set = buildMaskSet([config.secret, ...job.secrets], logger);
 * const stdout = new StreamMasker(set);
 * ```
 */
export function buildMaskSet(values: readonly string[], logger?: Logger): MaskSet {
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
  const seen = new Set<string>();
  const variants: Buffer[] = [];
  for (const value of accepted) {
    for (const variant of maskVariants(value)) {
      const key = variant.toString("latin1");
      if (seen.has(key)) continue;
      seen.add(key);
      variants.push(variant);
    }
  }
  return new MaskSet(accepted.size, variants);
}

/**
 * Masks one output stream (stdout and stderr each need their own). `write` returns the bytes
 * that are safe to emit now; it holds back only the longest tail that could still become a
 * variant (a proper prefix of one, at most `set.maxVariantBytes - 1` bytes), so a secret split
 * across any number of chunks, down to one byte each, is still masked. `end` releases that tail.
 * The concatenated outputs equal the leftmost-longest masking of the concatenated inputs.
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
  readonly #automaton: Automaton | undefined;
  #held: Buffer = EMPTY;
  #ended = false;

  constructor(set: MaskSet) {
    this.#automaton = automata.get(set);
  }

  /** Bytes currently held back (a possible start of a secret). */
  get heldBytes(): number {
    return this.#held.length;
  }

  /** Masks `chunk` (after any held tail) and returns what may be emitted now. */
  write(chunk: Buffer): Buffer {
    if (this.#ended) throw new AgentError("AGENT_ERR_INTERNAL", "StreamMasker.write() called after end()");
    const automaton = this.#automaton;
    if (automaton === undefined || chunk.length === 0) return chunk;
    const input = this.#held.length === 0 ? chunk : Buffer.concat([this.#held, chunk]);
    const quick = automaton.holdFromWithoutMatches(input);
    const { output, holdFrom } =
      quick === undefined
        ? automaton.mask(input, false)
        : { output: input.subarray(0, quick), holdFrom: quick };
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
    if (this.#automaton === undefined || held.length === 0) return held;
    return this.#automaton.mask(held, true).output;
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
  const automaton = automata.get(set);
  if (automaton === undefined || text.length === 0) return text;
  const input = Buffer.from(text, "utf8");
  const { output } = automaton.mask(input, true);
  return output === input ? text : output.toString("utf8");
}

/** @internal Aho-Corasick automaton over the variants, as a dense DFA over byte classes. */
class Automaton {
  /** Byte -> class; class 0 is every byte that occurs in no variant. */
  readonly #classOf = new Uint8Array(256);
  readonly #classCount: number;
  /**
   * The transitions, failure links already resolved, with states premultiplied by the class
   * count: `step[state * classCount + class]` is `next * classCount`, negated when `next` ends a
   * variant (the root, 0, never does).
   */
  readonly #step: Int32Array;
  /** Nearest state on the failure chain (itself included) that ends a variant, or -1. */
  readonly #output: Int32Array;
  readonly #fail: Int32Array;
  readonly #depth: Int32Array;
  /** Whether a state is a proper prefix of some variant (has a child in the trie). */
  readonly #hasChild: Uint8Array;
  /** Length of the variant ending exactly at a state, or 0. */
  readonly #endsVariant: Int32Array;

  /**
   * The distinct first MIN_VARIANT_BYTES bytes of the variants: a match needs one of them in the
   * input, and `Buffer#indexOf` finds them natively, far faster than the byte-by-byte scan.
   */
  readonly #needles: Buffer[];

  constructor(variants: readonly Buffer[]) {
    const heads = new Map<string, Buffer>();
    for (const variant of variants) {
      const head = variant.subarray(0, MIN_VARIANT_BYTES);
      heads.set(head.toString("latin1"), head);
    }
    this.#needles = heads.size <= MAX_NEEDLES ? [...heads.values()] : [];
    let classCount = 1;
    for (const variant of variants) {
      for (const byte of variant) if (this.#classOf[byte] === 0) this.#classOf[byte] = classCount++;
    }
    this.#classCount = classCount;

    // Trie.
    const children: Map<number, number>[] = [new Map()];
    const depth: number[] = [0];
    const ends: number[] = [0];
    for (const variant of variants) {
      let state = 0;
      for (const byte of variant) {
        const cls = this.#classOf[byte]!;
        const node = children[state]!;
        let next = node.get(cls);
        if (next === undefined) {
          next = children.length;
          node.set(cls, next);
          children.push(new Map());
          depth.push(depth[state]! + 1);
          ends.push(0);
        }
        state = next;
      }
      ends[state] = variant.length;
    }

    const states = children.length;
    const delta = new Int32Array(states * classCount);
    const fail = new Int32Array(states);
    const output = new Int32Array(states).fill(-1);
    const hasChild = new Uint8Array(states);
    // Breadth-first, so that a state's failure target is complete before the state itself.
    const queue: number[] = [0];
    for (let head = 0; head < queue.length; head++) {
      const state = queue[head]!;
      const row = state * classCount;
      const failRow = fail[state]! * classCount;
      hasChild[state] = children[state]!.size > 0 ? 1 : 0;
      output[state] = ends[state]! > 0 ? state : state === 0 ? -1 : output[fail[state]!]!;
      for (let cls = 0; cls < classCount; cls++) {
        const child = children[state]!.get(cls);
        if (child === undefined) {
          delta[row + cls] = state === 0 ? 0 : delta[failRow + cls]!;
        } else {
          fail[child] = state === 0 ? 0 : delta[failRow + cls]!;
          delta[row + cls] = child;
          queue.push(child);
        }
      }
    }
    // Premultiply in place: the table is the largest structure (4 bytes x states x classes).
    for (let i = 0; i < delta.length; i++) {
      const next = delta[i]!;
      delta[i] = output[next]! >= 0 ? -next * classCount : next * classCount;
    }
    this.#step = delta;
    this.#fail = fail;
    this.#output = output;
    this.#hasChild = hasChild;
    this.#depth = Int32Array.from(depth);
    this.#endsVariant = Int32Array.from(ends);
  }

  /**
   * Masks `input` scanned from the start state. With `final`, every complete occurrence is
   * masked and nothing is held; otherwise `holdFrom` is where the undecided tail begins: the
   * longest suffix, after the last mask, that is a proper prefix of some variant.
   */
  /**
   * The fast path of `mask(input, false)` for input that holds no variant's head: nothing to
   * replace, and only the last MIN_VARIANT_BYTES - 1 bytes can start a variant (a longer start
   * would contain a head). Undefined when a head occurs (or there are too many heads to search).
   */
  holdFromWithoutMatches(input: Buffer): number | undefined {
    if (this.#needles.length === 0) return undefined;
    for (const needle of this.#needles) if (input.indexOf(needle) !== -1) return undefined;
    const tailStart = Math.max(0, input.length - (MIN_VARIANT_BYTES - 1));
    return tailStart + this.mask(input.subarray(tailStart), false).holdFrom;
  }

  mask(input: Buffer, final: boolean): { output: Buffer; holdFrom: number } {
    const length = input.length;
    const { matches, endState } = this.#scan(input);
    const holdFrom = (after: number) =>
      final ? length : length - this.#undecidedDepth(endState, length - after);

    if (matches === undefined) {
      const from = holdFrom(0);
      return { output: from === length ? input : input.subarray(0, from), holdFrom: from };
    }

    // Leftmost first, then longest first.
    const order = Array.from({ length: matches.length / 2 }, (_, k) => k * 2);
    order.sort((a, b) => matches[a]! - matches[b]! || matches[b + 1]! - matches[a + 1]!);
    const pieces: Buffer[] = [];
    let position = 0;
    let bytes = 0;
    for (const k of order) {
      const start = matches[k]!;
      if (start < position) continue; // overlaps the previous mask, or a shorter one at its start
      if (start >= holdFrom(position)) break; // may still grow into a longer variant
      if (start > position) {
        pieces.push(input.subarray(position, start));
        bytes += start - position;
      }
      pieces.push(MASK_BYTES);
      bytes += MASK_BYTES.length;
      position = start + matches[k + 1]!;
    }
    const from = holdFrom(position);
    if (from > position) {
      pieces.push(input.subarray(position, from));
      bytes += from - position;
    }
    return { output: Buffer.concat(pieces, bytes), holdFrom: from };
  }

  /**
   * Runs the automaton over `input` from the root. Returns the occurrences as (start, length)
   * pairs in order of their end (`undefined` if none) and the state at the end of `input`.
   */
  #scan(input: Buffer): { matches: number[] | undefined; endState: number } {
    const classOf = this.#classOf;
    const step = this.#step;
    const classCount = this.#classCount;
    const length = input.length;
    let matches: number[] | undefined;
    let at = 0; // premultiplied state
    for (let i = 0; i < length; i++) {
      at = step[at + classOf[input[i]!]!]!;
      if (at < 0) {
        at = -at;
        matches ??= [];
        // Every variant ending here; the root ends none, so the chain stops at -1.
        for (let s = this.#output[at / classCount]!; s >= 0; s = this.#output[this.#fail[s]!]!) {
          const len = this.#endsVariant[s]!;
          matches.push(i + 1 - len, len);
        }
      }
    }
    return { matches, endState: at / classCount };
  }

  /**
   * Depth of the longest suffix, at most `limit` bytes, of the text that led to `state` and that
   * is a proper prefix of some variant (0 if none). Every suffix that is a trie node lies on the
   * failure chain of `state`, deepest first.
   */
  #undecidedDepth(state: number, limit: number): number {
    while (state !== 0 && (this.#hasChild[state] === 0 || this.#depth[state]! > limit))
      state = this.#fail[state]!;
    return this.#depth[state]!;
  }
}

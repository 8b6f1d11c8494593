/**
 * The search engine behind secret masking: an Aho-Corasick automaton over a set of byte
 * sequences, built in time and memory linear in their total length.
 *
 * The trie is built from the sorted sequences in one pass and stored in typed arrays, states
 * numbered breadth-first (children as sorted edge lists, one failure link per state): about 30
 * bytes per state, whatever the bytes are. The shallowest states (all of them for a small set)
 * also get dense rows of a transition table over the byte classes, up to
 * {@link DENSE_MAX_ENTRIES} entries: ordinary text rarely leaves them, so a search mostly costs
 * one table lookup per input byte; deeper states are searched in the compact form (an edge
 * found by binary search, failure links followed). A large set of secrets thus stays within a
 * few tens of megabytes and is built in a fraction of a second.
 *
 * With `lineBreaks`, the sequences (which must be base64 text) are also matched wrapped: with
 * a line break (LF, CR LF or CR) between two of their characters where that line break ends a
 * line of base64 text, that is follows at least {@link MIN_WRAP_COLUMNS} base64 characters.
 * That is how `base64` (76 columns), `openssl base64` and PEM (64) and MIME (76, CR LF) wrap
 * text; a short line of ordinary output ("done") ends no wrapped form, so its last characters
 * are never held back for the line after it.
 */

const LF = 10;
const CR = 13;

/** The shortest line of a wrapped form: a line break inside an occurrence follows at least this many base64 characters. */
export const MIN_WRAP_COLUMNS = 16;

/** Bytes of the base64 alphabets (standard, URL-safe) and padding. */
export const BASE64_BYTE = new Uint8Array(256);
for (const char of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=") {
  BASE64_BYTE[char.charCodeAt(0)] = 1;
}

/**
 * How many base64 characters (at most {@link MIN_WRAP_COLUMNS}) come right before
 * `input[position]`; `before` is that count at `input[0]`, carried over from earlier input.
 */
export function base64RunAt(input: Buffer, position: number, before: number): number {
  let run = 0;
  for (let i = position - 1; i >= 0 && run < MIN_WRAP_COLUMNS; i--) {
    if (BASE64_BYTE[input[i]!] === 0) return run;
    run++;
  }
  return Math.min(MIN_WRAP_COLUMNS, run + (run === position ? before : 0));
}

/** Largest dense part of the transition table, in entries of 4 bytes (4 MiB). */
export const DENSE_MAX_ENTRIES = 1 << 20;

/** Occurrences found by one {@link MaskAutomaton.scan}. */
export interface ScanResult {
  /** (start, length) pairs in input positions, in the order their ends were reached; undefined when none. */
  matches: number[] | undefined;
  /** The state after the last byte (for {@link MaskAutomaton.undecidedStart}). */
  endState: number;
}

export class MaskAutomaton {
  /** Whether single line breaks between characters are skipped. */
  readonly lineBreaks: boolean;
  /** Distinct sequences searched. */
  readonly sequenceCount: number;
  /** Length of the longest sequence, in bytes. */
  readonly maxSequenceBytes: number;
  /** Trie states, the root included. */
  readonly stateCount: number;
  /** States with a dense row: those numbered below this (breadth-first, so the shallowest). */
  readonly denseStates: number;

  /** Edges of state `s` are `edgeStart[s]` .. `edgeStart[s + 1] - 1`, sorted by label. */
  readonly #edgeStart: Int32Array;
  readonly #edgeLabel: Uint8Array;
  readonly #edgeTarget: Int32Array;
  readonly #fail: Int32Array;
  /** Nearest state on the failure chain (itself included) that ends a sequence, or -1. */
  readonly #output: Int32Array;
  readonly #depth: Int32Array;
  /** Length of the sequence ending exactly at a state, or 0. */
  readonly #ends: Int32Array;
  /** Byte -> class (0: a byte in no sequence). */
  readonly #classOf: Uint8Array;
  readonly #classCount: number;
  /**
   * Dense rows: `step[state * classCount + class]` is `next * classCount`, negated when `next`
   * ends a sequence (the root never does), for every state below {@link denseStates}.
   */
  readonly #step: Int32Array;

  /**
   * Builds the automaton for `sequences` (duplicates allowed; empty ones ignored). Time: sorting
   * the sequences, then linear passes over their bytes. `denseMaxEntries` (tests) caps the dense
   * rows below {@link DENSE_MAX_ENTRIES}.
   */
  constructor(sequences: readonly Buffer[], lineBreaks: boolean, denseMaxEntries = DENSE_MAX_ENTRIES) {
    this.lineBreaks = lineBreaks;
    const sorted = sequences.filter((sequence) => sequence.length > 0).sort(Buffer.compare);
    const capacity = 1 + sorted.reduce((sum, sequence) => sum + sequence.length, 0);

    // The trie, in one pass over the sorted sequences: each shares its longest common prefix
    // with the one before it, so only the rest needs new states. Numbered in creation order.
    const parentOf = new Int32Array(capacity);
    const labelOf = new Uint8Array(capacity);
    const depthOf = new Int32Array(capacity);
    const endsOf = new Int32Array(capacity);
    const path = new Int32Array(capacity);
    let states = 1;
    let previous: Buffer = Buffer.alloc(0);
    let count = 0;
    let longest = 0;
    for (const sequence of sorted) {
      if (sequence.equals(previous)) continue;
      let common = 0;
      const max = Math.min(previous.length, sequence.length);
      while (common < max && previous[common] === sequence[common]) common++;
      for (let i = common; i < sequence.length; i++) {
        parentOf[states] = path[i]!;
        labelOf[states] = sequence[i]!;
        depthOf[states] = i + 1;
        path[i + 1] = states++;
      }
      endsOf[path[sequence.length]!] = sequence.length;
      count++;
      longest = Math.max(longest, sequence.length);
      previous = sequence;
    }
    this.sequenceCount = count;
    this.maxSequenceBytes = longest;
    this.stateCount = states;

    // Renumber breadth-first (a stable counting sort by depth): a state's failure target is
    // shallower, so it is numbered lower; siblings keep their label order.
    const byDepth = new Int32Array(longest + 2);
    for (let s = 0; s < states; s++) byDepth[depthOf[s]! + 1]!++;
    for (let d = 0; d <= longest; d++) byDepth[d + 1]! += byDepth[d]!;
    const id = new Int32Array(states);
    for (let s = 0; s < states; s++) id[s] = byDepth[depthOf[s]!]!++;
    const parent = new Int32Array(states);
    const label = new Uint8Array(states);
    const depth = new Int32Array(states);
    const ends = new Int32Array(states);
    for (let s = 0; s < states; s++) {
      const n = id[s]!;
      parent[n] = id[parentOf[s]!]!;
      label[n] = labelOf[s]!;
      depth[n] = depthOf[s]!;
      ends[n] = endsOf[s]!;
    }

    // Children as sorted edge lists.
    const edgeStart = new Int32Array(states + 1);
    for (let s = 1; s < states; s++) edgeStart[parent[s]! + 1]!++;
    for (let s = 0; s < states; s++) edgeStart[s + 1]! += edgeStart[s]!;
    const fill = edgeStart.slice(0, states);
    const edgeLabel = new Uint8Array(Math.max(1, states - 1));
    const edgeTarget = new Int32Array(Math.max(1, states - 1));
    for (let s = 1; s < states; s++) {
      const edge = fill[parent[s]!]!++;
      edgeLabel[edge] = label[s]!;
      edgeTarget[edge] = s;
    }
    this.#edgeStart = edgeStart;
    this.#edgeLabel = edgeLabel;
    this.#edgeTarget = edgeTarget;

    // Failure links and outputs, in state order (breadth-first).
    const fail = new Int32Array(states);
    const output = new Int32Array(states).fill(-1);
    for (let s = 1; s < states; s++) {
      if (depth[s] !== 1) {
        for (let f = fail[parent[s]!]!; ; f = fail[f]!) {
          const next = this.#child(f, label[s]!);
          if (next > 0) {
            fail[s] = next;
            break;
          }
          if (f === 0) break;
        }
      }
      output[s] = ends[s]! > 0 ? s : output[fail[s]!]!;
    }
    this.#fail = fail;
    this.#output = output;
    this.#depth = depth;
    this.#ends = ends;

    const classOf = new Uint8Array(256);
    let classCount = 1;
    for (let s = 1; s < states; s++) {
      if (classOf[label[s]!] === 0) classOf[label[s]!] = classCount++;
    }
    this.#classOf = classOf;
    this.#classCount = classCount;
    this.denseStates = Math.max(1, Math.min(states, Math.floor(denseMaxEntries / classCount)));
    this.#step = this.#denseRows();
  }

  /** The child of `state` on `byte`, or 0 when there is none. */
  #child(state: number, byte: number): number {
    let low = this.#edgeStart[state]!;
    let high = this.#edgeStart[state + 1]! - 1;
    while (low <= high) {
      const mid = (low + high) >>> 1;
      const found = this.#edgeLabel[mid]!;
      if (found === byte) return this.#edgeTarget[mid]!;
      if (found < byte) low = mid + 1;
      else high = mid - 1;
    }
    return 0;
  }

  /** `next * classCount`, negated when `next` ends a sequence. */
  #encode(next: number): number {
    return this.#output[next]! >= 0 ? -next * this.#classCount : next * this.#classCount;
  }

  #denseRows(): Int32Array {
    const classCount = this.#classCount;
    const step = new Int32Array(this.denseStates * classCount);
    // A row is its failure target's row (numbered lower: already done) with its own edges set.
    for (let s = 0; s < this.denseStates; s++) {
      const row = s * classCount;
      if (s !== 0) {
        const from = this.#fail[s]! * classCount;
        step.copyWithin(row, from, from + classCount);
      }
      for (let e = this.#edgeStart[s]!; e < this.#edgeStart[s + 1]!; e++) {
        step[row + this.#classOf[this.#edgeLabel[e]!]!] = this.#encode(this.#edgeTarget[e]!);
      }
    }
    return step;
  }

  /** The encoded transition from a state without a dense row. */
  #deepStep(state: number, byte: number): number {
    for (;;) {
      const next = this.#child(state, byte);
      if (next > 0) return this.#encode(next);
      state = this.#fail[state]!;
      if (state < this.denseStates) return this.#step[state * this.#classCount + this.#classOf[byte]!]!;
    }
  }

  /**
   * Runs the automaton over `input` from the root: every occurrence, and the state at the end.
   * `base64Before`: how many base64 characters came right before `input` (see {@link base64RunAt}).
   */
  scan(input: Buffer, base64Before = 0): ScanResult {
    const classOf = this.#classOf;
    const step = this.#step;
    const classCount = this.#classCount;
    const denseEnd = this.denseStates * classCount;
    const lineBreaks = this.lineBreaks;
    const length = input.length;
    let matches: number[] | undefined;
    let at = 0; // the state times classCount
    let pendingBreak = 0; // 0: none, 1: CR seen, 2: a whole line break seen
    let run = Math.min(MIN_WRAP_COLUMNS, base64Before); // base64 characters right before this byte
    for (let i = 0; i < length; i++) {
      const byte = input[i]!;
      if (lineBreaks) {
        if (byte === LF || byte === CR) {
          if (pendingBreak === 0 && run >= MIN_WRAP_COLUMNS) pendingBreak = byte === CR ? 1 : 2;
          else if (pendingBreak === 1 && byte === LF) pendingBreak = 2;
          else {
            // Not the end of a base64 line (or a second line break): no occurrence spans it.
            at = 0;
            pendingBreak = 0;
          }
          run = 0;
          continue;
        }
        pendingBreak = 0;
        run = BASE64_BYTE[byte] === 0 ? 0 : run + 1;
      }
      at = at < denseEnd ? step[at + classOf[byte]!]! : this.#deepStep(at / classCount, byte);
      if (at < 0) {
        at = -at;
        matches ??= [];
        this.#report(matches, input, i, at / classCount);
      }
    }
    return { matches, endState: at / classCount };
  }

  /** Adds every sequence ending at `input[last]` in `state` as a (start, length) pair. */
  #report(matches: number[], input: Buffer, last: number, state: number): void {
    // The root ends none, so the chain stops at -1.
    for (let s = this.#output[state]!; s >= 0; s = this.#output[this.#fail[s]!]!) {
      const start = this.#startOf(input, last, this.#ends[s]!);
      matches.push(start, last + 1 - start);
    }
  }

  /** Where a sequence of `bytes` ending at `input[last]` starts, line breaks skipped included. */
  #startOf(input: Buffer, last: number, bytes: number): number {
    if (!this.lineBreaks) return last + 1 - bytes;
    let position = last + 1;
    for (let left = bytes; left > 0; ) {
      const byte = input[--position]!;
      if (byte !== LF && byte !== CR) left--;
    }
    return position;
  }

  /**
   * Where the undecided tail of `input` starts: the longest suffix, starting at `after` or
   * later, that is a proper prefix of some sequence (and so may still become one). `endState`
   * is the state `scan(input)` ended in. `input.length` when there is none.
   */
  undecidedStart(endState: number, input: Buffer, after: number): number {
    const length = input.length;
    for (let s = endState; s !== 0; s = this.#fail[s]!) {
      if (this.#edgeStart[s + 1] === this.#edgeStart[s]) continue; // ends a sequence, cannot grow
      const start = this.#startOf(input, length - 1, this.#depth[s]!);
      if (start >= after) return start;
    }
    return length;
  }
}

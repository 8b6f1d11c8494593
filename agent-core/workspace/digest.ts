import { createHash, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";

/** What a transfer's receiver checks at the end: the stream's length and SHA-256. */
export interface StreamDigest {
  bytes: number;
  /** Lower-case hex SHA-256 of every byte of the stream. */
  sha256: string;
}

/** Counts and hashes the bytes of a stream as they go by; `digest()` once it ended. */
export class Digester {
  readonly #hash: Hash = createHash("sha256");
  #bytes = 0;
  #sha256: string | undefined;
  #allZero = true;

  update(chunk: Buffer): void {
    this.#hash.update(chunk);
    this.#bytes += chunk.length;
    if (this.#allZero && chunk.some((byte) => byte !== 0)) this.#allZero = false;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** True while every byte seen so far was zero (a tar stream of only end-of-archive blocks). */
  get allZero(): boolean {
    return this.#allZero;
  }

  /** The digest of everything seen; the hash is final after the first call. */
  digest(): StreamDigest {
    this.#sha256 ??= this.#hash.digest("hex");
    return { bytes: this.#bytes, sha256: this.#sha256 };
  }
}

/**
 * A pass-through that counts the bytes going by and hashes them (SHA-256), without holding any:
 * put it in a pipeline to learn a stream's digest once it ends. `digest` is final after `flush`.
 */
export class DigestStream extends Transform {
  readonly #digester = new Digester();
  #ended = false;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#digester.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.#ended = true;
    callback();
  }

  get bytes(): number {
    return this.#digester.bytes;
  }

  /** The digest of the whole stream; throws when read before the stream ended. */
  get digest(): StreamDigest {
    if (!this.#ended) throw new Error("the stream has not ended: no digest yet");
    return this.#digester.digest();
  }
}

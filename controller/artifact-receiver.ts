import { createHash, type Hash } from "node:crypto";
import {
  closeSync,
  existsSync,
  ftruncateSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { type ArtifactsEnd, CloseCode, ProtocolError } from "../agent-core/index.ts";
import { storeWriteError } from "./errors.ts";

/** What the controller keeps of a job's artifacts (in the job record). */
export type ArtifactsRecord =
  | ({ status: "stored" } & ArtifactsListing & { bytes: number; sha256: string })
  | ({ status: "failed" } & ArtifactsListing & { code: string; message: string; entry: string | null });

/** The code of artifacts refused for being over the store's cap. */
export const ARTIFACTS_TOO_LARGE = "CONTROLLER_ERR_ARTIFACTS_TOO_LARGE";

type ArtifactsListing = Pick<ArtifactsEnd, "entries" | "skipped" | "skippedCount" | "unmatched">;

/**
 * Receives one job's artifact stream (`artifact` frames, then `artifacts-end`) into
 * `<path>.part`, written synchronously before the frame's message is acknowledged, and checks it
 * at the end: contiguous from offset 0, of the announced length and SHA-256. A checked stream is
 * renamed to `path`; anything else is removed and recorded as failed with the reason. Past
 * `maxBytes` the rest of the stream is dropped (still acknowledged, so the agent is never
 * stalled) and the artifacts are refused at the end.
 */
export class ArtifactReceiver {
  readonly #path: string;
  readonly #maxBytes: number;
  #fd: number | undefined;
  #received: number;
  /** Hash of the bytes written, while it can be kept incrementally (not after a reopen). */
  #hash: Hash | undefined;
  #overLimit = false;

  private constructor(path: string, maxBytes: number, received: number, hash: Hash | undefined) {
    this.#path = path;
    this.#maxBytes = maxBytes;
    this.#received = received;
    this.#hash = hash;
  }

  /** Starts a new stream (any earlier partial file at `path` is dropped). */
  static create(path: string, maxBytes: number): ArtifactReceiver {
    rmSync(`${path}.part`, { force: true });
    return new ArtifactReceiver(path, maxBytes, 0, createHash("sha256"));
  }

  /**
   * Continues a stream after a restart of the controller, from what the job's journal committed:
   * `receivedBytes` arrived in order (the next frame's offset), of which the first `storedBytes`
   * were written (the rest was past `maxBytes`). Bytes written after the last committed frame are
   * cut off, and a stream whose end was being kept when the controller died (renamed to `path`
   * before its `artifacts-end` was journaled) is taken back, so the agent's resend of that end
   * checks it again. A file shorter than what was committed (the machine lost power: writes are
   * not flushed to disk per frame) fails the artifacts' check at their end.
   */
  static reopen(
    path: string,
    maxBytes: number,
    committed: { receivedBytes: number; storedBytes: number },
  ): ArtifactReceiver {
    const part = `${path}.part`;
    if (!existsSync(part) && existsSync(path)) renameSync(path, part);
    if (existsSync(part) && statSync(part).size > committed.storedBytes) {
      const fd = openSync(part, "r+");
      try {
        ftruncateSync(fd, committed.storedBytes);
      } finally {
        closeSync(fd);
      }
    }
    const receiver = new ArtifactReceiver(
      path,
      maxBytes,
      committed.receivedBytes,
      committed.receivedBytes === 0 ? createHash("sha256") : undefined,
    );
    receiver.#overLimit =
      committed.receivedBytes > committed.storedBytes || committed.receivedBytes > maxBytes;
    return receiver;
  }

  /** Bytes received in order so far. */
  get receivedBytes(): number {
    return this.#received;
  }

  /** Whether the stream went past `maxBytes`: what came after is dropped and the artifacts refused. */
  get overLimit(): boolean {
    return this.#overLimit;
  }

  /**
   * Writes one frame; returns whether its bytes were kept (false past `maxBytes`, or for a
   * duplicate). A frame entirely before what was received is a duplicate and dropped; one that
   * leaves a gap or overlaps is a ProtocolError (4003).
   */
  write(offset: number, data: Buffer): boolean {
    if (offset < this.#received && offset + data.length <= this.#received) return false;
    if (offset !== this.#received) {
      throw new ProtocolError(
        CloseCode.outOfOrder,
        `artifact bytes from offset ${offset}, but ${this.#received} bytes were received`,
      );
    }
    if (this.#overLimit || this.#received + data.length > this.#maxBytes) {
      this.#received += data.length;
      this.#overLimit = true;
      return false;
    }
    try {
      this.#fd ??= openSync(`${this.#path}.part`, "a", 0o600);
      let written = 0;
      while (written < data.length) written += writeSync(this.#fd, data, written, data.length - written);
    } catch (error) {
      this.#cutBack(this.#received);
      throw storeWriteError("artifact bytes", error);
    }
    this.#received += data.length;
    this.#hash?.update(data);
    return true;
  }

  /**
   * Takes back the last `write` (its journal line could not be stored): the partial file is cut
   * back to `receivedBytes`, and the digest is read from the file at the end.
   */
  unwrite(receivedBytes: number, overLimit: boolean): void {
    if (receivedBytes === this.#received) return;
    this.#cutBack(receivedBytes);
    this.#received = receivedBytes;
    this.#overLimit = overLimit;
    this.#hash = undefined;
  }

  /** Takes back an `end` that kept the artifacts (its journal line could not be stored). */
  unend(): void {
    if (this.#received > 0 && existsSync(this.#path)) renameSync(this.#path, `${this.#path}.part`);
    this.#hash = undefined;
  }

  #cutBack(bytes: number): void {
    try {
      if (this.#fd !== undefined) ftruncateSync(this.#fd, bytes);
    } catch {
      // Cut at the next reopen: the journal says how much was committed.
    }
  }

  /**
   * The end of the stream: checks it and keeps it (renamed to `path`), or says why not; the
   * caller discards a failed stream (`discard`) once the result is journaled.
   */
  end(end: Omit<ArtifactsEnd, "v" | "type" | "seq" | "jobId">): ArtifactsRecord {
    this.#close();
    const listing: ArtifactsListing = {
      entries: end.entries,
      skipped: end.skipped,
      skippedCount: end.skippedCount,
      unmatched: end.unmatched,
    };
    const fail = (code: string, message: string, entry: string | null = null): ArtifactsRecord => ({
      status: "failed",
      ...listing,
      code,
      message,
      entry,
    });
    if (end.error !== undefined) return fail(end.error.code, end.error.message, end.error.entry);
    if (this.#overLimit) {
      return fail(
        ARTIFACTS_TOO_LARGE,
        `the artifacts (${this.#received} bytes) are over the store's cap of ${this.#maxBytes} bytes (maxArtifactBytes)`,
      );
    }
    if (end.bytes !== this.#received) {
      return fail(
        "AGENT_ERR_ARCHIVE_CHECKSUM",
        `artifacts-end says ${end.bytes} bytes, ${this.#received} arrived`,
      );
    }
    const sha256 = this.#received === 0 ? createHash("sha256").digest("hex") : this.#digest();
    if (sha256 !== end.sha256) {
      return fail(
        "AGENT_ERR_ARCHIVE_CHECKSUM",
        `the artifacts received hash to ${sha256}, the agent sent ${end.sha256}`,
      );
    }
    if (this.#received > 0) renameSync(`${this.#path}.part`, this.#path);
    return { status: "stored", ...listing, bytes: this.#received, sha256 };
  }

  /** Drops the partial stream (the job ended without `artifacts-end`, or it failed). */
  discard(): void {
    this.#close();
    rmSync(`${this.#path}.part`, { force: true });
  }

  /** The hash kept while writing; after a reopen, the partial file's, read in 1 MiB blocks. */
  #digest(): string {
    if (this.#hash !== undefined) {
      const sha256 = this.#hash.digest("hex");
      // A second check (its result could not be journaled the first time) reads the file.
      this.#hash = undefined;
      return sha256;
    }
    const hash = createHash("sha256");
    const fd = openSync(`${this.#path}.part`, "r");
    try {
      const block = Buffer.allocUnsafe(1_048_576);
      for (let read = readSync(fd, block); read > 0; read = readSync(fd, block))
        hash.update(block.subarray(0, read));
    } finally {
      closeSync(fd);
    }
    return hash.digest("hex");
  }

  #close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}

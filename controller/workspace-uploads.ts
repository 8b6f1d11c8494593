import { randomBytes } from "node:crypto";
import {
  createReadStream,
  createWriteStream,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { ArchiveError, Digester, extractArchive, type StreamDigest } from "../agent-core/index.ts";
import { ControllerApiError, storeWriteError } from "./errors.ts";

/** A workspace archive uploaded to seed jobs: checked, stored, and waiting for a job to take it. */
export interface WorkspaceUpload extends StreamDigest {
  id: string;
  /** Entries and the sum of file sizes, as the agent will extract them. */
  entries: number;
  contentBytes: number;
}

export interface UploadLimits {
  /** Largest archive accepted, in bytes as uploaded (compressed, if it is). */
  maxBytes: number;
  /** Most entries an archive may hold (the agents' limit). */
  maxEntries: number;
}

const ID = /^[0-9a-f]{24}$/;

/**
 * Uploaded workspace archives under `<dir>/<id>.tar`, with `<id>.json` beside each. An upload is
 * streamed to disk (never held in memory), hashed as it goes, and checked with the agent's own
 * extraction rules in a dry run before it is accepted, so an archive an agent would refuse is
 * refused at once, with the same code and the entry to blame. A job takes an upload over (it
 * moves into the job's files); `prune` removes the uploads no job took.
 */
export class UploadStore {
  readonly #dir: string;
  readonly #limits: UploadLimits;

  constructor(dir: string, limits: UploadLimits) {
    this.#dir = dir;
    this.#limits = limits;
    mkdirSync(dir, { recursive: true });
  }

  /**
   * Stores one upload. Throws ControllerApiError 413 (CONTROLLER_ERR_TOO_LARGE) past `maxBytes`,
   * 400 (CONTROLLER_ERR_BAD_ARCHIVE, naming the agent's refusal code and entry) for an archive
   * an agent would refuse.
   */
  async receive(body: AsyncIterable<Uint8Array>): Promise<WorkspaceUpload> {
    const id = randomBytes(12).toString("hex");
    const part = join(this.#dir, `${id}.part`);
    const digester = new Digester();
    const { maxBytes, maxEntries } = this.#limits;
    const file = createWriteStream(part, { mode: 0o600 });
    try {
      await pipeline(
        body,
        new Transform({
          transform(chunk: Buffer, _encoding, callback) {
            digester.update(chunk);
            if (digester.bytes <= maxBytes) callback(null, chunk);
            else {
              callback(
                new ControllerApiError(
                  413,
                  "CONTROLLER_ERR_TOO_LARGE",
                  `the archive is larger than the limit of ${maxBytes} bytes`,
                ),
              );
            }
          },
        }),
        file,
      );
      // The agent's rules, without writing anything: a bad archive is refused now, not on an agent.
      const summary = await extractArchive(createReadStream(part), {
        dir: this.#dir,
        maxBytes: Number.MAX_SAFE_INTEGER,
        maxEntries,
        dryRun: true,
      });
      const upload: WorkspaceUpload = {
        id,
        ...digester.digest(),
        entries: summary.entries,
        contentBytes: summary.contentBytes,
      };
      renameSync(part, join(this.#dir, `${id}.tar`));
      writeFileSync(join(this.#dir, `${id}.json`), `${JSON.stringify(upload)}\n`);
      return upload;
    } catch (error) {
      // pipeline rejects at the first error, possibly before the file's open(2) is done: the file
      // must be closed (so created, if it ever will be) before it is removed, or it is left behind.
      if (!file.closed) await new Promise<void>((resolve) => file.destroy().once("close", () => resolve()));
      for (const name of [`${id}.part`, `${id}.tar`, `${id}.json`])
        rmSync(join(this.#dir, name), { force: true });
      if (error instanceof ArchiveError) {
        throw new ControllerApiError(
          400,
          "CONTROLLER_ERR_BAD_ARCHIVE",
          `the workspace archive would be refused by agents (${error.code}${error.entry !== null ? `, entry ${JSON.stringify(error.entry)}` : ""}): ${error.message}`,
        );
      }
      if (error instanceof ControllerApiError || (error as NodeJS.ErrnoException).code === undefined)
        throw error;
      throw storeWriteError("the workspace upload", error);
    }
  }

  /** An upload by id, or undefined. */
  get(id: string): WorkspaceUpload | undefined {
    if (!ID.test(id)) return undefined;
    try {
      return JSON.parse(readFileSync(join(this.#dir, `${id}.json`), "utf8")) as WorkspaceUpload;
    } catch {
      return undefined;
    }
  }

  /**
   * Hands an upload's archive to a job: `take` moves it to the job's files (404 when there is no
   * such upload), `giveBack` moves it back when the job could not be stored. The upload is
   * forgotten (`forget`) once the job is stored.
   */
  seedFor(id: string): { take(dest: string): void; giveBack(from: string): void } {
    const archive = join(this.#dir, `${id}.tar`);
    return {
      take: (dest) => {
        if (this.get(id) === undefined) {
          throw new ControllerApiError(
            404,
            "CONTROLLER_ERR_NOT_FOUND",
            `no workspace upload ${JSON.stringify(id)} (uploads are kept until a job takes them)`,
          );
        }
        renameSync(archive, dest);
      },
      giveBack: (from) => renameSync(from, archive),
    };
  }

  /** Drops what is left of an upload a job took (its description). */
  forget(id: string): void {
    rmSync(join(this.#dir, `${id}.json`), { force: true });
  }

  /** Removes uploads (and partial ones) older than `maxAgeMs`. */
  prune(maxAgeMs: number, now = Date.now()): void {
    for (const name of readdirSync(this.#dir)) {
      const path = join(this.#dir, name);
      if (now - statSync(path).mtimeMs > maxAgeMs) rmSync(path, { force: true });
    }
  }
}

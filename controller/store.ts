import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { type Job, jobSchema, type Logger } from "../agent-core/index.ts";
import { ControllerApiError, storeWriteError } from "./errors.ts";
import { JobFiles, type StoredEvent } from "./job-files.ts";
import { type JobRecord, TERMINAL_STATUSES } from "./job-record.ts";

/** A job as found in the store when the controller starts. */
export interface StoredJob {
  record: JobRecord;
  files: JobFiles;
  /** The journal, in order (empty for a job that had ended). */
  events: StoredEvent[];
  /** The job as sent to agents, secrets included; undefined for a job that had ended. */
  job: Job | undefined;
}

const SEALED_JOB = "job.sealed";
/** The archive that seeds a job's workspace, kept until the job ends (every attempt pulls it). */
export const SEED_FILE = "workspace.tar";
/** A job's artifacts once checked (`.part` while they arrive). */
export const ARTIFACTS_FILE = "artifacts.tar";
/** An archive a new job takes over as its seed (an upload), given back if the job cannot be stored. */
export interface SeedSource {
  take(dest: string): void;
  giveBack(from: string): void;
}

const SEAL_INFO = "ephemeral-build-agent job secrets v1";

/**
 * The controller's durable state under `<dataDir>/jobs/<id>/`: the record, the journal and the
 * output (`JobFiles`), the submission as stored (`submission.json`, secrets as `***`), and, while
 * the job has not ended, the job as sent to agents sealed with AES-256-GCM under a key derived
 * from the controller key (`job.sealed`: its secrets must survive a restart of a queued job, and
 * are deleted when the job ends). A job with a seed keeps it as `workspace.tar` until it ends, so
 * that every attempt (a retry, a resume after a restart) pulls the same bytes; its artifacts are
 * `artifacts.tar` (see `JobRecorder`).
 *
 * Why files and not SQLite: docs/controller.md ("The store") has the measurements.
 */
export class JobStore {
  readonly #jobsDir: string;
  readonly #sealKey: Buffer;
  readonly #logger: Logger;

  constructor(dataDir: string, controllerKey: string, logger: Logger) {
    this.#jobsDir = join(dataDir, "jobs");
    mkdirSync(this.#jobsDir, { recursive: true });
    this.#sealKey = Buffer.from(hkdfSync("sha256", controllerKey, Buffer.alloc(0), SEAL_INFO, 32));
    this.#logger = logger;
  }

  /**
   * Stores a new job: its record, its submission as shown, the sealed job, and its seed when it
   * has one (`seed.take` moves the archive to the path it is given). Throws ControllerApiError
   * 507 `CONTROLLER_ERR_STORE` when they cannot be written (a full disk), having removed what it
   * wrote and given the seed back (`seed.giveBack`), so the submission can be made again.
   */
  create(record: JobRecord, job: Job, submission: unknown, seed?: SeedSource): JobFiles {
    const dir = join(this.#jobsDir, record.id);
    let files: JobFiles | undefined;
    let seedTaken = false;
    try {
      files = JobFiles.create(dir, (error) => this.#saveFailed(record.id, error));
      // The record last: a job whose record is missing or torn (the controller died while it was
      // submitted, before answering) is skipped at the next start.
      writeFileSync(join(dir, "submission.json"), `${JSON.stringify(submission, null, 2)}\n`);
      writeFileSync(join(dir, SEALED_JOB), this.#seal(JSON.stringify(job)), { mode: 0o600 });
      if (seed !== undefined) {
        seed.take(join(dir, SEED_FILE));
        seedTaken = true;
      }
      files.writeRecord(record);
      return files;
    } catch (error) {
      files?.close();
      if (seedTaken) seed?.giveBack(join(dir, SEED_FILE));
      rmSync(dir, { recursive: true, force: true });
      // A refusal (an upload that is not there) stays what it is; a failed write is 507.
      throw error instanceof ControllerApiError ? error : storeWriteError(`job ${record.id}`, error);
    }
  }

  /**
   * `length` bytes of a job's seed from `offset` (fewer at its end). Read from the file at each
   * pull: a seed is never held in memory whole.
   */
  readSeed(jobId: string, offset: number, length: number): Buffer {
    const data = Buffer.allocUnsafe(length);
    const fd = openSync(join(this.#jobsDir, jobId, SEED_FILE), "r");
    let read = 0;
    try {
      while (read < length) {
        const n = readSync(fd, data, read, length - read, offset + read);
        if (n === 0) break;
        read += n;
      }
    } finally {
      closeSync(fd);
    }
    return data.subarray(0, read);
  }

  /** Deletes what a job no longer needs once it ended: its sealed secrets and its seed. */
  ended(jobId: string): void {
    rmSync(join(this.#jobsDir, jobId, SEALED_JOB), { force: true });
    rmSync(join(this.#jobsDir, jobId, SEED_FILE), { force: true });
  }

  /**
   * Every job in the store, oldest first. A job whose files cannot be read is skipped with a
   * warning (it is left on disk for a person to look at).
   */
  load(): StoredJob[] {
    const found: StoredJob[] = [];
    for (const id of readdirSync(this.#jobsDir)) {
      const dir = join(this.#jobsDir, id);
      try {
        const recordPath = join(dir, "job.json");
        if (!existsSync(recordPath)) continue;
        const record = JSON.parse(readFileSync(recordPath, "utf8")) as JobRecord;
        // Records written before attempts and retry policies were recorded.
        record.attempts ??= [];
        record.retry ??= { infrastructure: 0 };
        const ended = TERMINAL_STATUSES.has(record.status);
        const { files, events } = JobFiles.open(dir, {
          ended,
          onSaveError: (error) => this.#saveFailed(id, error),
        });
        const sealedPath = join(dir, SEALED_JOB);
        const job = ended || !existsSync(sealedPath) ? undefined : this.#unsealJob(readFileSync(sealedPath));
        found.push({ record, files, events: ended ? [] : events, job });
      } catch (error) {
        this.#logger.warn("a stored job cannot be read; skipped", { job: id, error });
      }
    }
    return found.sort(
      (a, b) =>
        a.record.submittedAt.localeCompare(b.record.submittedAt) || a.record.id.localeCompare(b.record.id),
    );
  }

  #saveFailed(jobId: string, error: unknown): void {
    this.#logger.warn(
      "a job's files could not be written; what the controller decided is kept in memory and written as soon as there is room",
      {
        job: jobId,
        error,
      },
    );
  }

  #seal(text: string): Buffer {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.#sealKey, iv);
    const body = Buffer.concat([cipher.update(text, "utf8"), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]);
  }

  #unsealJob(sealed: Buffer): Job {
    const decipher = createDecipheriv("aes-256-gcm", this.#sealKey, sealed.subarray(0, 12));
    decipher.setAuthTag(sealed.subarray(12, 28));
    const text = Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]).toString("utf8");
    return jobSchema.parse(JSON.parse(text));
  }
}

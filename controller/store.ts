import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Job, jobSchema, type Logger } from "../agent-core/index.ts";
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
const SEAL_INFO = "ephemeral-build-agent job secrets v1";

/**
 * The controller's durable state under `<dataDir>/jobs/<id>/`: the record, the journal and the
 * output (`JobFiles`), the submission as stored (`submission.json`, secrets as `***`), and, while
 * the job has not ended, the job as sent to agents sealed with AES-256-GCM under a key derived
 * from the controller key (`job.sealed`: its secrets must survive a restart of a queued job, and
 * are deleted when the job ends).
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

  /** Stores a new job: its record, its submission as shown, and the sealed job. */
  create(record: JobRecord, job: Job, submission: unknown): JobFiles {
    const files = JobFiles.create(join(this.#jobsDir, record.id), (error) =>
      this.#saveFailed(record.id, error),
    );
    // The record last: a job whose record is missing or torn (the controller died while it was
    // submitted, before answering) is skipped at the next start.
    writeFileSync(join(files.dir, "submission.json"), `${JSON.stringify(submission, null, 2)}\n`);
    writeFileSync(join(files.dir, SEALED_JOB), this.#seal(JSON.stringify(job)), { mode: 0o600 });
    files.saveRecord(record);
    return files;
  }

  /** Deletes what a job no longer needs once it ended (its sealed secrets). */
  ended(jobId: string): void {
    rmSync(join(this.#jobsDir, jobId, SEALED_JOB), { force: true });
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
    this.#logger.warn("a job's record could not be written; it is written again at its next change", {
      job: jobId,
      error,
    });
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

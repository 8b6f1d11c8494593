import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { WebSocket } from "ws";
import {
  CloseCode,
  deriveAgentSecret,
  type Hello,
  isResumableClose,
  type JobEnd,
  type Logger,
  silentLogger,
} from "../agent-core/index.ts";
import { AgentConnection, type AgentConnectionHandlers } from "./agent-connection.ts";
import {
  type ApiAccess,
  type ApiAuth,
  apiAccess,
  checkListenSecurity,
  sessionRoutes,
  type TokenGuessLimit,
} from "./auth.ts";
import { lockDataDir } from "./data-lock.ts";
import { Dispatcher } from "./dispatcher.ts";
import { ControllerApiError, dataDirError } from "./errors.ts";
import { type AgentInfo, type ControllerApi, createApiHandler, type Route } from "./http-api.ts";
import type { ReadEvent } from "./job-files.ts";
import {
  type AttemptCause,
  type AttemptRecord,
  type JobEvent,
  type JobRecord,
  type JobStatus,
  RETRYABLE_CAUSES,
} from "./job-record.ts";
import {
  attemptCauseOf,
  type Clock,
  type JobEnding,
  JobRecorder,
  type RecorderOptions,
} from "./job-recorder.ts";
import type { JobRun } from "./job-run.ts";
import { DEFAULT_PROTECTED_BRANCHES, type PreparedJob, prepareJob, resubmission } from "./job-spec.ts";
import type { LaunchTemplate, Provisioner } from "./provisioners/provisioner.ts";
import { Provisioning } from "./provisioning.ts";
import { ControllerServer, type TlsFiles } from "./server.ts";
import { JobStore, SEED_FILE } from "./store.ts";
import { AgentGate } from "./upgrade.ts";
import { UploadStore, type WorkspaceUpload } from "./workspace-uploads.ts";

export interface ControllerOptions {
  /** Where jobs' records and logs are stored. */
  dataDir: string;
  /** Interface to listen on; loopback unless told otherwise. */
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** HMAC key agents' secrets derive from; default: `<dataDir>/controller.key`, created on first start. */
  key?: string;
  /** Launch templates, tried in order: the first whose labels include all of a job's labels launches its agents. */
  templates?: readonly LaunchTemplate[];
  /** Shorthand for one template, `default`, that serves every job. */
  provisioner?: Provisioner;
  /**
   * The controller URL launched agents are given (default: the URL it listens on). Its name and
   * origin are the controller's own too: a loopback controller answers to it (see `allowedHosts`),
   * and its web pages may send changes.
   */
  agentUrl?: string;
  /**
   * Names a controller listening on loopback answers to besides loopback ones and `agentUrl`'s
   * (a reverse proxy's name that it passes on in `Host`). Other names get 403: a page that made
   * its own name resolve to 127.0.0.1 (DNS rebinding) could read and drive it otherwise.
   */
  allowedHosts?: readonly string[];
  /** Infrastructure retries of a job that does not set its own (`retry.infrastructure`). Default 2. */
  retry?: { infrastructure: number };
  /** Largest log stored per job; a job whose output reaches it is stopped and fails `log-limit`. Default 1 GiB. */
  maxLogBytes?: number;
  /** Largest artifact set stored per job; a job whose artifacts are larger fails `artifact-limit`. Default 10 GiB. */
  maxArtifactBytes?: number;
  /** Largest workspace archive accepted for upload, in bytes as uploaded. Default 10 GiB. */
  maxUploadBytes?: number;
  /** Most entries in an uploaded workspace archive (default 100,000, the agents' default). */
  maxArchiveEntries?: number;
  /** Branch patterns whose jobs' warm caches are `protected` (default `main`, `master`). */
  protectedBranches?: readonly string[];
  logger?: Logger;
  heartbeatIntervalMs?: number;
  helloTimeoutMs?: number;
  ackDelayMs?: number;
  /** Largest frame accepted from an agent. */
  maxPayloadBytes?: number;
  /** A launched agent that has not said hello by then is stopped and the attempt fails (a template may set its own). */
  connectTimeoutMs?: number;
  /** How long a job whose agent's connection dropped waits for it to resume before the attempt is lost. */
  resumeWindowMs?: number;
  /** Further HTTP routes served beside the API (pages, metrics). */
  routes?: readonly Route[];
  /** The controller's clock, for every time it records. */
  clock?: Clock;
  /**
   * The API token (at least 16 characters): every request but `/healthz`, the web view's pages
   * and `POST /login` must carry it (`Authorization: Bearer`, or the web view's session cookie).
   * Required to listen beyond loopback unless `insecure`. Agents authenticate with their HMAC
   * secrets, not with it.
   */
  apiToken?: string;
  /**
   * Wrong API tokens one client address may send (at `POST /login` or as a bearer token) before
   * it waits: default 10 within 5 minutes, then 429 for 5 minutes.
   */
  tokenGuessLimit?: TokenGuessLimit;
  /** Listen beyond loopback without a token (something else guards the port). */
  insecure?: boolean;
  /** Serve HTTPS and WSS with this certificate and key (PEM); agents verify it. */
  tls?: TlsFiles;
}

interface ResolvedOptions {
  heartbeatIntervalMs: number;
  helloTimeoutMs: number;
  ackDelayMs: number;
  maxPayloadBytes: number;
  resumeWindowMs: number;
  retry: { infrastructure: number };
  maxLogBytes: number;
  maxArtifactBytes: number;
  protectedBranches: readonly string[];
}

export type { AgentInfo };

export const DEFAULT_MAX_LOG_BYTES = 1024 * 1024 * 1024;
export const DEFAULT_MAX_ARTIFACT_BYTES = 10 * 1024 ** 3;
export const DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 ** 3;

/** Uploads no job took are removed after this long. */
const UPLOAD_TTL_MS = 24 * 3_600_000;
export const DEFAULT_INFRASTRUCTURE_RETRIES = 2;

/** How a job ends when its last attempt ended with a platform cause and no retry is left. */
const FINAL_REASON: Partial<Record<AttemptCause, JobEnding["reason"]>> = {
  "launch-failed": "provision-failed",
  "stopped-before-connecting": "provision-failed",
  "never-connected": "provision-failed",
  "agent-lost": "agent-lost",
  interrupted: "interrupted",
  deadline: "deadline",
};

/**
 * The reference controller: accepts agents over protocol v1 (`AgentGate`), queues jobs and hands
 * each to an agent whose labels match (`Dispatcher`), launching one on the first template that
 * serves the job when none is idle (`Provisioning`), records what the agents report
 * (`JobRecorder`) in a store that survives restarts (`JobStore`), and serves the HTTP API
 * (`ControllerServer`). This class wires them and owns the job lifecycle: attempts, leases,
 * resumes, infrastructure retries and overflow.
 *
 * @example
 * const controller = await Controller.start({ dataDir, provisioner });
 * const job = controller.submit({ steps: [{ run: "echo hi" }] });
 * await controller.waitForJob(job.id);
 */
export class Controller implements ControllerApi {
  readonly #options: ResolvedOptions;
  readonly #key: string;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #store: JobStore;
  /** Gives the data directory back (`lockDataDir`). */
  #unlock: () => void = () => {};
  /** Workspace archives uploaded and not yet taken by a job. */
  readonly #uploads: UploadStore;
  /** Records of every job (ended ones too), by id. */
  readonly #records = new Map<string, JobRecorder>();
  /** Unfinished jobs, by id. */
  readonly #runs = new Map<string, JobRun>();
  /** Ended jobs as sent to agents (secrets included), for `retry`: in memory only. */
  readonly #endedJobs = new Map<string, JobRun["job"]>();
  /** Agent names whose job (attempt) ended -> that job's id. A spent name is refused. */
  readonly #spent = new Map<string, string>();
  readonly #dispatcher: Dispatcher;
  readonly #provisioning: Provisioning;
  readonly #gate: AgentGate;
  readonly #agentUrl: string | undefined;
  #server: ControllerServer | undefined;
  #stopping = false;

  private constructor(options: ControllerOptions) {
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.clock ?? (() => new Date());
    this.#options = {
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 15_000,
      helloTimeoutMs: options.helloTimeoutMs ?? 10_000,
      ackDelayMs: options.ackDelayMs ?? 5,
      maxPayloadBytes: options.maxPayloadBytes ?? 1_048_576,
      resumeWindowMs: options.resumeWindowMs ?? 90_000,
      retry: options.retry ?? { infrastructure: DEFAULT_INFRASTRUCTURE_RETRIES },
      maxLogBytes: options.maxLogBytes ?? DEFAULT_MAX_LOG_BYTES,
      maxArtifactBytes: options.maxArtifactBytes ?? DEFAULT_MAX_ARTIFACT_BYTES,
      protectedBranches: options.protectedBranches ?? DEFAULT_PROTECTED_BRANCHES,
    };
    this.#agentUrl = options.agentUrl;
    mkdirSync(options.dataDir, { recursive: true });
    this.#key = options.key ?? loadOrCreateKey(options.dataDir);
    this.#store = new JobStore(options.dataDir, this.#key, this.#logger);
    this.#uploads = new UploadStore(join(options.dataDir, "uploads"), {
      maxBytes: options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES,
      maxEntries: options.maxArchiveEntries ?? 100_000,
    });
    this.#uploads.prune(UPLOAD_TTL_MS);
    this.#dispatcher = new Dispatcher({
      assign: (run, agent) => this.#assign(run, agent),
      launch: (run) => {
        if (!this.#stopping) this.#provisioning.launch(run);
      },
    });
    const templates = [
      ...(options.templates ?? []),
      ...(options.provisioner ? [{ name: "default", provisioner: options.provisioner }] : []),
    ];
    this.#provisioning = new Provisioning(
      {
        templates,
        logger: this.#logger,
        connectTimeoutMs: options.connectTimeoutMs ?? 60_000,
        controllerUrl: () => this.#agentUrl ?? this.url,
        secretFor: (name) => this.secretFor(name),
      },
      this.#dispatcher,
      {
        failed: (run, cause, message) => this.#attemptEnded(run, cause, message),
        gone: (run, agentName, detail) => this.#agentGone(run, agentName, detail),
      },
    );
    const controller = this;
    this.#gate = new AgentGate({
      maxPayloadBytes: this.#options.maxPayloadBytes,
      logger: this.#logger,
      context: {
        key: this.#key,
        get stopping() {
          return controller.#stopping;
        },
        openSession: (name) => {
          const open = this.#dispatcher.agents.get(name);
          return open === undefined ? undefined : (open.job?.id ?? null);
        },
        spentBy: (name) => this.#spent.get(name),
      },
      accepted: (ws, name, resumeOnly) => this.#accepted(ws, name, resumeOnly),
    });
  }

  /**
   * Loads the store (jobs survive restarts), starts listening, and dispatches what waits. Throws
   * ControllerApiError `CONTROLLER_ERR_CONFIG` for a host beyond loopback without `apiToken`
   * (unless `insecure`), a short token, or a certificate that cannot be used,
   * `CONTROLLER_ERR_DATA_IN_USE` when another live controller holds `dataDir` (`lockDataDir`),
   * `CONTROLLER_ERR_STORE` when the data dir cannot be written (full, not writable, read-only),
   * and `CONTROLLER_ERR_LISTEN` when the address cannot be bound. `stop` gives `dataDir` back.
   */
  static async start(options: ControllerOptions): Promise<Controller> {
    const host = options.host ?? "127.0.0.1";
    checkListenSecurity(host, options.apiToken, options.insecure ?? false);
    const auth =
      options.apiToken === undefined
        ? undefined
        : { token: options.apiToken, secureCookie: options.tls !== undefined };
    const access = apiAccess({
      host,
      auth,
      publicUrl: options.agentUrl,
      allowedHosts: options.allowedHosts,
      tokenGuessLimit: options.tokenGuessLimit,
    });
    let unlock: () => void;
    try {
      mkdirSync(options.dataDir, { recursive: true });
      unlock = lockDataDir(options.dataDir);
    } catch (error) {
      throw dataDirError(options.dataDir, error);
    }
    try {
      return await Controller.#startLocked(options, host, auth, access, unlock);
    } catch (error) {
      unlock();
      throw error;
    }
  }

  static async #startLocked(
    options: ControllerOptions,
    host: string,
    auth: ApiAuth | undefined,
    access: ApiAccess,
    unlock: () => void,
  ): Promise<Controller> {
    let controller: Controller;
    try {
      controller = new Controller(options);
      controller.#unlock = unlock;
      controller.#recover();
    } catch (error) {
      throw dataDirError(options.dataDir, error);
    }
    controller.#server = await ControllerServer.listen({
      host,
      port: options.port ?? 0,
      api: createApiHandler(
        controller,
        [...(auth && access.guesses ? sessionRoutes(auth, access.guesses) : []), ...(options.routes ?? [])],
        access,
      ),
      gate: controller.#gate,
      ...(options.tls ? { tls: options.tls } : {}),
    });
    controller.#logger.info("controller listening", { url: controller.url, jobs: controller.#runs.size });
    controller.#dispatcher.dispatch();
    return controller;
  }

  /** The URL agents and API clients use, e.g. `http://127.0.0.1:41234/`. */
  get url(): string {
    return this.#server?.url ?? "";
  }

  /** The secret an agent with this name must present. */
  secretFor(agentName: string): string {
    return deriveAgentSecret(this.#key, agentName);
  }

  /** Queues a job; throws ControllerApiError (400) when the submission is invalid. */
  submit(input: unknown): JobRecord {
    return this.#submit(input, undefined);
  }

  /**
   * Queues the ended job `id` again as a new job whose record says `retryOf: id`, with the same
   * steps, labels, env and secrets. Throws ControllerApiError 404 for an unknown job, 409 while it
   * has not ended, or when its secrets are no longer held (they are kept in memory only, so not
   * across a restart of the controller).
   */
  retry(id: string): JobRecord {
    const recorder = this.#recorder(id);
    if (!recorder.ended)
      throw new ControllerApiError(
        409,
        "CONTROLLER_ERR_CONFLICT",
        `job ${id} is ${recorder.record.status}: it can be run again once it has ended`,
      );
    const stored = JSON.parse(
      readFileSync(join(recorder.files.dir, "submission.json"), "utf8"),
    ) as PreparedJob["stored"];
    const job = this.#endedJobs.get(id);
    if (job === undefined && Object.keys(stored.secrets ?? {}).length > 0)
      throw new ControllerApiError(
        409,
        "CONTROLLER_ERR_CONFLICT",
        `job ${id} had secrets, which are not kept across a restart of the controller: submit it again`,
      );
    if (recorder.record.workspace !== undefined)
      throw new ControllerApiError(
        409,
        "CONTROLLER_ERR_CONFLICT",
        `job ${id} was seeded with a workspace archive, which is not kept once a job ends: submit it again with its workspace`,
      );
    return this.#submit(job === undefined ? stored : resubmission({ stored, job } as PreparedJob), id);
  }

  #submit(input: unknown, retryOf: string | undefined): JobRecord {
    if (this.#stopping)
      throw new ControllerApiError(409, "CONTROLLER_ERR_CONFLICT", "the controller is shutting down");
    const id = newJobId();
    const prepared = prepareJob(input, id, { protectedBranches: this.#options.protectedBranches });
    const upload = this.#seedOf(prepared);
    if (upload !== undefined) prepared.job.workspace = { bytes: upload.bytes, sha256: upload.sha256 };
    const record: JobRecord = {
      id,
      ...(retryOf !== undefined ? { retryOf } : {}),
      ...(prepared.job.name !== undefined ? { name: prepared.job.name } : {}),
      labels: prepared.labels,
      status: "queued",
      retry: prepared.retry ?? this.#options.retry,
      attempts: [],
      submittedAt: this.#clock().toISOString(),
      logBytes: 0,
      ...(upload !== undefined
        ? { workspace: { bytes: upload.bytes, sha256: upload.sha256, entries: upload.entries } }
        : {}),
      ...(prepared.cacheTrust !== undefined ? { cacheTrust: prepared.cacheTrust } : {}),
      steps: prepared.job.steps.map((s) => ({
        id: s.id,
        ...(s.name !== undefined ? { name: s.name } : {}),
        status: "pending",
      })),
    };
    const files = this.#store.create(
      record,
      prepared.job,
      prepared.stored,
      upload === undefined ? undefined : this.#uploads.seedFor(upload.id),
    );
    if (upload !== undefined) this.#uploads.forget(upload.id);
    const run = this.#track(new JobRecorder(record, files, this.#recorderOptions()), prepared.job);
    this.#dispatcher.enqueue(run);
    run.recorder.setStatus("queued");
    this.#logger.info("job queued", { job: id, labels: record.labels });
    this.#dispatcher.dispatch();
    return record;
  }

  /** The upload a job names to seed its workspace; throws 400 when there is no such upload. */
  #seedOf(prepared: PreparedJob): WorkspaceUpload | undefined {
    if (prepared.workspaceUpload === undefined) return undefined;
    const upload = this.#uploads.get(prepared.workspaceUpload);
    if (upload === undefined) {
      throw new ControllerApiError(
        400,
        "CONTROLLER_ERR_INVALID_JOB",
        `invalid job: workspace.upload ${JSON.stringify(prepared.workspaceUpload)} is no upload of this controller (POST /api/v1/workspaces first; an upload is kept 24 h, until a job takes it)`,
      );
    }
    return upload;
  }

  getJob(id: string): JobRecord | undefined {
    return this.#records.get(id)?.record;
  }

  listJobs(): JobRecord[] {
    return [...this.#records.values()].map((recorder) => recorder.record);
  }

  listAgents(): AgentInfo[] {
    return [...this.#dispatcher.agents.values()].map((a) => ({
      name: a.name,
      state: a.state,
      labels: a.labels,
      ...(a.hello ? { runtime: a.hello.agent.runtime, version: a.hello.agent.version } : {}),
      ...(a.job ? { jobId: a.job.id } : {}),
    }));
  }

  /**
   * A job's events from the start (output with its bytes); with `follow`, live ones until the job
   * ends. Throws ControllerApiError 404 at once for an unknown job.
   */
  readEvents(id: string, options: { follow: boolean; signal?: AbortSignal }): AsyncIterable<ReadEvent> {
    return this.#recorder(id).files.read(options);
  }

  /**
   * Tells `watcher` synchronously of each event of the job stored from now on, until the returned
   * function is called or the job ends. For in-process observers that neither block nor buffer.
   */
  watchJob(id: string, watcher: (event: JobEvent, data?: Buffer) => void): () => void {
    return this.#recorder(id).files.watch(watcher);
  }

  /** Path of the job's raw output (every byte the steps wrote, in arrival order). */
  outputPath(id: string): string {
    return join(this.#recorder(id).files.dir, "output.log");
  }

  /** Stores an uploaded workspace archive, checked with the agents' rules (see UploadStore). */
  uploadWorkspace(body: AsyncIterable<Uint8Array>): Promise<WorkspaceUpload> {
    if (this.#stopping)
      throw new ControllerApiError(409, "CONTROLLER_ERR_CONFLICT", "the controller is shutting down");
    return this.#uploads.receive(body);
  }

  /** The job's stored artifacts; 404 when the job kept none (yet). */
  artifactsOf(id: string): { path: string; bytes: number; sha256: string } {
    const recorder = this.#recorder(id);
    const artifacts = recorder.record.artifacts;
    if (artifacts?.status !== "stored" || artifacts.bytes === 0 || !existsSync(recorder.artifactsPath)) {
      throw new ControllerApiError(
        404,
        "CONTROLLER_ERR_NOT_FOUND",
        `job ${id} has no artifacts${artifacts?.status === "failed" ? ` (${artifacts.code}: ${artifacts.message})` : ""}`,
      );
    }
    return { path: recorder.artifactsPath, bytes: artifacts.bytes, sha256: artifacts.sha256 };
  }

  /** Cancels a job: a queued one at once, a running one by asking its agent. */
  cancel(id: string, reason = "cancelled through the API"): JobRecord {
    const recorder = this.#recorder(id);
    const run = this.#runs.get(id);
    if (run === undefined) return recorder.record;
    run.cancelRequested = true;
    if (run.stream !== undefined) {
      // Its agent has the job: ask it (now, or when it resumes its session).
      run.agent?.cancel(reason);
    } else {
      this.#provisioning.release(run, reason);
      run.recorder.endAttempt("cancelled", reason);
      this.#finish(run, "cancelled", { reason: "cancelled", cause: "user", message: reason });
    }
    return recorder.record;
  }

  /** Resolves with the record once the job reaches a terminal status. */
  waitForJob(id: string): Promise<JobRecord> {
    return this.#recorder(id).waitForEnd();
  }

  /**
   * Stops the controller. By default jobs survive it: sessions close with 1001 (their agents keep
   * running their jobs and resume with the next start), launched agents are left running, and
   * every job's state is in the store. With `endJobs`, every unfinished job ends `error` /
   * `agent-lost` and launched agents are stopped (the demo, tests).
   */
  async stop(options: { endJobs?: boolean } = {}): Promise<void> {
    this.#stopping = true;
    for (const agent of this.#dispatcher.agents.values())
      agent.close(CloseCode.goingAway, "controller shutting down");
    for (const run of this.#runs.values()) {
      clearTimeout(run.lostTimer);
      if (run.launch) clearTimeout(run.launch.timer);
      if (!options.endJobs) continue;
      this.#provisioning.release(run, "the controller stops");
      run.recorder.endAttempt("agent-lost", "the controller shut down");
      this.#finish(run, "error", {
        reason: "agent-lost",
        cause: "platform",
        message: "the controller shut down",
      });
    }
    await Promise.all(
      this.#provisioning.provisioners().map((p) => p.close({ stopAgents: options.endJobs === true })),
    );
    this.#gate.close();
    await this.#server?.close();
    // Records written lazily are written now: the store is complete when stop resolves.
    for (const recorder of this.#records.values()) recorder.files.flush();
    this.#unlock();
  }

  #recorderOptions(): RecorderOptions {
    return {
      clock: this.#clock,
      maxLogBytes: this.#options.maxLogBytes,
      maxArtifactBytes: this.#options.maxArtifactBytes,
    };
  }

  #track(recorder: JobRecorder, job: JobRun["job"]): JobRun {
    const record = recorder.record;
    const run: JobRun = {
      id: record.id,
      recorder,
      job,
      labels: record.overflow ? [record.overflow.label] : [...record.labels],
      cancelRequested: false,
    };
    this.#records.set(record.id, recorder);
    this.#runs.set(record.id, run);
    return run;
  }

  /** Rebuilds the controller's state from the store after a start. */
  #recover(): void {
    for (const stored of this.#store.load()) {
      const recorder = new JobRecorder(stored.record, stored.files, this.#recorderOptions());
      const spendEnded = () => {
        for (const attempt of stored.record.attempts)
          if (attempt.cause !== undefined) this.#spent.set(attempt.agent, stored.record.id);
      };
      spendEnded();
      if (recorder.ended) {
        this.#records.set(stored.record.id, recorder);
        // What an ended job no longer needs, in case the controller died before removing it.
        this.#store.ended(stored.record.id);
        continue;
      }
      if (stored.job === undefined) {
        this.#records.set(stored.record.id, recorder);
        recorder.endAttempt("agent-lost", "its sealed job could not be read after a restart");
        recorder.finish("error", {
          reason: "agent-lost",
          cause: "platform",
          message: "the job could not be recovered after a restart (its sealed job is missing)",
        });
        this.#store.ended(stored.record.id);
        continue;
      }
      if (stored.job.workspace !== undefined && !existsSync(join(stored.files.dir, SEED_FILE))) {
        this.#records.set(stored.record.id, recorder);
        recorder.endAttempt("agent-lost", "its workspace seed could not be found after a restart");
        recorder.finish("error", {
          reason: "agent-lost",
          cause: "platform",
          message: `the job could not be recovered after a restart (its workspace seed ${SEED_FILE} is missing)`,
        });
        this.#store.ended(stored.record.id);
        continue;
      }
      const run = this.#track(recorder, stored.job);
      // The journal first: the record is written lazily and may not have the last attempt yet.
      const stream = recorder.recover(stored.events, stored.job);
      // Attempts the journal ended after the record was last written spend their names too.
      spendEnded();
      const attempt = recorder.currentAttempt;
      if (attempt === undefined) {
        this.#dispatcher.enqueue(run);
      } else if (stream !== undefined) {
        // The agent had the job: it keeps running it and resumes its session with this controller.
        run.stream = stream;
        this.#dispatcher.leases.set(attempt.agent, run.id);
        this.#awaitResume(run, attempt.agent, "the controller restarted");
      } else {
        this.#dispatcher.enqueue(run);
        this.#provisioning.adopt(run);
      }
      this.#logger.info("job recovered", {
        job: run.id,
        status: recorder.record.status,
        attempt: attempt?.n,
        fromSeq: stream?.lastSeq,
      });
    }
  }

  #recorder(id: string): JobRecorder {
    const recorder = this.#records.get(id);
    if (!recorder)
      throw new ControllerApiError(404, "CONTROLLER_ERR_NOT_FOUND", `no job ${JSON.stringify(id)}`);
    return recorder;
  }

  #accepted(ws: WebSocket, agentName: string, resumeOnly: string | undefined): void {
    const stale = this.#dispatcher.agents.get(agentName);
    if (stale !== undefined) {
      // The agent reconnects to resume its job before this side noticed the old connection die.
      stale.superseded = true;
      stale.terminate();
    }
    const connection = new AgentConnection(
      ws,
      agentName,
      this.#handlers,
      this.#logger.child({ agent: agentName }),
      this.#options,
    );
    connection.resumeOnly = resumeOnly;
    this.#dispatcher.agents.set(agentName, connection);
    this.#logger.info("agent connected", { agent: agentName });
  }

  readonly #handlers: AgentConnectionHandlers = {
    hello: (agent, hello) => this.#onHello(agent, hello),
    stepStart: (agent, message) => this.#runOf(agent)?.recorder.stepStart(message),
    output: (agent, frame) => {
      const run = this.#runOf(agent);
      if (run?.recorder.output(frame)) this.#logCapReached(run);
    },
    stepEnd: (agent, message) => this.#runOf(agent)?.recorder.stepEnd(message),
    workspacePull: (agent, message) => {
      const run = this.#runOf(agent);
      if (run === undefined) {
        // A session whose attempt is over (its name spent) gets nothing of the seed.
        agent.close(CloseCode.outOfOrder, `agent ${agent.name}'s attempt at job ${message.jobId} is over`);
        return;
      }
      const seed = run.job.workspace!;
      const length = Math.min(message.length, seed.bytes - message.offset);
      agent.sendWorkspace(message.offset, this.#store.readSeed(run.id, message.offset, length));
    },
    artifact: (agent, frame) => {
      const run = this.#runOf(agent);
      if (run?.recorder.artifact(frame)) {
        this.#logger.warn("job's artifacts went past their cap; the rest is dropped", {
          job: run.id,
          maxArtifactBytes: run.recorder.maxArtifactBytes,
        });
      }
    },
    artifactsEnd: (agent, message) => {
      const run = this.#runOf(agent);
      if (run === undefined) return;
      const result = run.recorder.artifactsEnd(message);
      this.#logger.info(result.status === "stored" ? "artifacts stored" : "artifacts refused", {
        job: run.id,
        ...(result.status === "stored"
          ? { bytes: result.bytes, entries: result.entries }
          : { code: result.code }),
      });
    },
    jobEnd: (agent, message) => {
      const run = this.#runOf(agent);
      if (run) this.#onJobEnd(run, message);
    },
    closed: (agent, code, reason) => this.#onAgentClosed(agent, code, reason),
  };

  #runOf(agent: AgentConnection): JobRun | undefined {
    const run = this.#runs.get(agent.job!.id);
    return run?.agent === agent ? run : undefined;
  }

  #onHello(agent: AgentConnection, hello: Hello): void {
    if (hello.resume !== undefined) {
      this.#resume(agent, hello.resume.jobId);
      return;
    }
    if (agent.resumeOnly !== undefined) {
      agent.close(
        CloseCode.outOfOrder,
        `agent name ${agent.name} is spent (its job ${agent.resumeOnly} ended): only a resume of that job is accepted`,
      );
      return;
    }
    this.#logger.info("agent ready", {
      agent: agent.name,
      runtime: hello.agent.runtime,
      labels: hello.agent.labels,
    });
    const leasedJob = this.#dispatcher.leases.get(agent.name);
    const leasedRun = leasedJob === undefined ? undefined : this.#runs.get(leasedJob);
    if (leasedRun) {
      this.#provisioning.connected(leasedRun, agent.name);
      const now = leasedRun.recorder.now();
      leasedRun.recorder.record.connectedAt ??= now;
      leasedRun.recorder.noteAttempt({ connectedAt: now });
    }
    this.#dispatcher.dispatch();
    if (agent.state === "idle" && leasedJob !== undefined) {
      // Launched for a job that no longer needs it: an ephemeral agent is released, not parked.
      this.#dispatcher.leases.delete(agent.name);
      agent.close(CloseCode.normal, "no job for this agent");
    }
  }

  /** A reconnected agent continues its job's stream from the last message stored. */
  #resume(agent: AgentConnection, jobId: string): void {
    const run = this.#runs.get(jobId);
    const attempt = run?.recorder.currentAttempt;
    const ended = this.#records.get(jobId);
    const reported = ended?.record.attempts.find((a) => a.agent === agent.name && a.jobEndSeq !== undefined);
    if (reported?.jobEndSeq !== undefined) {
      // Its job-end was stored but the ack was lost (the job ended, or this attempt did and the
      // job was retried): the agent learns that its result is stored.
      this.#logger.info("agent resumed an attempt that already ended; confirming its end", {
        agent: agent.name,
        job: jobId,
      });
      agent.confirmEnded(jobId, reported.jobEndSeq);
      return;
    }
    const refusal =
      ended === undefined
        ? "no such job"
        : run === undefined
          ? `the job already ended (${ended.record.status})`
          : attempt?.agent !== agent.name || run.stream === undefined
            ? "the job runs on another agent"
            : undefined;
    if (refusal !== undefined || run === undefined || run.stream === undefined) {
      this.#logger.warn("resume refused", { agent: agent.name, job: jobId, reason: refusal });
      agent.close(CloseCode.resumeRefused, `cannot resume job ${jobId}: ${refusal}`);
      return;
    }
    clearTimeout(run.lostTimer);
    delete run.lostTimer;
    agent.adopt(run.stream);
    run.agent = agent;
    const record = run.recorder.record;
    record.reconnects = (record.reconnects ?? 0) + 1;
    run.recorder.files.saveRecordSoon(record);
    this.#logger.info("agent resumed its job", {
      agent: agent.name,
      job: jobId,
      fromSeq: run.stream.lastSeq,
    });
    if (run.cancelRequested) agent.cancel("cancelled while the agent was disconnected");
  }

  #assign(run: JobRun, agent: AgentConnection): void {
    const hello = agent.hello!;
    if (run.launch?.agentName !== agent.name) {
      // An agent that was already connected takes the job: the one launched for it is not needed.
      const launched = run.launch?.agentName;
      if (launched !== undefined) {
        this.#provisioning.release(run, "another agent took the job");
        run.recorder.endAttempt("released", `agent ${agent.name} took the job first`);
        this.#spend(launched, run.id);
      }
      run.recorder.beginAttempt({
        agent: agent.name,
        platform: hello.agent.runtime,
        labels: [...run.labels],
        connectedAt: run.recorder.now(),
      });
    } else {
      delete run.launch;
    }
    this.#dispatcher.leases.set(agent.name, run.id);
    run.agent = agent;
    const record = run.recorder.record;
    record.agent = {
      name: agent.name,
      runtime: hello.agent.runtime,
      version: hello.agent.version,
      labels: hello.agent.labels,
      ...(hello.logs ? { logs: hello.logs } : {}),
    };
    record.assignedAt = run.recorder.now();
    run.recorder.noteAttempt({ assignedAt: record.assignedAt });
    agent.assign(run.job);
    run.stream = agent.stream;
    // Its journal line tells a restart that this agent has the job (it will resume it).
    run.recorder.setStatus("assigned", agent.name, record.agent.logs);
    this.#logger.info("job assigned", { job: run.id, agent: agent.name });
  }

  #onJobEnd(run: JobRun, message: JobEnd): void {
    run.recorder.noteAttempt({ jobEndSeq: message.seq });
    const { status, ending } = run.recorder.jobEnd(message, run.cancelRequested);
    const cause = attemptCauseOf(message, run.cancelRequested);
    if (run.recorder.artifactsOverCap && (status === "succeeded" || RETRYABLE_CAUSES.has(cause))) {
      this.#capReached(
        run,
        "artifact-limit",
        `the job's artifacts were over the store's cap of ${run.recorder.maxArtifactBytes} bytes (maxArtifactBytes): they were dropped and the job failed`,
        message.durationMs,
      );
      return;
    }
    const refused = run.recorder.record.artifacts;
    if (status === "succeeded" && refused?.status === "failed") {
      // The agent sent them whole, but the controller could not keep them (length or digest).
      const text = `the artifacts were refused by the controller (${refused.code}): ${refused.message}`;
      run.recorder.endAttempt("user", text);
      this.#finish(run, "failed", { reason: "error", cause: "user", message: text });
      return;
    }
    if (run.recorder.logCapped && status !== "succeeded") {
      this.#capReached(
        run,
        "log-limit",
        `the job's log reached the store's cap of ${run.recorder.maxLogBytes} bytes (maxLogBytes): the output after it was dropped and the job stopped`,
        message.durationMs,
      );
      return;
    }
    if (RETRYABLE_CAUSES.has(cause)) {
      this.#attemptEnded(run, cause, ending.message ?? `the agent ended the job: ${message.reason}`, {
        status,
        ending,
      });
      return;
    }
    run.recorder.endAttempt(cause, ending.message);
    this.#finish(run, status, ending);
  }

  /** Ends the job `failed` because what it stored reached a cap of the store (never retried). */
  #capReached(
    run: JobRun,
    reason: "log-limit" | "artifact-limit",
    message: string,
    durationMs: number,
  ): void {
    run.recorder.endAttempt(reason, message);
    this.#finish(run, "failed", { reason, cause: "user", message, durationMs });
  }

  #logCapReached(run: JobRun): void {
    this.#logger.warn("job's log reached its cap; stopping the job", {
      job: run.id,
      maxLogBytes: run.recorder.maxLogBytes,
    });
    run.agent?.cancel(`the job's log reached the cap of ${run.recorder.maxLogBytes} bytes`);
  }

  #onAgentClosed(agent: AgentConnection, code: number, reason: string): void {
    const agents = this.#dispatcher.agents;
    if (agents.get(agent.name) === agent) agents.delete(agent.name);
    this.#logger.info("agent disconnected", {
      agent: agent.name,
      code,
      reason,
      superseded: agent.superseded,
    });
    if (agent.job === undefined) {
      this.#leasedAgentLeft(agent, code, reason);
      return;
    }
    const run = this.#runs.get(agent.job.id);
    if (agent.superseded || run === undefined || run.agent !== agent) return;
    delete run.agent;
    const closeText = `close code ${code}${reason ? `: ${reason}` : ""}`;
    if (run.agentGone !== undefined && !this.#stopping) {
      this.#attemptEnded(run, "agent-lost", `agent ${agent.name} is gone (${closeText}): ${run.agentGone}`);
      return;
    }
    if (isResumableClose(code) && !this.#stopping) {
      // The connection dropped mid-job: the agent keeps running it and resumes within the window.
      this.#awaitResume(run, agent.name, closeText);
      return;
    }
    if (this.#stopping) return;
    this.#attemptEnded(
      run,
      "agent-lost",
      `agent ${agent.name} disconnected before the job ended (${closeText})`,
    );
  }

  /** A launched agent that said hello but left before it was given its job: the attempt is lost. */
  #leasedAgentLeft(agent: AgentConnection, code: number, reason: string): void {
    const jobId = this.#dispatcher.leases.get(agent.name);
    const run = jobId === undefined ? undefined : this.#runs.get(jobId);
    if (agent.superseded || this.#stopping || run?.launch?.agentName !== agent.name) return;
    this.#provisioning.release(run, "it left before taking its job");
    this.#attemptEnded(
      run,
      "agent-lost",
      `agent ${agent.name} closed before taking its job (close code ${code}${reason ? `: ${reason}` : ""})`,
    );
  }

  /**
   * The platform says the current attempt's agent is gone (a task STOPPED: Spot reclaimed it, OOM):
   * it cannot resume, so a job waiting for it does not wait out the resume window.
   */
  #agentGone(run: JobRun, agentName: string, detail: string): void {
    if (run.recorder.ended || run.recorder.currentAttempt?.agent !== agentName) return;
    run.agentGone = detail;
    if (run.agent === undefined && run.lostTimer !== undefined)
      this.#attemptEnded(run, "agent-lost", `agent ${agentName} is gone: ${detail}`);
  }

  /** Holds the job for its agent to resume; the attempt is lost when the window passes. */
  #awaitResume(run: JobRun, agentName: string, why: string): void {
    this.#logger.warn("waiting for the agent to resume its job", {
      job: run.id,
      agent: agentName,
      why,
      windowMs: this.#options.resumeWindowMs,
    });
    clearTimeout(run.lostTimer);
    run.lostTimer = setTimeout(() => {
      delete run.lostTimer;
      this.#attemptEnded(
        run,
        "agent-lost",
        `agent ${agentName} did not resume within ${this.#options.resumeWindowMs} ms (${why})`,
      );
    }, this.#options.resumeWindowMs);
    run.lostTimer.unref();
  }

  /**
   * The current attempt ended for `cause`. A platform cause is retried within the job's budget
   * (a `deadline` moves once to the template's overflow label instead); anything else, or an
   * exhausted budget, ends the job.
   */
  #attemptEnded(
    run: JobRun,
    cause: AttemptCause,
    message: string,
    reported?: { status: JobStatus; ending: JobEnding },
  ): void {
    if (run.recorder.ended) return;
    clearTimeout(run.lostTimer);
    const ended = run.recorder.endAttempt(cause, message);
    if (ended) this.#spend(ended.agent, run.id);
    this.#dispatcher.leases.delete(ended?.agent ?? "");
    if (run.agent) {
      run.agent.close(CloseCode.normal, `attempt ${ended?.n ?? "?"} ended: ${cause}`);
      delete run.agent;
    }
    delete run.stream;
    delete run.agentGone;
    const record = run.recorder.record;
    const next = this.#retryPlan(run, ended, cause);
    if (next !== undefined && !run.cancelRequested && !this.#stopping) {
      if (next.overflowLabel !== undefined) {
        record.overflow = { from: ended?.template ?? "?", label: next.overflowLabel };
        run.labels = [next.overflowLabel];
      }
      delete record.agent;
      delete record.assignedAt;
      // The next attempt sends its own artifacts: what this one sent is not the job's.
      run.recorder.dropArtifacts();
      this.#logger.warn("attempt ended for a platform cause; retrying", {
        job: run.id,
        attempt: ended?.n,
        cause,
        detail: message,
        labels: run.labels,
      });
      this.#dispatcher.enqueue(run, true);
      run.recorder.setStatus("queued");
      this.#dispatcher.dispatch();
      return;
    }
    if (run.cancelRequested) {
      this.#finish(run, "cancelled", {
        reason: "cancelled",
        cause: "user",
        message: `cancelled; ${message}`,
      });
      return;
    }
    const attempts = record.attempts.length;
    const summary = `${message}${attempts > 1 ? ` (after ${attempts} attempts)` : ""}`;
    if (reported !== undefined) {
      this.#finish(run, reported.status, { ...reported.ending, message: summary });
      return;
    }
    const reason = FINAL_REASON[cause] ?? "agent-lost";
    this.#finish(run, "error", {
      reason,
      cause: "platform",
      message:
        reason === "provision-failed"
          ? `no agent could be started after ${attempts} attempt${attempts === 1 ? "" : "s"}; last: ${message}`
          : summary,
    });
  }

  /** Whether and where an attempt that ended with `cause` is retried; undefined: not retried. */
  #retryPlan(
    run: JobRun,
    ended: AttemptRecord | undefined,
    cause: AttemptCause,
  ): { overflowLabel?: string } | undefined {
    if (!RETRYABLE_CAUSES.has(cause)) return undefined;
    const record = run.recorder.record;
    if (cause === "deadline") {
      const overflowLabel = this.#provisioning.template(ended?.template)?.overflowLabel;
      return overflowLabel !== undefined && record.overflow === undefined ? { overflowLabel } : undefined;
    }
    const used = record.attempts.filter(
      (a) => a.cause !== undefined && RETRYABLE_CAUSES.has(a.cause) && a.cause !== "deadline",
    ).length;
    return used <= record.retry.infrastructure ? {} : undefined;
  }

  #spend(agentName: string, jobId: string): void {
    if (agentName !== "") this.#spent.set(agentName, jobId);
  }

  #finish(run: JobRun, status: JobStatus, ending: JobEnding): void {
    clearTimeout(run.lostTimer);
    this.#dispatcher.remove(run);
    this.#provisioning.release(run, "the job ended");
    run.recorder.endAttempt(status === "succeeded" ? "succeeded" : "user", ending.message);
    const agentName = run.recorder.record.attempts.at(-1)?.agent;
    if (agentName !== undefined) {
      this.#spend(agentName, run.id);
      this.#dispatcher.leases.delete(agentName);
    }
    if (!run.recorder.finish(status, ending)) return;
    this.#runs.delete(run.id);
    this.#endedJobs.set(run.id, run.job);
    this.#store.ended(run.id);
    this.#logger.info("job ended", { job: run.id, status, reason: run.recorder.record.reason });
  }
}

function newJobId(): string {
  return `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
}

function loadOrCreateKey(dataDir: string): string {
  const path = join(dataDir, "controller.key");
  if (existsSync(path)) return readFileSync(path, "utf8").trim();
  const key = randomBytes(32).toString("hex");
  writeFileSync(path, `${key}\n`, { mode: 0o600 });
  return key;
}

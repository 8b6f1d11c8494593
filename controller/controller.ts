import { randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import type { WebSocket } from "ws";
import {
  CloseCode,
  deriveAgentSecret,
  type Hello,
  isResumableClose,
  type Logger,
  silentLogger,
} from "../agent-core/index.ts";
import { AgentConnection, type AgentConnectionHandlers } from "./agent-connection.ts";
import { ArtifactReceiver } from "./artifact-receiver.ts";
import { checkListenSecurity, sessionRoutes } from "./auth.ts";
import { Dispatcher } from "./dispatcher.ts";
import { ControllerApiError } from "./errors.ts";
import { type AgentInfo, type ControllerApi, createApiHandler, type Route } from "./http-api.ts";
import { type JobEnding, JobRecorder } from "./job-recorder.ts";
import type { JobRun } from "./job-run.ts";
import { DEFAULT_PROTECTED_BRANCHES, prepareJob, resubmission } from "./job-spec.ts";
import { JobFiles, type JobRecord, type JobStatus, type LogListener } from "./job-store.ts";
import type { Provisioner } from "./provisioner.ts";
import { Provisioning } from "./provisioning.ts";
import { ControllerServer, type TlsFiles } from "./server.ts";
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
  provisioner?: Provisioner;
  logger?: Logger;
  heartbeatIntervalMs?: number;
  helloTimeoutMs?: number;
  ackDelayMs?: number;
  /** Largest frame accepted from an agent. */
  maxPayloadBytes?: number;
  /** Launch attempts per job before it fails with `provision-failed`. */
  maxProvisionAttempts?: number;
  /** A launched agent that has not said hello by then is stopped and counted as a failed attempt. */
  provisionTimeoutMs?: number;
  /** How long a job whose agent's connection dropped waits for it to resume before failing with agent-lost. */
  resumeWindowMs?: number;
  /** Further HTTP routes served beside the API (pages, metrics). */
  routes?: readonly Route[];
  /** Branch patterns whose jobs' warm caches are `protected` (default `main`, `master`). */
  protectedBranches?: readonly string[];
  /** Largest workspace archive accepted for upload, in bytes (default 10 GiB). */
  maxUploadBytes?: number;
  /** Largest artifact set kept per job, in bytes (default 10 GiB): beyond it the artifacts are refused. */
  maxArtifactBytes?: number;
  /** Most entries in an uploaded workspace archive (default 100,000, the agents' default). */
  maxArchiveEntries?: number;
  /**
   * The API token (at least 16 characters): every request but `/healthz`, the web view's pages
   * and `POST /login` must carry it (`Authorization: Bearer`, or the web view's session cookie).
   * Required to listen beyond loopback unless `insecure`. Agents authenticate with their HMAC
   * secrets, not with it.
   */
  apiToken?: string;
  /** Listen beyond loopback without a token (something else guards the port). */
  insecure?: boolean;
  /** Serve HTTPS and WSS with this certificate and key (PEM); agents verify it. */
  tls?: TlsFiles;
}

type ResolvedOptions = Required<
  Omit<
    ControllerOptions,
    "provisioner" | "key" | "host" | "port" | "routes" | "logger" | "apiToken" | "insecure" | "tls"
  >
>;

/** Uploads no job took are removed after this long. */
const UPLOAD_TTL_MS = 24 * 3_600_000;

const MAX_REQUEUES = 3;

export type { AgentInfo };

/**
 * The reference controller: accepts agents over protocol v1 (`AgentGate`), queues jobs and hands
 * each to an agent whose labels match (`Dispatcher`), launching one when none is idle
 * (`Provisioning`), records what the agents report (`JobRecorder`), and serves the HTTP API
 * (`ControllerServer`, `createApiHandler`). This class wires them and owns the job lifecycle.
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
  readonly #jobs = new Map<string, JobRun>();
  readonly #dispatcher: Dispatcher;
  readonly #provisioning: Provisioning | undefined;
  readonly #gate: AgentGate;
  readonly #uploads: UploadStore;
  #server: ControllerServer | undefined;
  #stopping = false;

  private constructor(options: ControllerOptions) {
    this.#logger = options.logger ?? silentLogger;
    this.#options = {
      dataDir: options.dataDir,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 15_000,
      helloTimeoutMs: options.helloTimeoutMs ?? 10_000,
      ackDelayMs: options.ackDelayMs ?? 5,
      maxPayloadBytes: options.maxPayloadBytes ?? 1_048_576,
      maxProvisionAttempts: options.maxProvisionAttempts ?? 3,
      provisionTimeoutMs: options.provisionTimeoutMs ?? 60_000,
      resumeWindowMs: options.resumeWindowMs ?? 90_000,
      protectedBranches: options.protectedBranches ?? DEFAULT_PROTECTED_BRANCHES,
      maxUploadBytes: options.maxUploadBytes ?? 10 * 1024 ** 3,
      maxArtifactBytes: options.maxArtifactBytes ?? 10 * 1024 ** 3,
      maxArchiveEntries: options.maxArchiveEntries ?? 100_000,
    };
    mkdirSync(join(options.dataDir, "jobs"), { recursive: true });
    this.#uploads = new UploadStore(join(options.dataDir, "uploads"), {
      maxBytes: this.#options.maxUploadBytes,
      maxEntries: this.#options.maxArchiveEntries,
    });
    this.#uploads.prune(UPLOAD_TTL_MS);
    this.#key = options.key ?? loadOrCreateKey(options.dataDir);
    this.#dispatcher = new Dispatcher(
      {
        assign: (run, agent) => this.#assign(run, agent),
        launch: (run) => {
          if (!this.#stopping) this.#provisioning?.launch(run);
        },
      },
      (id) => this.#jobs.get(id),
    );
    this.#provisioning = options.provisioner
      ? new Provisioning(
          {
            provisioner: options.provisioner,
            logger: this.#logger,
            maxAttempts: this.#options.maxProvisionAttempts,
            connectTimeoutMs: this.#options.provisionTimeoutMs,
            controllerUrl: () => this.url,
            secretFor: (name) => this.secretFor(name),
          },
          this.#dispatcher,
          {
            gaveUp: (run, message) =>
              this.#finish(run, "error", { reason: "provision-failed", cause: "platform", message }),
            retry: () => this.#dispatcher.dispatch(),
          },
        )
      : undefined;
    const agents = this.#dispatcher.agents;
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
          const open = agents.get(name);
          return open === undefined ? undefined : (open.job?.id ?? null);
        },
      },
      accepted: (ws, name) => this.#accepted(ws, name),
    });
  }

  /**
   * Starts listening; resolves once the port is bound. Throws ControllerApiError
   * `CONTROLLER_ERR_CONFIG` for a host beyond loopback without `apiToken` (unless `insecure`), a
   * short token, or a certificate that cannot be used.
   */
  static async start(options: ControllerOptions): Promise<Controller> {
    const host = options.host ?? "127.0.0.1";
    checkListenSecurity(host, options.apiToken, options.insecure ?? false);
    const auth =
      options.apiToken === undefined
        ? undefined
        : { token: options.apiToken, secureCookie: options.tls !== undefined };
    const controller = new Controller(options);
    controller.#server = await ControllerServer.listen({
      host,
      port: options.port ?? 0,
      api: createApiHandler(
        controller,
        [...(auth ? sessionRoutes(auth) : []), ...(options.routes ?? [])],
        auth,
      ),
      gate: controller.#gate,
      ...(options.tls ? { tls: options.tls } : {}),
    });
    controller.#logger.info("controller listening", { url: controller.url });
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
   * steps, labels, env and secrets (held in memory only). Throws ControllerApiError 404 for an
   * unknown job, 409 while it has not ended.
   */
  retry(id: string): JobRecord {
    const run = this.#require(id);
    if (!run.recorder.ended)
      throw new ControllerApiError(
        409,
        "CONTROLLER_ERR_CONFLICT",
        `job ${id} is ${run.recorder.record.status}: it can be run again once it has ended`,
      );
    return this.#submit(resubmission(run.prepared), id);
  }

  #submit(input: unknown, retryOf: string | undefined): JobRecord {
    if (this.#stopping)
      throw new ControllerApiError(409, "CONTROLLER_ERR_CONFLICT", "the controller is shutting down");
    const id = newJobId();
    const prepared = prepareJob(input, id, { protectedBranches: this.#options.protectedBranches });
    const upload =
      prepared.workspaceUpload === undefined ? undefined : this.#uploads.get(prepared.workspaceUpload);
    if (prepared.workspaceUpload !== undefined && upload === undefined) {
      throw new ControllerApiError(
        400,
        "CONTROLLER_ERR_INVALID_JOB",
        `invalid job: workspace.upload ${JSON.stringify(prepared.workspaceUpload)} is no upload of this controller (POST /api/v1/workspaces first; uploads are kept 24 h)`,
      );
    }
    const record: JobRecord = {
      id,
      ...(retryOf !== undefined ? { retryOf } : {}),
      ...(prepared.job.name !== undefined ? { name: prepared.job.name } : {}),
      labels: prepared.labels,
      status: "queued",
      submittedAt: new Date().toISOString(),
      logBytes: 0,
      steps: prepared.job.steps.map((s) => ({
        id: s.id,
        ...(s.name !== undefined ? { name: s.name } : {}),
        status: "pending",
      })),
    };
    const files = new JobFiles(this.#options.dataDir, id);
    writeFileSync(join(files.dir, "submission.json"), `${JSON.stringify(prepared.stored, null, 2)}\n`);
    if (upload !== undefined) {
      this.#uploads.take(upload.id, join(files.dir, "workspace.tar"));
      prepared.job.workspace = { bytes: upload.bytes, sha256: upload.sha256 };
      record.workspace = { bytes: upload.bytes, sha256: upload.sha256, entries: upload.entries };
    }
    if (prepared.cacheTrust !== undefined) record.cacheTrust = prepared.cacheTrust;
    const run: JobRun = {
      id,
      recorder: new JobRecorder(record, files),
      prepared,
      launchAttempts: 0,
      requeues: 0,
      cancelRequested: false,
    };
    this.#jobs.set(id, run);
    this.#dispatcher.enqueue(run);
    run.recorder.setStatus("queued");
    this.#logger.info("job queued", { job: id, labels: record.labels });
    this.#dispatcher.dispatch();
    return record;
  }

  getJob(id: string): JobRecord | undefined {
    return this.#jobs.get(id)?.recorder.record;
  }

  listJobs(): JobRecord[] {
    return [...this.#jobs.values()].map((run) => run.recorder.record);
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

  /** Replays a job's events, then follows it live while `live` and the job runs. Returns an unsubscribe function. */
  follow(id: string, listener: LogListener, live: boolean): () => void {
    return this.#require(id).recorder.files.follow(listener, live);
  }

  /** Path of the job's raw output (every byte the steps wrote, in arrival order). */
  outputPath(id: string): string {
    return join(this.#require(id).recorder.files.dir, "output.log");
  }

  /** Stores an uploaded workspace archive, checked with the agents' rules (see UploadStore). */
  uploadWorkspace(body: AsyncIterable<Uint8Array>): Promise<WorkspaceUpload> {
    if (this.#stopping)
      throw new ControllerApiError(409, "CONTROLLER_ERR_CONFLICT", "the controller is shutting down");
    return this.#uploads.receive(body);
  }

  /** The job's stored artifacts; 404 when the job kept none (yet). */
  artifactsOf(id: string): { path: string; bytes: number; sha256: string } {
    const run = this.#require(id);
    const artifacts = run.recorder.record.artifacts;
    if (artifacts?.status !== "stored" || artifacts.bytes === 0) {
      throw new ControllerApiError(
        404,
        "CONTROLLER_ERR_NOT_FOUND",
        `job ${id} has no artifacts${artifacts?.status === "failed" ? ` (${artifacts.code}: ${artifacts.message})` : ""}`,
      );
    }
    return {
      path: join(run.recorder.files.dir, "artifacts.tar"),
      bytes: artifacts.bytes,
      sha256: artifacts.sha256,
    };
  }

  /** Cancels a job: a queued one at once, a running one by asking its agent. */
  cancel(id: string, reason = "cancelled through the API"): JobRecord {
    const run = this.#require(id);
    if (run.recorder.ended) return run.recorder.record;
    run.cancelRequested = true;
    if (run.agent) {
      run.agent.cancel(reason);
    } else {
      this.#provisioning?.release(run);
      this.#finish(run, "cancelled", { reason: "cancelled", cause: "user", message: reason });
    }
    return run.recorder.record;
  }

  /** Resolves with the record once the job reaches a terminal status. */
  waitForJob(id: string): Promise<JobRecord> {
    return this.#require(id).recorder.waitForEnd();
  }

  /** Closes agent sessions (1001), stops launched agents, closes the server. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const agent of this.#dispatcher.agents.values())
      agent.close(CloseCode.goingAway, "controller shutting down");
    for (const run of this.#jobs.values()) {
      this.#finish(run, "error", {
        reason: "agent-lost",
        cause: "platform",
        message: "the controller shut down",
      });
    }
    await this.#provisioning?.close();
    this.#gate.close();
    await this.#server?.close();
  }

  #require(id: string): JobRun {
    const run = this.#jobs.get(id);
    if (!run) throw new ControllerApiError(404, "CONTROLLER_ERR_NOT_FOUND", `no job ${JSON.stringify(id)}`);
    return run;
  }

  #accepted(ws: WebSocket, agentName: string): void {
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
    this.#dispatcher.agents.set(agentName, connection);
    this.#logger.info("agent connected", { agent: agentName });
  }

  readonly #handlers: AgentConnectionHandlers = {
    hello: (agent, hello) => this.#onHello(agent, hello),
    stepStart: (agent, message) => this.#runOf(agent).recorder.stepStart(message),
    output: (agent, frame) => this.#runOf(agent).recorder.output(frame),
    stepEnd: (agent, message) => this.#runOf(agent).recorder.stepEnd(message),
    workspacePull: (agent, message) => {
      const run = this.#runOf(agent);
      const seed = run.prepared.job.workspace!;
      const length = Math.min(message.length, seed.bytes - message.offset);
      const data = Buffer.allocUnsafe(length);
      const fd = openSync(join(run.recorder.files.dir, "workspace.tar"), "r");
      try {
        let read = 0;
        while (read < length) {
          const n = readSync(fd, data, read, length - read, message.offset + read);
          if (n === 0) break;
          read += n;
        }
      } finally {
        closeSync(fd);
      }
      agent.sendWorkspace(message.offset, data);
    },
    artifact: (agent, frame) => {
      const run = this.#runOf(agent);
      run.artifacts ??= ArtifactReceiver.create(
        join(run.recorder.files.dir, "artifacts.tar"),
        this.#options.maxArtifactBytes,
      );
      run.artifacts.write(frame.offset, frame.data);
    },
    artifactsEnd: (agent, message) => {
      const run = this.#runOf(agent);
      const receiver =
        run.artifacts ??
        ArtifactReceiver.create(
          join(run.recorder.files.dir, "artifacts.tar"),
          this.#options.maxArtifactBytes,
        );
      delete run.artifacts;
      const record = receiver.end(message);
      run.recorder.artifacts(record);
      this.#logger.info(record.status === "stored" ? "artifacts stored" : "artifacts refused", {
        job: run.id,
        ...(record.status === "stored"
          ? { bytes: record.bytes, entries: record.entries }
          : { code: record.code }),
      });
    },
    jobEnd: (agent, message) => {
      const run = this.#runOf(agent);
      run.endedByAgent = agent.name;
      const { status, ending } = run.recorder.jobEnd(message, run.cancelRequested);
      this.#finish(run, status, ending);
    },
    closed: (agent, code, reason) => this.#onAgentClosed(agent, code, reason),
  };

  #runOf(agent: AgentConnection): JobRun {
    return this.#jobs.get(agent.job!.id)!;
  }

  #onHello(agent: AgentConnection, hello: Hello): void {
    if (hello.resume !== undefined) {
      this.#resume(agent, hello.resume.jobId);
      return;
    }
    this.#logger.info("agent ready", {
      agent: agent.name,
      runtime: hello.agent.runtime,
      labels: hello.agent.labels,
    });
    const leasedJob = this.#dispatcher.leases.get(agent.name);
    if (leasedJob !== undefined) {
      const run = this.#jobs.get(leasedJob);
      if (run) {
        run.recorder.record.connectedAt ??= new Date().toISOString();
        this.#provisioning?.connected(run, agent.name);
      }
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
    const run = this.#jobs.get(jobId);
    const previous = run?.agent;
    if (run?.endedByAgent === agent.name && previous?.stream !== undefined) {
      // Its job-end was stored but the ack was lost: the agent learns that its result is stored.
      this.#logger.info("agent resumed a job that already ended; confirming its end", {
        agent: agent.name,
        job: jobId,
      });
      agent.confirmEnded(previous.stream);
      return;
    }
    const refusal =
      run === undefined
        ? "no such job"
        : run.recorder.ended
          ? `the job already ended (${run.recorder.record.status})`
          : previous?.stream === undefined || previous.name !== agent.name
            ? "the job runs on another agent"
            : undefined;
    if (refusal !== undefined || run === undefined || previous?.stream === undefined) {
      this.#logger.warn("resume refused", { agent: agent.name, job: jobId, reason: refusal });
      agent.close(CloseCode.resumeRefused, `cannot resume job ${jobId}: ${refusal}`);
      return;
    }
    clearTimeout(run.lostTimer);
    delete run.lostTimer;
    agent.adopt(previous.stream);
    run.agent = agent;
    const record = run.recorder.record;
    record.reconnects = (record.reconnects ?? 0) + 1;
    run.recorder.files.saveRecord(record);
    this.#logger.info("agent resumed its job", {
      agent: agent.name,
      job: jobId,
      fromSeq: previous.stream.lastSeq,
    });
    if (run.cancelRequested) agent.cancel("cancelled while the agent was disconnected");
  }

  #assign(run: JobRun, agent: AgentConnection): void {
    // Another agent may take the job: the one launched for it is then no longer needed.
    this.#provisioning?.release(run, agent.name);
    // A new attempt sends its artifacts from the start: what an earlier one sent is dropped.
    run.artifacts?.discard();
    delete run.artifacts;
    run.agent = agent;
    const hello = agent.hello!;
    const record = run.recorder.record;
    record.agent = {
      name: agent.name,
      runtime: hello.agent.runtime,
      version: hello.agent.version,
      labels: hello.agent.labels,
      ...(hello.logs ? { logs: hello.logs } : {}),
    };
    record.assignedAt = new Date().toISOString();
    agent.assign(run.prepared.job);
    run.recorder.setStatus("assigned", agent.name, record.agent.logs);
    this.#logger.info("job assigned", { job: run.id, agent: agent.name });
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
    const jobId = agent.job?.id;
    const run = jobId === undefined ? undefined : this.#jobs.get(jobId);
    if (agent.superseded || run === undefined || run.agent !== agent) return;
    const status = run.recorder.record.status;
    const closeText = `close code ${code}${reason ? `: ${reason}` : ""}`;
    const started = status === "running" || status === "assigned";
    if (started && isResumableClose(code) && !this.#stopping) {
      // The connection dropped mid-job: the agent keeps running it and resumes within the window.
      this.#logger.warn("agent connection lost mid-job; waiting for it to resume", {
        job: run.id,
        agent: agent.name,
        windowMs: this.#options.resumeWindowMs,
      });
      clearTimeout(run.lostTimer);
      run.lostTimer = setTimeout(() => {
        this.#finish(run, "error", {
          reason: "agent-lost",
          cause: "platform",
          message: `agent ${agent.name} disconnected (${closeText}) and did not resume within ${this.#options.resumeWindowMs} ms`,
        });
      }, this.#options.resumeWindowMs);
      run.lostTimer.unref();
      return;
    }
    if (status === "assigned" && !run.cancelRequested && run.requeues < MAX_REQUEUES && !this.#stopping) {
      // Nothing ran yet (the agent left as the job arrived, e.g. its idle timeout crossed it): give it to another.
      run.requeues++;
      delete run.agent;
      delete run.launch;
      const record = run.recorder.record;
      delete record.agent;
      delete record.assignedAt;
      this.#dispatcher.enqueue(run, true);
      run.recorder.setStatus("queued");
      this.#logger.warn("agent left before starting its job; requeued", { job: run.id, agent: agent.name });
      this.#dispatcher.dispatch();
      return;
    }
    this.#finish(run, "error", {
      reason: "agent-lost",
      cause: "platform",
      message: `agent ${agent.name} disconnected before the job ended (${closeText})`,
    });
  }

  #finish(run: JobRun, status: JobStatus, ending: JobEnding): void {
    clearTimeout(run.lostTimer);
    // A partial artifact stream (no artifacts-end came) is dropped; the seed is no longer needed.
    run.artifacts?.discard();
    delete run.artifacts;
    if (run.prepared.job.workspace !== undefined && !run.recorder.ended) {
      rmSync(join(run.recorder.files.dir, "workspace.tar"), { force: true });
    }
    this.#dispatcher.remove(run);
    if (run.recorder.finish(status, ending))
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

import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { join } from "node:path";
import { WebSocketServer } from "ws";
import {
  AGENT_WS_PATH,
  CloseCode,
  deriveAgentSecret,
  type Hello,
  isResumableClose,
  type Logger,
  NAME_HEADER,
  PROTOCOL_HEADER,
  PROTOCOL_VERSION,
  RESUME_HEADER,
  SECRET_HEADER,
  type StepReason,
  silentLogger,
  verifyAgentSecret,
} from "../agent-core/index.ts";
import { AgentConnection, type AgentConnectionHandlers } from "./agent-connection.ts";
import { ControllerApiError } from "./errors.ts";
import { createApiHandler } from "./http-api.ts";
import { type PreparedJob, prepareJob } from "./job-spec.ts";
import {
  type FailureCause,
  JobFiles,
  type JobReason,
  type JobRecord,
  type JobStatus,
  type LogListener,
  TERMINAL_STATUSES,
} from "./job-store.ts";
import type { ProvisionedAgent, Provisioner } from "./provisioner.ts";
import { defaultWebDir } from "./web-assets.ts";

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
  /** The built web view served at `/` (default: `web/` beside the bundle, or the repository's `dist/web`). */
  webDir?: string;
}

interface JobState {
  record: JobRecord;
  prepared: PreparedJob;
  files: JobFiles;
  agent?: AgentConnection;
  provision?: { agentName: string; handle?: ProvisionedAgent; timer?: NodeJS.Timeout };
  provisionAttempts: number;
  /** Ends the job as agent-lost unless its agent resumes first. */
  lostTimer?: NodeJS.Timeout;
  /** Times the job went back to the queue because its agent left before starting it. */
  requeues: number;
  cancelRequested: boolean;
  waiters: ((record: JobRecord) => void)[];
}

export interface AgentInfo {
  name: string;
  state: string;
  labels: string[];
  runtime?: string;
  version?: string;
  jobId?: string;
}

const MAX_REQUEUES = 3;
const PLATFORM_REASONS: ReadonlySet<JobReason> = new Set([
  "deadline",
  "disk",
  "interrupted",
  "agent-lost",
  "provision-failed",
]);

/**
 * The reference controller: accepts agents over protocol v1, verifies their secrets, queues
 * jobs, hands each to an agent whose labels match (launching one through the provisioner when
 * none is idle), stores logs and results, and serves the HTTP API.
 *
 * @example
 * const controller = await Controller.start({ dataDir, provisioner });
 * const job = controller.submit({ steps: [{ run: "echo hi" }] });
 * await controller.waitForJob(job.id);
 */
export class Controller {
  readonly #options: Required<Omit<ControllerOptions, "provisioner" | "key" | "host" | "port" | "webDir">> & {
    provisioner?: Provisioner;
  };
  readonly #key: string;
  readonly #server: Server;
  readonly #wss: WebSocketServer;
  readonly #logger: Logger;
  readonly #jobs = new Map<string, JobState>();
  readonly #queue: JobState[] = [];
  readonly #agents = new Map<string, AgentConnection>();
  /** Agent name -> job id it was launched for. */
  readonly #leases = new Map<string, string>();
  #url = "";
  #stopping = false;

  private constructor(options: ControllerOptions) {
    this.#options = {
      dataDir: options.dataDir,
      logger: options.logger ?? silentLogger,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 15_000,
      helloTimeoutMs: options.helloTimeoutMs ?? 10_000,
      ackDelayMs: options.ackDelayMs ?? 5,
      maxPayloadBytes: options.maxPayloadBytes ?? 1_048_576,
      maxProvisionAttempts: options.maxProvisionAttempts ?? 3,
      provisionTimeoutMs: options.provisionTimeoutMs ?? 60_000,
      resumeWindowMs: options.resumeWindowMs ?? 90_000,
      ...(options.provisioner ? { provisioner: options.provisioner } : {}),
    };
    this.#logger = this.#options.logger;
    mkdirSync(join(options.dataDir, "jobs"), { recursive: true });
    this.#key = options.key ?? loadOrCreateKey(options.dataDir);
    this.#wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: this.#options.maxPayloadBytes,
    });
    this.#server = createServer(createApiHandler(this, { webDir: options.webDir ?? defaultWebDir() }));
    this.#server.on("upgrade", (req, socket: Socket, head) => this.#upgrade(req, socket, head));
  }

  /** Starts listening; resolves once the port is bound. */
  static async start(options: ControllerOptions): Promise<Controller> {
    const controller = new Controller(options);
    await new Promise<void>((resolve, reject) => {
      controller.#server.once("error", reject);
      controller.#server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve());
    });
    const address = controller.#server.address() as AddressInfo;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    controller.#url = `http://${host}:${address.port}/`;
    controller.#logger.info("controller listening", { url: controller.#url });
    return controller;
  }

  /** The URL agents and API clients use, e.g. `http://127.0.0.1:41234/`. */
  get url(): string {
    return this.#url;
  }

  /** The secret an agent with this name must present. */
  secretFor(agentName: string): string {
    return deriveAgentSecret(this.#key, agentName);
  }

  /** Queues a job; throws ControllerApiError (400) when the submission is invalid. */
  submit(input: unknown): JobRecord {
    if (this.#stopping)
      throw new ControllerApiError(409, "CONTROLLER_ERR_CONFLICT", "the controller is shutting down");
    const id = newJobId();
    const prepared = prepareJob(input, id);
    const record: JobRecord = {
      id,
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
    const state: JobState = {
      record,
      prepared,
      files,
      provisionAttempts: 0,
      requeues: 0,
      cancelRequested: false,
      waiters: [],
    };
    this.#jobs.set(id, state);
    this.#queue.push(state);
    this.#setStatus(state, "queued");
    this.#logger.info("job queued", { job: id, labels: record.labels });
    this.#dispatch();
    return record;
  }

  getJob(id: string): JobRecord | undefined {
    return this.#jobs.get(id)?.record;
  }

  listJobs(): JobRecord[] {
    return [...this.#jobs.values()].map((s) => s.record);
  }

  listAgents(): AgentInfo[] {
    return [...this.#agents.values()].map((a) => ({
      name: a.name,
      state: a.state,
      labels: a.labels,
      ...(a.hello ? { runtime: a.hello.agent.runtime, version: a.hello.agent.version } : {}),
      ...(a.job ? { jobId: a.job.id } : {}),
    }));
  }

  /** Replays a job's events, then follows it live while `live` and the job runs. Returns an unsubscribe function. */
  follow(id: string, listener: LogListener, live: boolean): () => void {
    const state = this.#require(id);
    return state.files.follow(listener, live);
  }

  /** Path of the job's raw output (every byte the steps wrote, in arrival order). */
  outputPath(id: string): string {
    return join(this.#require(id).files.dir, "output.log");
  }

  /** Cancels a job: a queued one at once, a running one by asking its agent. */
  cancel(id: string, reason = "cancelled through the API"): JobRecord {
    const state = this.#require(id);
    if (TERMINAL_STATUSES.has(state.record.status)) return state.record;
    state.cancelRequested = true;
    if (state.agent) {
      state.agent.cancel(reason);
    } else {
      void state.provision?.handle?.stop();
      this.#finish(state, "cancelled", { reason: "cancelled", cause: "user", message: reason });
    }
    return state.record;
  }

  /** Resolves with the record once the job reaches a terminal status. */
  waitForJob(id: string): Promise<JobRecord> {
    const state = this.#require(id);
    if (TERMINAL_STATUSES.has(state.record.status)) return Promise.resolve(state.record);
    return new Promise((resolve) => state.waiters.push(resolve));
  }

  /** Closes agent sessions (1001), stops launched agents, closes the server. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const agent of this.#agents.values()) agent.close(CloseCode.goingAway, "controller shutting down");
    for (const state of this.#jobs.values()) {
      if (!TERMINAL_STATUSES.has(state.record.status)) {
        this.#finish(state, "error", {
          reason: "agent-lost",
          cause: "platform",
          message: "the controller shut down",
        });
      }
    }
    await this.#options.provisioner?.close();
    this.#wss.close();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #require(id: string): JobState {
    const state = this.#jobs.get(id);
    if (!state) throw new ControllerApiError(404, "CONTROLLER_ERR_NOT_FOUND", `no job ${JSON.stringify(id)}`);
    return state;
  }

  #upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    socket.on("error", () => socket.destroy());
    const name = headerValue(req, NAME_HEADER);
    const refusal = this.#refusalFor(req, name);
    if (refusal !== undefined) {
      const [status, text] = refusal;
      this.#logger.warn("agent refused", { status, reason: text, name });
      socket.end(
        `HTTP/1.1 ${status} ${text.split(":")[0]}\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
      );
      return;
    }
    const agentName = name!;
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      const stale = this.#agents.get(agentName);
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
      this.#agents.set(agentName, connection);
      this.#logger.info("agent connected", { agent: agentName });
    });
  }

  /** Why an upgrade is refused (HTTP status and text), or undefined to accept it. */
  #refusalFor(req: IncomingMessage, name: string | undefined): [number, string] | undefined {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    if (path !== `/${AGENT_WS_PATH}`) return [404, `Not Found: no agent endpoint at ${path}`];
    const secret = headerValue(req, SECRET_HEADER);
    if (!name || !secret) return [400, "Bad Request: the Node-Name and Secret-Key headers are required"];
    if (!verifyAgentSecret(this.#key, name, secret))
      return [403, `Forbidden: wrong secret for agent ${name}`];
    const version = headerValue(req, PROTOCOL_HEADER);
    if (version !== undefined && version !== String(PROTOCOL_VERSION)) {
      return [
        426,
        `Upgrade Required: this controller speaks protocol ${PROTOCOL_VERSION}, the agent ${version}`,
      ];
    }
    const existing = this.#agents.get(name);
    const resuming = headerValue(req, RESUME_HEADER);
    if (existing !== undefined && (resuming === undefined || existing.job?.id !== resuming)) {
      return [409, `Conflict: agent ${name} is already connected`];
    }
    if (this.#stopping) return [503, "Service Unavailable: shutting down"];
    return undefined;
  }

  readonly #handlers: AgentConnectionHandlers = {
    hello: (agent, hello) => this.#onHello(agent, hello),
    stepStart: (agent, message) => {
      const state = this.#stateOf(agent);
      const index = state.record.steps.findIndex((s) => s.id === message.stepId);
      const step = state.record.steps[index]!;
      step.status = "running";
      step.startedAt = new Date(message.startedAt).toISOString();
      if (state.record.startedAt === undefined) {
        state.record.startedAt = step.startedAt;
        state.record.queuedMs = message.startedAt - Date.parse(state.record.submittedAt);
        this.#setStatus(state, "running");
      }
      state.files.appendEvent({
        type: "step-start",
        stepId: step.id,
        ...(step.name !== undefined ? { name: step.name } : {}),
        index: index + 1,
        total: state.record.steps.length,
        at: step.startedAt,
      });
    },
    output: (agent, frame) => {
      const state = this.#stateOf(agent);
      state.files.appendOutput(frame.stepId, frame.stream, frame.data);
      state.record.logBytes = state.files.outputBytes;
    },
    stepEnd: (agent, message) => {
      const state = this.#stateOf(agent);
      const index = state.record.steps.findIndex((s) => s.id === message.stepId);
      const step = state.record.steps[index]!;
      Object.assign(step, {
        status: message.reason === "exit" && message.exitCode === 0 ? "succeeded" : "failed",
        endedAt: new Date().toISOString(),
        durationMs: message.durationMs,
        exitCode: message.exitCode,
        signal: message.signal,
        reason: message.reason,
        stdoutBytes: message.stdoutBytes,
        stderrBytes: message.stderrBytes,
        ...(message.peakRssBytes !== undefined ? { peakRssBytes: message.peakRssBytes } : {}),
        ...(message.message !== undefined ? { message: message.message } : {}),
      });
      state.files.appendEvent({
        type: "step-end",
        stepId: step.id,
        index: index + 1,
        total: state.record.steps.length,
        status: step.status,
        exitCode: message.exitCode,
        signal: message.signal,
        reason: message.reason,
        durationMs: message.durationMs,
        ...(message.peakRssBytes !== undefined ? { peakRssBytes: message.peakRssBytes } : {}),
        ...(message.message !== undefined ? { message: message.message } : {}),
      });
      state.files.saveRecordSoon(state.record);
    },
    jobEnd: (agent, message) => {
      const state = this.#stateOf(agent);
      if (message.agentPeakRssBytes !== undefined) state.record.agentPeakRssBytes = message.agentPeakRssBytes;
      if (message.diskUsedBytes !== undefined) state.record.diskUsedBytes = message.diskUsedBytes;
      const status: JobStatus =
        message.status === "succeeded"
          ? "succeeded"
          : message.reason === "cancelled" && state.cancelRequested
            ? "cancelled"
            : "failed";
      this.#finish(state, status, {
        reason: message.reason,
        cause: causeOf(message.reason),
        durationMs: message.durationMs,
        ...(message.message !== undefined ? { message: message.message } : {}),
      });
    },
    closed: (agent, code, reason) => this.#onAgentClosed(agent, code, reason),
  };

  #stateOf(agent: AgentConnection): JobState {
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
    const leasedJob = this.#leases.get(agent.name);
    if (leasedJob !== undefined) {
      const state = this.#jobs.get(leasedJob);
      if (state?.provision?.agentName === agent.name) clearTimeout(state.provision.timer);
    }
    this.#dispatch();
    if (agent.state === "idle" && leasedJob !== undefined) {
      // Launched for a job that no longer needs it: an ephemeral agent is released, not parked.
      this.#leases.delete(agent.name);
      agent.close(CloseCode.normal, "no job for this agent");
    }
  }

  /** A reconnected agent continues its job's stream from the last message stored. */
  #resume(agent: AgentConnection, jobId: string): void {
    const state = this.#jobs.get(jobId);
    const previous = state?.agent;
    const refusal =
      state === undefined
        ? "no such job"
        : TERMINAL_STATUSES.has(state.record.status)
          ? `the job already ended (${state.record.status})`
          : previous?.stream === undefined || previous.name !== agent.name
            ? "the job runs on another agent"
            : undefined;
    if (refusal !== undefined || state === undefined || previous?.stream === undefined) {
      this.#logger.warn("resume refused", { agent: agent.name, job: jobId, reason: refusal });
      agent.close(CloseCode.resumeRefused, `cannot resume job ${jobId}: ${refusal}`);
      return;
    }
    clearTimeout(state.lostTimer);
    delete state.lostTimer;
    agent.adopt(previous.stream);
    state.agent = agent;
    state.record.reconnects = (state.record.reconnects ?? 0) + 1;
    state.files.saveRecord(state.record);
    this.#logger.info("agent resumed its job", {
      agent: agent.name,
      job: jobId,
      fromSeq: previous.stream.lastSeq,
    });
    if (state.cancelRequested) agent.cancel("cancelled while the agent was disconnected");
  }

  #dispatch(): void {
    for (const state of [...this.#queue]) {
      if (state.record.status !== "queued") continue;
      const agent = this.#pickAgent(state);
      if (agent) {
        this.#assign(state, agent);
        continue;
      }
      this.#maybeProvision(state);
    }
  }

  #pickAgent(state: JobState): AgentConnection | undefined {
    const leased = state.provision && this.#agents.get(state.provision.agentName);
    if (leased?.state === "idle") return leased;
    for (const agent of this.#agents.values()) {
      if (agent.state !== "idle") continue;
      const lease = this.#leases.get(agent.name);
      if (
        lease !== undefined &&
        lease !== state.record.id &&
        this.#jobs.get(lease)?.record.status === "queued"
      )
        continue;
      if (state.record.labels.every((label) => agent.labels.includes(label))) return agent;
    }
    return undefined;
  }

  #assign(state: JobState, agent: AgentConnection): void {
    this.#queue.splice(this.#queue.indexOf(state), 1);
    if (state.provision && state.provision.agentName !== agent.name) {
      // Another agent took the job: the one launched for it is no longer needed.
      clearTimeout(state.provision.timer);
      void state.provision.handle?.stop();
    }
    this.#leases.delete(agent.name);
    state.agent = agent;
    const hello = agent.hello!;
    state.record.agent = {
      name: agent.name,
      runtime: hello.agent.runtime,
      version: hello.agent.version,
      labels: hello.agent.labels,
      ...(hello.logs ? { logs: hello.logs } : {}),
    };
    state.record.assignedAt = new Date().toISOString();
    agent.assign(state.prepared.job);
    this.#setStatus(state, "assigned", agent.name);
    this.#logger.info("job assigned", { job: state.record.id, agent: agent.name });
  }

  #maybeProvision(state: JobState): void {
    const provisioner = this.#options.provisioner;
    if (!provisioner || state.provision || this.#stopping || !provisioner.accepts(state.record.labels))
      return;
    state.provisionAttempts++;
    const agentName = `${provisioner.kind}-${randomBytes(3).toString("hex")}`;
    const provision: NonNullable<JobState["provision"]> = { agentName };
    state.provision = provision;
    this.#leases.set(agentName, state.record.id);
    this.#logger.info("launching an agent", {
      job: state.record.id,
      agent: agentName,
      attempt: state.provisionAttempts,
    });
    const failed = (detail: string) => {
      clearTimeout(provision.timer);
      this.#leases.delete(agentName);
      if (state.provision !== provision) return;
      delete state.provision;
      if (state.record.status !== "queued") return;
      const log = provision.handle ? ` (agent log: ${provision.handle.logLocation})` : "";
      this.#logger.warn("launched agent did not take its job", {
        job: state.record.id,
        agent: agentName,
        detail,
      });
      if (state.provisionAttempts >= this.#options.maxProvisionAttempts) {
        this.#finish(state, "error", {
          reason: "provision-failed",
          cause: "platform",
          message: `no agent could be started after ${state.provisionAttempts} attempts; last: ${agentName} ${detail}${log}`,
        });
      } else this.#dispatch();
    };
    provisioner
      .provision({
        agentName,
        secret: this.secretFor(agentName),
        controllerUrl: this.#url,
        labels: state.record.labels,
        jobId: state.record.id,
      })
      .then(
        (handle) => {
          provision.handle = handle;
          provision.timer = setTimeout(() => {
            if (this.#agents.get(agentName)?.hello === undefined) void handle.stop();
          }, this.#options.provisionTimeoutMs);
          provision.timer.unref();
          void handle.exited.then(({ detail }) => {
            if (state.agent?.name !== agentName) failed(detail);
          });
        },
        (error: unknown) => failed(`could not be launched: ${(error as Error).message}`),
      );
  }

  #onAgentClosed(agent: AgentConnection, code: number, reason: string): void {
    if (this.#agents.get(agent.name) === agent) this.#agents.delete(agent.name);
    this.#logger.info("agent disconnected", {
      agent: agent.name,
      code,
      reason,
      superseded: agent.superseded,
    });
    const jobId = agent.job?.id;
    const state = jobId === undefined ? undefined : this.#jobs.get(jobId);
    if (agent.superseded || (state !== undefined && state.agent !== agent)) return;
    const resumable = isResumableClose(code);
    const started = state?.record.status === "running" || state?.record.status === "assigned";
    if (state !== undefined && started && resumable && !this.#stopping) {
      // The connection dropped mid-job: the agent keeps running it and resumes within the window.
      this.#logger.warn("agent connection lost mid-job; waiting for it to resume", {
        job: state.record.id,
        agent: agent.name,
        windowMs: this.#options.resumeWindowMs,
      });
      clearTimeout(state.lostTimer);
      state.lostTimer = setTimeout(() => {
        this.#finish(state, "error", {
          reason: "agent-lost",
          cause: "platform",
          message: `agent ${agent.name} disconnected (close code ${code}${reason ? `: ${reason}` : ""}) and did not resume within ${this.#options.resumeWindowMs} ms`,
        });
      }, this.#options.resumeWindowMs);
      state.lostTimer.unref();
      return;
    }
    if (
      state?.record.status === "assigned" &&
      !state.cancelRequested &&
      state.requeues < MAX_REQUEUES &&
      !this.#stopping
    ) {
      // Nothing ran yet (the agent left as the job arrived, e.g. its idle timeout crossed it): give it to another.
      state.requeues++;
      delete state.agent;
      delete state.record.agent;
      delete state.record.assignedAt;
      delete state.provision;
      this.#queue.unshift(state);
      this.#setStatus(state, "queued");
      this.#logger.warn("agent left before starting its job; requeued", {
        job: state.record.id,
        agent: agent.name,
      });
      this.#dispatch();
      return;
    }
    if (state && !TERMINAL_STATUSES.has(state.record.status)) {
      this.#finish(state, "error", {
        reason: "agent-lost",
        cause: "platform",
        message: `agent ${agent.name} disconnected before the job ended (close code ${code}${reason ? `: ${reason}` : ""})`,
      });
    }
  }

  #setStatus(state: JobState, status: JobStatus, agent?: string): void {
    state.record.status = status;
    state.files.appendEvent({
      type: "status",
      status,
      at: new Date().toISOString(),
      ...(agent ? { agent } : {}),
      ...(agent && state.record.agent?.logs ? { logs: state.record.agent.logs } : {}),
    });
    state.files.saveRecord(state.record);
  }

  #finish(
    state: JobState,
    status: JobStatus,
    details: { reason: JobReason; cause: FailureCause; message?: string; durationMs?: number },
  ): void {
    if (TERMINAL_STATUSES.has(state.record.status)) return;
    clearTimeout(state.lostTimer);
    const queueIndex = this.#queue.indexOf(state);
    if (queueIndex >= 0) this.#queue.splice(queueIndex, 1);
    const record = state.record;
    record.status = status;
    record.endedAt = new Date().toISOString();
    if (status !== "succeeded") {
      record.reason = details.reason;
      record.cause = details.cause;
    }
    if (details.message !== undefined) record.message = details.message;
    record.durationMs =
      details.durationMs ??
      (record.startedAt ? Date.parse(record.endedAt) - Date.parse(record.startedAt) : 0);
    for (const step of record.steps) {
      if (step.status === "pending") step.status = "skipped";
      else if (step.status === "running") step.status = "failed";
    }
    state.files.appendEvent({
      type: "job-end",
      status,
      ...(status !== "succeeded" ? { reason: details.reason, cause: details.cause } : {}),
      ...(details.message !== undefined ? { message: details.message } : {}),
      durationMs: record.durationMs,
    });
    state.files.saveRecord(record);
    state.files.close();
    this.#logger.info("job ended", { job: record.id, status, reason: record.reason });
    for (const waiter of state.waiters.splice(0)) waiter(record);
  }
}

function causeOf(reason: StepReason): FailureCause {
  return PLATFORM_REASONS.has(reason) ? "platform" : "user";
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
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

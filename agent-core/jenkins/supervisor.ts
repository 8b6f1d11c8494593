import { randomBytes } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { AgentOutcome, AgentTimings, RunAgentOptions } from "../agent.ts";
import { clip } from "../clip.ts";
import type { AgentConfig } from "../config/config.ts";
import { AgentError } from "../errors.ts";
import { ExitCode, interruptCode } from "../exit-codes.ts";
import type { Logger, LogLevel } from "../logger.ts";
import type { JobLogCopy } from "../logs/job-log.ts";
import { buildMaskSet } from "../logs/masker.ts";
import { type AgentJar, obtainAgentJar } from "./agent-jar.ts";
import { type CdsPlan, planClassDataSharing, remotingCommand } from "./command-line.ts";
import { findJava, type JavaRuntime } from "./java.ts";
import { type LimitedRunResult, type RunLimited, runLimited } from "./limited-run.ts";
import { memoryMb } from "./memory.ts";
import { type RemotingRun, remotingOutcome } from "./outcome.ts";
import { RemotingLog, type RemotingRecord, type RemotingState } from "./remoting-log.ts";

/** What the Jenkins mode did, for diagnostics, the Lambda summary and tests. */
export interface JenkinsRunReport {
  /** `X-Jenkins` of the controller, when discovery asked. */
  jenkinsVersion: string | null;
  remotingVersion: string | null;
  transport: "websocket" | "tcp" | "direct";
  connected: boolean;
  jar: Omit<AgentJar, "version"> | null;
  java: { bin: string; from: string; version: string | null } | null;
  /** Class-data sharing: the archive used, created by this run, or off. */
  cds: { archive: string; result: "used" | "created" | "not-created" } | null;
  heapMb: number | null;
  /** The java command line (never holds the secret: remoting reads it from a 0600 file). */
  argv: string[] | null;
  remotingExit: { code: number | null; signal: string | null } | null;
  peakRssBytes: number | null;
}

export interface JenkinsOutcome extends AgentOutcome {
  jenkins: JenkinsRunReport;
}

export interface JenkinsAgentOptions extends RunAgentOptions {
  /** `X-Jenkins` from discovery, when the mode was detected. */
  jenkinsVersion?: string;
  /** The process runner with the agent's limits (default: {@link runLimited}). */
  run?: RunLimited;
}

/** After remoting says `Terminated`, how long it may take to exit before it is stopped. */
const LINGER_MS = 5_000;
const MAX_LINE_CHARS = 4_000;
const JUL_LEVELS: Record<string, LogLevel> = { SEVERE: "error", WARNING: "warn", INFO: "info" };

/**
 * Runs the agent in Jenkins mode: supervises the controller's own remoting agent.jar on a JVM
 * started for one build. Gets the jar (cached per controller, revalidated), finds java, writes the
 * secret to a 0600 file (never an argument), starts remoting under the agent's limits (deadline,
 * disk budget, signals, every process it leaves stopped afterwards), follows its status lines and
 * maps the run to the agent's exit codes. Remoting's output goes through the same pipeline as a
 * job's: masked, copied to `copy` (the CloudWatch copy, when on), and into the diagnostics.
 * Called by `runAgent` (run-agent.ts), which holds the process open, masks the agent's secret in
 * `options.logger` and flushes the copy. Never throws for expected failures; the outcome carries
 * the exit code.
 */
export async function runJenkinsAgent(
  config: AgentConfig,
  options: JenkinsAgentOptions,
  copy: JobLogCopy | undefined,
): Promise<JenkinsOutcome> {
  const { logger } = options;
  const settings = config.jenkins;
  const timings: AgentTimings = { startedAt: Date.now() };
  const report: JenkinsRunReport = {
    jenkinsVersion: options.jenkinsVersion ?? null,
    remotingVersion: null,
    transport: settings.direct !== null ? "direct" : settings.webSocket ? "websocket" : "tcp",
    connected: false,
    jar: null,
    java: null,
    cds: null,
    heapMb: null,
    argv: null,
    remotingExit: null,
    peakRssBytes: null,
  };
  const end = (result: Omit<AgentOutcome, "timings">): JenkinsOutcome => {
    timings.endedAt = Date.now();
    copy?.lines.line(`=== ${result.summary}`);
    logger[result.exitCode === 0 ? "info" : "error"]("agent finished", {
      mode: "jenkins",
      exitCode: result.exitCode,
      summary: result.summary,
      code: result.error?.code,
    });
    return { ...result, timings, jenkins: report };
  };

  const cacheDir = join(config.workDir, "cache", "jenkins");
  // The jar download and the java lookup overlap; either failing ends the run.
  const fetching = new AbortController();
  const onInterrupt = () => fetching.abort();
  options.signal?.addEventListener("abort", onInterrupt, { once: true });
  let java: JavaRuntime;
  let jar: AgentJar;
  try {
    const jarPromise = obtainAgentJar({
      controllerUrl: config.url,
      cacheDir,
      agentFile: settings.agentFile,
      maxBytes: settings.jarMaxBytes,
      timeoutMs: Math.min(settings.jarFetchTimeoutMs, config.connectTimeoutMs),
      signal: fetching.signal,
      logger,
    });
    jarPromise.catch(() => {});
    java = await findJava({
      javaBin: settings.javaBin,
      javaHome: settings.javaHome,
      path: config.baseEnv.PATH,
    });
    jar = await jarPromise;
  } catch (error) {
    fetching.abort();
    if (options.signal?.aborted) {
      const summary = "interrupted before remoting started";
      return end({
        exitCode: interruptCode(options.signal),
        summary,
        error: new AgentError("AGENT_ERR_INTERRUPTED", summary, { cause: error }),
      });
    }
    const agentError =
      error instanceof AgentError
        ? error
        : new AgentError("AGENT_ERR_INTERNAL", String(error), { cause: error });
    const exitCode =
      agentError.code === "AGENT_ERR_NO_JAVA" ? ExitCode.badConfig : ExitCode.controllerFailure;
    return end({ exitCode, summary: agentError.message, error: agentError });
  } finally {
    options.signal?.removeEventListener("abort", onInterrupt);
  }
  report.java = { bin: java.bin, from: java.from, version: java.version };
  const { version: jarVersion, ...jarReport } = jar;
  report.jar = jarReport;
  report.remotingVersion = jarVersion;

  const runId = randomBytes(4).toString("hex");
  const cds = settings.classDataSharing ? planClassDataSharing(jar, java, cacheDir, runId) : null;
  const secretFile = join(config.workDir, `.remoting-secret-${runId}`);
  const platformMemoryMb = settings.memoryMb ?? memoryMb();
  const { argv, heapMb, secretFileLines } = remotingCommand({
    java,
    jar,
    settings,
    url: config.url,
    name: config.name,
    secretFile,
    workDir: config.workDir,
    memoryMb: platformMemoryMb,
    cds,
    ...(config.baseEnv.HOME ? { home: config.baseEnv.HOME } : {}),
    ...(config.baseEnv.TMPDIR ? { tmpDir: config.baseEnv.TMPDIR } : {}),
  });
  report.argv = argv;
  report.heapMb = heapMb;

  try {
    await mkdir(config.workDir, { recursive: true });
    if (cds?.action === "create") await mkdir(join(cds.archive, ".."), { recursive: true });
    // args4j's @file: one argument per line; the file is readable by this user only.
    await writeFile(secretFile, `${[config.secret, ...secretFileLines].join("\n")}\n`, {
      mode: 0o600,
      flag: "wx",
    });
  } catch (error) {
    const agentError = new AgentError(
      "AGENT_ERR_WORKSPACE",
      `cannot prepare ${config.workDir}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
    return end({ exitCode: ExitCode.controllerFailure, summary: agentError.message, error: agentError });
  }

  logger.info("starting remoting", {
    remotingVersion: jarVersion,
    jenkinsVersion: report.jenkinsVersion,
    transport: report.transport,
    jar: jarReport,
    java: report.java,
    cds: cds === null ? "off" : { action: cds.action, archive: cds.archive },
    heapMb,
    memoryMb: platformMemoryMb,
    argv,
    logCopy: copy?.location ?? null,
  });
  copy?.lines.line(
    `=== Jenkins agent ${config.name} for ${config.url}: remoting ${jarVersion ?? "(version unknown)"}, agent.jar from ${jar.source}, ${report.transport}`,
  );

  let run: LimitedRunResult;
  let state: RemotingState;
  let stoppedBecause: RemotingRun["stoppedBecause"];
  try {
    const secrets = [config.secret, ...secretFileLines.filter((_, i) => i % 2 === 1)];
    const watched = await watchRemoting(
      config,
      options,
      argv,
      secretFile,
      secrets,
      copy,
      (why) => {
        stoppedBecause ??= why;
      },
      timings,
    );
    run = watched.run;
    state = watched.state;
  } finally {
    await rm(secretFile, { force: true });
  }
  timings.jobEndedAt = Date.now();
  report.connected = state.connected;
  report.remotingVersion = state.version ?? jarVersion;
  report.remotingExit = run.started ? { code: run.exitCode, signal: run.signal } : null;
  report.peakRssBytes = run.peakRssBytes;
  if (cds !== null) report.cds = { archive: cds.archive, result: await settleArchive(cds, run, logger) };

  const result = remotingOutcome(
    { ...run, ...(stoppedBecause !== undefined ? { stoppedBecause } : {}) },
    state,
    {
      url: config.url,
      connectTimeoutMs: config.connectTimeoutMs,
      runtime: config.runtime,
      deadlineAt: config.deadlineAt,
      graceMs: config.graceMs,
      interruptedBy: typeof options.signal?.reason === "string" ? options.signal.reason : null,
    },
  );
  return end({ ...result, ...(result.error ? { error: result.error } : {}) });
}

/** Runs remoting and watches its status lines: stops it on a refusal, a connect timeout, or when it lingers after `Terminated`. */
async function watchRemoting(
  config: AgentConfig,
  options: JenkinsAgentOptions,
  argv: string[],
  secretFile: string,
  secrets: string[],
  copy: JobLogCopy | undefined,
  stoppedBecause: (why: NonNullable<RemotingRun["stoppedBecause"]>) => void,
  timings: AgentTimings,
): Promise<{ run: LimitedRunResult; state: RemotingState }> {
  const { logger } = options;
  const stop = new AbortController();
  const onInterrupt = () => stop.abort("interrupted");
  options.signal?.addEventListener("abort", onInterrupt, { once: true });
  if (options.signal?.aborted) onInterrupt();
  const timers: NodeJS.Timeout[] = [];
  const stopFor = (why: NonNullable<RemotingRun["stoppedBecause"]>) => {
    if (stop.signal.aborted) return;
    stoppedBecause(why);
    stop.abort("cancelled");
  };
  let secretRemoved = false;
  const log = new RemotingLog(
    (record) => diagnose(logger, record),
    (state) => {
      if (state.connected && timings.connectedAt === undefined) {
        timings.connectedAt = Date.now();
        timings.jobStartedAt = timings.connectedAt;
        for (const timer of timers.splice(0)) clearTimeout(timer);
        logger.info("remoting connected to the controller", {
          url: config.url,
          remotingVersion: state.version,
        });
      }
      if (!state.connected && state.refusal !== null) stopFor("refused");
      if (state.terminated) timers.push(setTimeout(() => stopFor("lingered"), LINGER_MS));
    },
  );
  const run = (options.run ?? runLimited)({
    argv,
    cwd: config.workDir,
    env: config.baseEnv,
    graceMs: config.graceMs,
    drainMs: config.drainMs,
    deadline: {
      deadlineAt: config.deadlineAt,
      graceMs: config.graceMs,
      stepStartMinMs: config.deadlineStepStartMinMs,
      runtime: config.runtime,
    },
    disk: {
      path: config.workDir,
      limitBytes: config.diskBudgetBytes,
      headroomBytes: config.diskHeadroomBytes,
    },
    monitorIntervalMs: config.monitorIntervalMs,
    mask: buildMaskSet(secrets),
    logger,
    signal: stop.signal,
    ...(options.killNow ? { killNow: options.killNow } : {}),
    onStart: () => {
      timers.push(setTimeout(() => stopFor("connect-timeout"), config.connectTimeoutMs));
    },
    onOutput: (stream, data) => {
      copy?.lines.output(stream, data);
      log.write(stream, data);
      if (!secretRemoved && stream === "stderr") {
        // remoting has parsed its arguments (and read the secret file) before it logs anything.
        secretRemoved = true;
        void rm(secretFile, { force: true });
      }
    },
  });
  try {
    const result = await run;
    log.end();
    return { run: result, state: log.state };
  } finally {
    for (const timer of timers) clearTimeout(timer);
    options.signal?.removeEventListener("abort", onInterrupt);
  }
}

/** One line of remoting's output as a diagnostic: its own level for log records, info otherwise. */
function diagnose(logger: Logger, record: RemotingRecord): void {
  const level = record.level === null ? "info" : (JUL_LEVELS[record.level] ?? "debug");
  logger[level](`remoting: ${clip(record.text, MAX_LINE_CHARS)}`, {
    stream: record.stream,
    ...(record.level !== null ? { remotingLevel: record.level } : {}),
    ...(record.source !== null ? { source: record.source } : {}),
  });
}

/** Keeps a class-data archive this run wrote at exit (JDK 17/18) when remoting ended by itself. */
async function settleArchive(
  cds: CdsPlan,
  run: LimitedRunResult,
  logger: Logger,
): Promise<"used" | "created" | "not-created"> {
  if (cds.action === "use") return "used";
  if (cds.pendingArchive === null) return existsSync(cds.archive) ? "created" : "not-created";
  const pending = cds.pendingArchive;
  const complete = run.started && run.signal === null && existsSync(pending) && statSync(pending).size > 0;
  try {
    if (complete) {
      await rename(pending, cds.archive);
      logger.info("class-data archive created for the next start", { archive: cds.archive });
      return "created";
    }
  } finally {
    await rm(pending, { force: true });
  }
  return "not-created";
}

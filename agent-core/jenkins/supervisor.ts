import { randomBytes } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { AgentOutcome, AgentTimings, RunAgentOptions } from "../agent.ts";
import { clip } from "../clip.ts";
import type { AgentConfig } from "../config/config.ts";
import { AgentError } from "../errors.ts";
import { interruptCode } from "../exit-codes.ts";
import type { Logger, LogLevel } from "../logger.ts";
import type { JobLogCopy } from "../logs/job-log.ts";
import { buildMaskSet } from "../logs/masker.ts";
import {
  type AgentJar,
  askForAgentJar,
  bakedJar,
  fallbackJar,
  type JarAnswer,
  type JarCache,
  readJarCache,
} from "./agent-jar.ts";
import { ArgsGate } from "./args-gate.ts";
import { type CdsPlan, planClassDataSharing, remotingCommand } from "./command-line.ts";
import { describeFetchError, underController, untilAnswered } from "./discovery.ts";
import { findJava, type JavaRuntime } from "./java.ts";
import { type LimitedRunResult, type RunLimited, runLimited } from "./limited-run.ts";
import { memoryMb } from "./memory.ts";
import { failureExitCode, type RemotingRun, remotingOutcome } from "./outcome.ts";
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
  /**
   * Auto mode: the controller must answer first (an unreachable one is retried until the connect
   * timeout), and an answer without `X-Jenkins` ends this with `mode: "native"`.
   */
  auto?: boolean;
  /** The process runner with the agent's limits (default: {@link runLimited}). */
  run?: RunLimited;
}

/** How Jenkins mode ended: with an outcome, or (auto mode) finding that the controller is not Jenkins. */
export type JenkinsResult =
  | { mode: "jenkins"; outcome: JenkinsOutcome }
  /** Auto mode: the controller answered without `X-Jenkins`; `how` says what it answered. */
  | { mode: "native"; how: string }
  /** Auto mode: the controller never answered (or the agent was interrupted first). */
  | { mode: null; outcome: JenkinsOutcome };

/** Answers of a gateway in front of a controller that is not there (yet), or of a Jenkins that is starting. */
const GATEWAY_STATUSES = new Set([502, 503, 504]);

/** After remoting says `Terminated`, how long it may take to exit before it is stopped. */
const LINGER_MS = 5_000;
const MAX_LINE_CHARS = 4_000;
const JUL_LEVELS: Record<string, LogLevel> = { SEVERE: "error", WARNING: "warn", INFO: "info" };

/**
 * Runs the agent in Jenkins mode: supervises the controller's own remoting agent.jar on a JVM
 * started for one build. One request to the controller (`GET <url>jnlpJars/agent.jar`,
 * conditional when a jar is cached) both tells, in auto mode, that it is Jenkins and gets or
 * revalidates the jar. With a cached jar, remoting's JVM starts at once, while that request is
 * in flight: it boots, then waits for its arguments (a named pipe, see {@link ArgsGate}) until
 * the answer confirms the jar, and is stopped unused when the jar changed or the controller is not
 * Jenkins. The secret reaches remoting through that pipe (or a 0600 file), never an argument.
 * remoting runs under the agent's limits (deadline, disk budget, signals, every process it leaves
 * stopped afterwards); its status lines decide the outcome, mapped to the agent's exit codes. Its
 * output goes through the same pipeline as a job's: masked, copied to `copy` (the CloudWatch
 * copy, when on), and into the diagnostics. Called by `runAgent` (run-agent.ts), which holds the
 * process open, masks the agent's secret in `options.logger` and flushes the copy. Never throws
 * for expected failures; the outcome carries the exit code.
 */
export async function runJenkinsAgent(
  config: AgentConfig,
  options: JenkinsAgentOptions,
  copy: JobLogCopy | undefined,
): Promise<JenkinsResult> {
  const { logger } = options;
  const settings = config.jenkins;
  const timings: AgentTimings = { startedAt: Date.now() };
  const report: JenkinsRunReport = {
    jenkinsVersion: null,
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
      // Auto mode that never had the controller's answer cannot tell what it is.
      mode: options.auto && !answered ? null : "jenkins",
      exitCode: result.exitCode,
      summary: result.summary,
      code: result.error?.code,
    });
    return { ...result, timings, jenkins: report };
  };
  const failed = (error: unknown): JenkinsOutcome => {
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
    return end({
      exitCode: failureExitCode(agentError.code),
      summary: agentError.message,
      error: agentError,
    });
  };

  let answered = false;
  const cacheDir = join(config.workDir, "cache", "jenkins");
  const javaLookup = findJava({
    javaBin: settings.javaBin,
    javaHome: settings.javaHome,
    path: config.baseEnv.PATH,
  });
  javaLookup.catch(() => {}); // awaited below, once the controller is known to be Jenkins
  let early: Remoting | undefined;
  let cache: JarCache;
  // The image's jar (JENKINS_AGENT_FILE) is run in place of the same jar from the controller: it
  // has the class-data archive built with the image (agent.jsa beside it).
  let baked: AgentJar | undefined;
  const preferBaked = (jar: AgentJar): AgentJar =>
    baked !== undefined && jar.source !== "image" && jar.sha256 === baked.sha256
      ? { ...baked, revalidated: jar.revalidated || jar.source === "controller" }
      : jar;
  try {
    await mkdir(config.workDir, { recursive: true });
    cache = await readJarCache(cacheDir, config.url);
    baked = await bakedJar(settings.agentFile);
    const candidate = cache.jar !== undefined ? preferBaked(cache.jar) : baked;
    if (candidate !== undefined && !options.signal?.aborted) {
      // Start ahead of the answer: the JVM boots while the controller is asked.
      const java = await javaLookup.catch(() => null);
      if (java !== null) early = await startRemoting(candidate, java, { gatedOnly: true });
    }
  } catch (error) {
    return {
      mode: "jenkins",
      outcome: failed(
        new AgentError(
          "AGENT_ERR_WORKSPACE",
          `cannot prepare ${config.workDir}: ${(error as Error).message}`,
          { cause: error },
        ),
      ),
    };
  }

  // One request: what the controller is, and its jar.
  const jarUrl = underController(config.url, "jnlpJars/agent.jar");
  const asking = new AbortController();
  const onInterrupt = () => asking.abort();
  options.signal?.addEventListener("abort", onInterrupt, { once: true });
  let answer: JarAnswer | undefined;
  let unanswered: string | undefined;
  // With a jar at hand (cached or baked), Jenkins mode does not wait for the controller: remoting
  // waits for it itself. Auto mode must have an answer to decide; so must a start with no jar.
  const jarAtHand = cache.jar !== undefined || baked !== undefined;
  const downloadTimeoutMs = Math.min(settings.jarFetchTimeoutMs, config.connectTimeoutMs);
  const ask = async (timeoutMs: number) => {
    const reply = await askForAgentJar({
      controllerUrl: config.url,
      cache,
      maxBytes: settings.jarMaxBytes,
      timeoutMs,
      downloadTimeoutMs,
      signal: asking.signal,
      jenkinsOnly: options.auto === true,
    });
    // A gateway's 502/503/504 (the controller behind it is down or restarting), or Jenkins'
    // own 503 while it starts, is no answer yet: asked again until the connect timeout.
    if (
      GATEWAY_STATUSES.has(reply.status) &&
      (reply.jenkinsVersion === null ? options.auto === true : !jarAtHand)
    ) {
      throw new Error(
        `${jarUrl} answered HTTP ${reply.status}${reply.jenkinsVersion === null ? " without X-Jenkins" : ""}`,
      );
    }
    return reply;
  };
  try {
    if (options.auto || !jarAtHand) {
      answer = await untilAnswered(jarUrl, ask, {
        timeoutMs: config.connectTimeoutMs,
        logger,
        signal: asking.signal,
      });
    } else {
      answer = await ask(Math.min(settings.jarFetchTimeoutMs, config.connectTimeoutMs)).catch(
        (error: unknown) => {
          if (asking.signal.aborted) throw error;
          unanswered = `${jarUrl}: ${describeFetchError(error)}`;
          return undefined;
        },
      );
    }
  } catch (error) {
    await early?.discard("the controller did not answer");
    return { mode: options.auto ? null : "jenkins", outcome: failed(error) };
  } finally {
    options.signal?.removeEventListener("abort", onInterrupt);
  }
  answered = answer !== undefined;
  if (options.auto && answer?.jenkinsVersion === null) {
    await early?.discard("the controller is not Jenkins");
    return { mode: "native", how: `${answer.failure ?? `HTTP ${answer.status}`} (not a Jenkins controller)` };
  }
  report.jenkinsVersion = answer?.jenkinsVersion ?? null;
  if (options.auto)
    logger.info("mode detected", {
      mode: "jenkins",
      how: `X-Jenkins: ${report.jenkinsVersion}`,
      url: config.url,
    });

  let remoting: Remoting;
  try {
    const jar = preferBaked(
      answer?.jar ??
        (await fallbackJar(cache, settings.agentFile, answer?.failure ?? unanswered ?? "no answer", logger)),
    );
    const java = await javaLookup;
    if (early !== undefined && early.jar.path === jar.path && early.jar.sha256 === jar.sha256) {
      remoting = early;
      early = undefined;
    } else {
      await early?.discard(`the controller serves another agent.jar (sha256 ${jar.sha256.slice(0, 16)})`);
      early = undefined;
      if (options.signal?.aborted) throw new AgentError("AGENT_ERR_INTERRUPTED", "interrupted");
      remoting = await startRemoting(jar, java, { gatedOnly: false });
    }
    remoting.jar = jar;
    // The early start had the cache's word for the jar; the answer has the controller's.
    const { version: _version, ...jarReport } = jar;
    report.jar = jarReport;
  } catch (error) {
    await early?.discard("the agent cannot go on");
    return { mode: "jenkins", outcome: failed(error) };
  }
  // Only now may remoting read its arguments (and the secret) and go on.
  await remoting.release();
  const { run, state, stoppedBecause } = await remoting.done;
  timings.jobEndedAt = Date.now();
  report.connected = state.connected;
  report.remotingVersion = state.version ?? remoting.jar.version;
  report.remotingExit = run.started ? { code: run.exitCode, signal: run.signal } : null;
  report.peakRssBytes = run.peakRssBytes;
  if (remoting.cds !== null) {
    report.cds = { archive: remoting.cds.archive, result: await settleArchive(remoting.cds, run, logger) };
  }
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
  return { mode: "jenkins", outcome: end({ ...result, ...(result.error ? { error: result.error } : {}) }) };

  /**
   * Starts remoting on `jar` with its arguments behind an {@link ArgsGate}. `gatedOnly`: start it
   * only when the gate is a named pipe (remoting then waits for `release`); otherwise undefined.
   */
  async function startRemoting(
    jar: AgentJar,
    java: JavaRuntime,
    how: { gatedOnly: true },
  ): Promise<Remoting | undefined>;
  async function startRemoting(
    jar: AgentJar,
    java: JavaRuntime,
    how: { gatedOnly: false },
  ): Promise<Remoting>;
  async function startRemoting(
    jar: AgentJar,
    java: JavaRuntime,
    how: { gatedOnly: boolean },
  ): Promise<Remoting | undefined> {
    const runId = randomBytes(4).toString("hex");
    const cds = settings.classDataSharing ? planClassDataSharing(jar, java, cacheDir, runId) : null;
    const argsPath = join(config.workDir, `.remoting-args-${runId}`);
    const platformMemoryMb = settings.memoryMb ?? memoryMb();
    const { argv, heapMb, secretFileLines } = remotingCommand({
      java,
      jar,
      settings,
      url: config.url,
      name: config.name,
      secretFile: argsPath,
      workDir: config.workDir,
      memoryMb: platformMemoryMb,
      cds,
      ...(config.baseEnv.HOME ? { home: config.baseEnv.HOME } : {}),
      ...(config.baseEnv.TMPDIR ? { tmpDir: config.baseEnv.TMPDIR } : {}),
    });
    const lines = [config.secret, ...secretFileLines];
    const gate = await ArgsGate.create(argsPath, lines);
    if (how.gatedOnly && !gate.gated) {
      await gate.remove();
      return undefined;
    }
    if (cds?.action === "create") await mkdir(dirname(cds.archive), { recursive: true });
    report.java = { bin: java.bin, from: java.from, version: java.version };
    const { version: jarVersion, ...jarReport } = jar;
    report.jar = jarReport;
    report.remotingVersion = jarVersion;
    report.argv = argv;
    report.heapMb = heapMb;
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
      // Its arguments wait for the controller's answer (the jar revalidated, Jenkins confirmed).
      waitsForAnswer: how.gatedOnly,
      logCopy: copy?.location ?? null,
      sinceStartMs: Date.now() - timings.startedAt,
    });
    const discarding = new AbortController();
    const secrets = [config.secret, ...secretFileLines.filter((_, i) => i % 2 === 1)];
    let stoppedBecause: RemotingRun["stoppedBecause"];
    let announced = false;
    const done = watchRemoting(
      config,
      options,
      argv,
      gate,
      secrets,
      copy,
      (why) => {
        stoppedBecause ??= why;
      },
      timings,
      discarding.signal,
    ).then(({ run, state }) => ({ run, state, stoppedBecause }));
    const exited = done.then(
      () => {},
      () => {},
    );
    return {
      jar,
      cds,
      done,
      async release() {
        if (!announced) {
          announced = true;
          copy?.lines.line(
            `=== Jenkins agent ${config.name} for ${config.url}: remoting ${jar.version ?? "(version unknown)"}, agent.jar from ${jar.source}, ${report.transport}`,
          );
        }
        await gate.release(lines, exited);
      },
      async discard(why: string) {
        logger.info("stopping the remoting started ahead of the answer, unused", { reason: why });
        discarding.abort();
        const { run } = await done;
        if (cds !== null) await settleArchive(cds, run, logger);
        await gate.remove();
      },
    };
  }
}

/** A remoting process started by the supervisor. */
interface Remoting {
  jar: AgentJar;
  cds: CdsPlan | null;
  done: Promise<{
    run: LimitedRunResult;
    state: RemotingState;
    stoppedBecause: RemotingRun["stoppedBecause"];
  }>;
  /** Lets remoting read its arguments and go on (it waits for them until then). */
  release(): Promise<void>;
  /** Kills a remoting that never got its arguments (it made no request), and removes its files. */
  discard(why: string): Promise<void>;
}

/** Runs remoting and watches its status lines: stops it on a refusal, a connect timeout, or when it lingers after `Terminated`. */
async function watchRemoting(
  config: AgentConfig,
  options: JenkinsAgentOptions,
  argv: string[],
  gate: ArgsGate,
  secrets: string[],
  copy: JobLogCopy | undefined,
  stoppedBecause: (why: NonNullable<RemotingRun["stoppedBecause"]>) => void,
  timings: AgentTimings,
  discard: AbortSignal,
): Promise<{ run: LimitedRunResult; state: RemotingState }> {
  const { logger } = options;
  const stop = new AbortController();
  const onInterrupt = () => stop.abort("interrupted");
  options.signal?.addEventListener("abort", onInterrupt, { once: true });
  if (options.signal?.aborted) onInterrupt();
  // A remoting discarded before it had its arguments has done nothing: no grace period.
  const killNow = options.killNow ? AbortSignal.any([options.killNow, discard]) : discard;
  const onDiscard = () => stop.abort("cancelled");
  discard.addEventListener("abort", onDiscard, { once: true });
  const timers: NodeJS.Timeout[] = [];
  const stopFor = (why: NonNullable<RemotingRun["stoppedBecause"]>) => {
    if (stop.signal.aborted) return;
    stoppedBecause(why);
    stop.abort("cancelled");
  };
  let argsRead = false;
  const log = new RemotingLog(
    (record) => {
      diagnose(logger, record);
      if (!argsRead && record.level !== null) {
        // remoting logs only once it has parsed its arguments (and read the secret). Any line
        // before that is the JVM's own (`Picked up JAVA_TOOL_OPTIONS`, a bad option): the
        // arguments file must stay until remoting has read it.
        argsRead = true;
        void gate.remove();
      }
    },
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
    killNow,
    onStart: () => {
      timers.push(setTimeout(() => stopFor("connect-timeout"), config.connectTimeoutMs));
    },
    onOutput: (stream, data) => {
      copy?.lines.output(stream, data);
      log.write(stream, data);
    },
  });
  try {
    const result = await run;
    log.end();
    return { run: result, state: log.state };
  } finally {
    for (const timer of timers) clearTimeout(timer);
    options.signal?.removeEventListener("abort", onInterrupt);
    discard.removeEventListener("abort", onDiscard);
    await gate.remove();
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

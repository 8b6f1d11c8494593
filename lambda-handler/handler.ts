import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Context, Handler } from "aws-lambda";
import type { CacheStore } from "../agent-core/index.ts";
import {
  AGENT_VERSION,
  AgentError,
  type AgentRunOutcome,
  buildMaskSet,
  ConfigError,
  createLogger,
  diskBudgetBytes,
  ExitCode,
  type Interrupts,
  type Logger,
  maskText,
  runAgent,
} from "../agent-core/start.ts";
import { type AgentInvocation, fromLambdaEvent } from "./event.ts";
import type { FunctionEnv } from "./function-env.ts";
import type { SmokeFunctionInfo, SmokeReport } from "./smoke.ts";
import { SmokeTestFailedError } from "./smoke-error.ts";
import { cleanWorkDir, prepareWorkDir, removeNewEntries, snapshotEntries } from "./work-dir.ts";

/** What an invocation returns: the invocation summary of an agent run, or the smoke test's report. */
export type InvocationResult = InvocationSummary | SmokeReport;

/**
 * The handler: an async `Handler` of `@types/aws-lambda` (it never uses the callback). The
 * context is Lambda's (`Context`), whether the Node.js runtime, the image's Runtime API loop
 * or `osls invoke local` made it.
 */
export type AgentHandler = (event: unknown, context: Context) => Promise<InvocationResult>;

/** One step of the job, as the summary reports it. */
export interface StepSummary {
  id: string;
  exitCode: number | null;
  signal: string | null;
  reason: string;
  durationMs: number;
  stdoutBytes: number;
  stderrBytes: number;
  message?: string;
}

/**
 * What an agent invocation returns: async invocations discard it (it is also logged as one JSON
 * line, `msg: "invocation summary"`); `aws lambda invoke`, `osls invoke` and tests read it.
 */
export interface InvocationSummary {
  agent: string;
  agentVersion: string;
  runtime: "lambda";
  jobId: string | null;
  /**
   * `succeeded` or `failed` (the job ran), `no-job` (released by the controller, or no job
   * within the idle timeout), `served` (Jenkins mode: remoting connected and served the controller
   * until it closed the channel; the build's own result is in Jenkins), or `error` (nothing could
   * be taken: controller unreachable, refused...).
   */
  result: "succeeded" | "failed" | "no-job" | "served" | "error";
  /** The mode the agent ran in (`auto` resolved); null when the controller could not be asked. */
  mode: "native" | "jenkins" | null;
  /** Jenkins mode: remoting's version and connection, the jar, java, class-data sharing, heap. */
  jenkins: {
    jenkinsVersion: string | null;
    remotingVersion: string | null;
    transport: string;
    connected: boolean;
    jar: { source: string; sha256: string; revalidated: boolean; fallbackReason: string | null } | null;
    java: string | null;
    cds: string | null;
    heapMb: number | null;
    remotingExit: { code: number | null; signal: string | null } | null;
  } | null;
  /** Why the job ended (`exit` when it ran to its end): exit, timeout, cancelled, deadline, disk, interrupted, error. */
  reason: string | null;
  exitCode: number;
  /** The exit code's name in the README's table: ok, jobFailed, deadline, ... */
  exitName: string;
  errorCode: string | null;
  summary: string;
  failedStepId: string | null;
  steps: StepSummary[];
  outputBytes: { stdout: number; stderr: number; total: number };
  /** Epoch ms and the spans between them: invoke -> connected -> job start -> job end -> returned. */
  timings: {
    invokedAt: number;
    connectedAt: number | null;
    jobStartedAt: number | null;
    jobEndedAt: number | null;
    returnedAt: number;
    connectMs: number | null;
    waitForJobMs: number | null;
    jobMs: number | null;
    totalMs: number;
  };
  limits: { deadlineAt: number; diskBudgetBytes: number | null };
  /** Where to look: the function's log group and stream (agent diagnostics), and the job's log on a reference controller. */
  logs: {
    group: string | null;
    stream: string | null;
    requestId: string | null;
    jobLog: string | null;
    /** The agent's CloudWatch copy of the job log: where, and what became of its lines. */
    cloudWatch: AgentRunOutcome["logs"] | null;
  };
}

/** What the handler may take from outside, for tests; every default is the real thing. */
export interface HandlerOptions {
  /** The function's environment, read at each invocation (default: process.env). */
  env?: () => FunctionEnv;
  /** Where diagnostics go, one JSON line each (default: stderr, which Lambda sends to CloudWatch). */
  write?: (line: string) => void;
  /**
   * The process's SIGTERM/SIGINT (the image's bootstrap passes its {@link trapSignals} trap):
   * the first signal interrupts the running agent as on ECS (the step stopped with its grace,
   * the job reported `interrupted`, the logs drained), the second kills the step at once. The
   * summary is still returned. Without it (the zip's Node.js runtime) only the deadline stops the agent.
   */
  interrupts?: Interrupts;
}

/**
 * Makes a Lambda handler. The module's `handler` is `createHandler()`; tests make their own with
 * a plain environment object. Nothing happens until an invocation.
 *
 * @example
 * const handler = createHandler({ env: () => ({ PATH: "/usr/bin:/bin", AGENT_DEADLINE_MARGIN_MS: "1000" }) });
 * const summary = await handler({ url, node_secret, node_name }, context);
 */
export function createHandler(options: HandlerOptions = {}): AgentHandler {
  const invoke = invocationRunner(options);
  return async (event, context) => {
    try {
      return await invoke(event, context);
    } catch (error) {
      throw asFunctionError(error);
    }
  };
}

/** The Lambda entry point (`dist/lambda/handler.handler`). */
export const handler: AgentHandler = createHandler() satisfies Handler<unknown, InvocationResult>;

function invocationRunner(options: HandlerOptions): AgentHandler {
  // Warm caches outlive an invocation: one store per work dir for as long as this process lives.
  const caches = new Map<string, CacheStore>();
  return async (event, context) => {
    const invokedAt = Date.now();
    // Nothing may keep this invocation alive once the agent is done: the agent closes its
    // connection and reaps its steps itself; whatever else is pending is not waited for.
    context.callbackWaitsForEmptyEventLoop = false;
    const env = options.env?.() ?? process.env;
    const write = options.write ?? ((line: string) => void process.stderr.write(line));
    const base = { requestId: context.awsRequestId || null };

    let invocation: ReturnType<typeof fromLambdaEvent>;
    try {
      invocation = fromLambdaEvent(event, {
        remainingMs: context.getRemainingTimeInMillis(),
        env,
        now: invokedAt,
      });
    } catch (error) {
      if (error instanceof ConfigError) {
        createLogger({ write, fields: base }).error("invalid invocation", {
          code: error.code,
          problems: error.problems,
        });
      }
      throw error;
    }

    const agentName = invocation.kind === "agent" ? invocation.config.name : (invocation.name ?? null);
    const secret = invocation.kind === "agent" ? invocation.config.secret : invocation.secret;
    const plain = createLogger({
      level: invocation.logLevel,
      write,
      fields: { ...base, ...(agentName !== null ? { agent: agentName } : {}) },
    });
    // Whatever a diagnostic quotes (a URL, a peer's message), the secret never reaches the logs,
    // in any of the forms the agent masks.
    const mask = buildMaskSet(secret === undefined ? [] : [secret]);
    const logger = mask.isEmpty ? plain : plain.redacting((line) => maskText(line, mask));
    for (const note of invocation.notes) logger.warn(note);
    if (invocation.cloudWatch.enabled) {
      // The SDK warns in plain text on Node < 22 (not on nodejs22.x): keep diagnostics JSON lines.
      process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
    }

    if (invocation.kind === "smoke") {
      // Loaded on demand, as the cache store below: neither is needed to import the handler.
      const { runSmokeTest } = await import("./smoke.ts");
      const report = await runSmokeTest(invocation, functionInfo(context, env));
      logger[report.ok ? "info" : "error"]("smoke test", { report });
      if (!report.ok) throw new SmokeTestFailedError(report);
      return report;
    }
    const root = join(invocation.config.workDir, "caches");
    if (!caches.has(root)) {
      const { CacheStore } = await import("../agent-core/index.ts");
      caches.set(root, new CacheStore({ root }));
    }
    return runInvocation(invocation, context, logger, invokedAt, caches.get(root)!, options.interrupts);
  };
}

/** Time kept after the agent returns for removing the work dir and returning the summary. */
const SUMMARY_RESERVE_MS = 1_000;

/** `errorType` of a Lambda function error is the error's `name`: stable names, whatever the bundler does to classes. */
const ERROR_TYPES: Partial<Record<string, string>> = {
  AGENT_ERR_CONFIG: "ConfigError",
  AGENT_ERR_WORKSPACE: "WorkspaceError",
  AGENT_ERR_INTERNAL: "InternalError",
};

/**
 * What the invocation fails with: a function error carries only `errorType` (the name) and
 * `errorMessage`, so the message starts with the stable code. ConfigError keeps its `problems`.
 */
function asFunctionError(error: unknown): Error {
  if (error instanceof SmokeTestFailedError) return error;
  const agentError =
    error instanceof AgentError
      ? error
      : new AgentError("AGENT_ERR_INTERNAL", error instanceof Error ? error.message : String(error), {
          cause: error,
        });
  const failure = agentError.message.startsWith(`${agentError.code}:`)
    ? agentError
    : new AgentError(agentError.code, `${agentError.code}: ${agentError.message}`, { cause: agentError });
  failure.name = ERROR_TYPES[failure.code] ?? "AgentError";
  return failure;
}

async function runInvocation(
  invocation: AgentInvocation,
  context: Context,
  logger: Logger,
  invokedAt: number,
  caches: CacheStore,
  interrupts: Interrupts | undefined,
): Promise<InvocationSummary> {
  const { layout, deadlineAt } = invocation;
  // When Lambda ends the invocation (no SIGTERM comes: the sandbox is frozen or killed).
  const invocationEndsAt = Date.now() + context.getRemainingTimeInMillis();
  const leftovers = await prepareWorkDir(layout);
  if (leftovers.length > 0)
    logger.warn("removed leftovers of an earlier invocation (stopped at its timeout?)", { leftovers });

  let outcome: AgentRunOutcome;
  // Trying to reach the controller past the deadline is pointless. (Waiting for a job is capped
  // by the agent itself: the deadline before a job ends the run with exit code 4.)
  const untilDeadline = Math.max(1, deadlineAt - Date.now());
  const memory = Number(context.memoryLimitInMB);
  const config = {
    ...invocation.config,
    connectTimeoutMs: Math.min(invocation.config.connectTimeoutMs, untilDeadline),
    jenkins: {
      ...invocation.config.jenkins,
      memoryMb:
        invocation.config.jenkins.memoryMb ?? (Number.isInteger(memory) && memory >= 64 ? memory : null),
    },
  };
  // A Jenkins node's remote FS root is /tmp (the plugin's): what its build leaves there is removed
  // after it, on Lambda only (LAMBDA_TASK_ROOT), where /tmp belongs to this function alone.
  const onLambda = invocation.onLambda;
  const tmpBefore = onLambda ? snapshotEntries(tmpdir()) : new Set<string>();
  // The job's disk budget on /tmp, as the agent computes it (reported in the summary).
  const budgetBytes = diskBudgetBytes(layout.root, config.diskBudgetBytes, config.diskHeadroomBytes);
  logger.info("agent starting", {
    url: config.url,
    labels: config.labels,
    deadlineAt: new Date(deadlineAt).toISOString(),
    diskBudgetBytes: budgetBytes,
  });

  // Last resort: the agent core stops the job before `deadlineAt` by itself (reason
  // "deadline"). Should it still be running at `deadlineAt`, it is interrupted as SIGTERM would,
  // so that the summary and the job's end still get out before Lambda freezes the sandbox.
  const backstop = new AbortController();
  const timer = setTimeout(() => {
    logger.error("the agent is still running at its deadline; interrupting it");
    backstop.abort("SIGTERM");
  }, untilDeadline);
  // A signal to the process stops the agent the same way (its reason, SIGTERM or SIGINT, is kept).
  interrupts?.setShutdownBudget(config.graceMs + config.drainMs);
  try {
    outcome = await runAgent(config, {
      logger,
      signal: interrupts ? AbortSignal.any([interrupts.signal, backstop.signal]) : backstop.signal,
      ...(interrupts ? { killNow: interrupts.killNow } : {}),
      cloudWatch: { settings: invocation.cloudWatch },
      // The margin after the deadline also carries the job's end and the summary.
      logFlushTimeoutMs: Math.max(1_000, Math.min(5_000, invocation.settings.deadlineMarginMs / 2)),
      // Whatever the controller does (never acknowledging, answering one byte a second), the
      // agent is done in time for the work dir's cleanup and the summary.
      returnBy: invocationEndsAt - SUMMARY_RESERVE_MS,
      caches,
    });
  } finally {
    clearTimeout(timer);
    await cleanWorkDir(layout);
  }
  if (onLambda && outcome.mode === "jenkins") {
    const removed = await removeNewEntries(tmpdir(), tmpBefore, [layout.root]);
    if (removed.length > 0) logger.info("removed what the Jenkins build left in /tmp", { removed });
  }

  const summary = summarize(invocation, outcome, context, invokedAt, budgetBytes);
  logger[summary.exitCode === ExitCode.ok ? "info" : "warn"]("invocation summary", { summary });
  return summary;
}

function summarize(
  invocation: AgentInvocation,
  outcome: AgentRunOutcome,
  context: Context,
  invokedAt: number,
  diskBudgetBytes: number,
): InvocationSummary {
  const { config } = invocation;
  const job = outcome.job;
  const steps: StepSummary[] = (job?.steps ?? []).map(({ id, outcome: s }) => ({
    id,
    exitCode: s.exitCode,
    signal: s.signal,
    reason: s.reason,
    durationMs: s.durationMs,
    stdoutBytes: s.stdoutBytes,
    stderrBytes: s.stderrBytes,
    ...(s.message !== undefined ? { message: s.message } : {}),
  }));
  const stdout = steps.reduce((sum, s) => sum + s.stdoutBytes, 0);
  const stderr = steps.reduce((sum, s) => sum + s.stderrBytes, 0);
  const t = outcome.timings;
  const returnedAt = Date.now();
  const span = (from: number | undefined, to: number | undefined) =>
    from === undefined || to === undefined ? null : to - from;
  const result: InvocationSummary["result"] =
    job !== undefined
      ? job.status
      : outcome.mode === "jenkins"
        ? outcome.exitCode === ExitCode.ok
          ? "served"
          : "error"
        : outcome.exitCode === ExitCode.ok || outcome.exitCode === ExitCode.idle
          ? "no-job"
          : "error";
  const jenkins = outcome.jenkins;
  return {
    agent: config.name,
    agentVersion: AGENT_VERSION,
    runtime: "lambda",
    jobId: outcome.jobId ?? null,
    result,
    mode: outcome.mode,
    jenkins:
      jenkins === undefined
        ? null
        : {
            jenkinsVersion: jenkins.jenkinsVersion,
            remotingVersion: jenkins.remotingVersion,
            transport: jenkins.transport,
            connected: jenkins.connected,
            jar:
              jenkins.jar === null
                ? null
                : {
                    source: jenkins.jar.source,
                    sha256: jenkins.jar.sha256,
                    revalidated: jenkins.jar.revalidated,
                    fallbackReason: jenkins.jar.fallbackReason ?? null,
                  },
            java: jenkins.java?.version ?? null,
            cds: jenkins.cds?.result ?? null,
            heapMb: jenkins.heapMb,
            remotingExit: jenkins.remotingExit,
          },
    reason: job?.reason ?? null,
    exitCode: outcome.exitCode,
    exitName: exitNameOf(outcome.exitCode),
    errorCode: outcome.error?.code ?? null,
    summary: outcome.summary,
    failedStepId: job?.failedStepId ?? null,
    steps,
    outputBytes: { stdout, stderr, total: stdout + stderr },
    timings: {
      invokedAt,
      connectedAt: t.connectedAt ?? null,
      jobStartedAt: t.jobStartedAt ?? null,
      jobEndedAt: t.jobEndedAt ?? null,
      returnedAt,
      connectMs: span(invokedAt, t.connectedAt),
      waitForJobMs: span(t.connectedAt, t.jobStartedAt),
      jobMs: span(t.jobStartedAt, t.jobEndedAt),
      totalMs: returnedAt - invokedAt,
    },
    limits: { deadlineAt: invocation.deadlineAt, diskBudgetBytes },
    logs: {
      group: context.logGroupName || null,
      stream: context.logStreamName || null,
      requestId: context.awsRequestId || null,
      jobLog: outcome.jobId === undefined ? null : jobLogUrl(config.url, outcome.jobId),
      cloudWatch: outcome.logs ?? null,
    },
  };
}

/** The job's raw log on a reference controller: `<url>/api/v1/jobs/<id>/log` over http(s). */
function jobLogUrl(controllerUrl: string, jobId: string): string {
  const url = new URL(controllerUrl);
  if (url.protocol === "ws:") url.protocol = "http:";
  else if (url.protocol === "wss:") url.protocol = "https:";
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  url.pathname += `api/v1/jobs/${encodeURIComponent(jobId)}/log`;
  url.search = "";
  url.hash = "";
  return url.toString();
}

function exitNameOf(code: number): string {
  return Object.entries(ExitCode).find(([, value]) => value === code)?.[0] ?? "unknown";
}

function functionInfo(context: Context, env: FunctionEnv): SmokeFunctionInfo {
  const memory = Number(context.memoryLimitInMB);
  return {
    name: context.functionName || null,
    version: context.functionVersion || null,
    memoryMb: Number.isFinite(memory) && memory > 0 ? memory : null,
    region: env.AWS_REGION ?? null,
    requestId: context.awsRequestId || null,
    logGroup: context.logGroupName || null,
    logStream: context.logStreamName || null,
  };
}

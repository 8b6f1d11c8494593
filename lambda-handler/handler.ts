import { type AgentOutcome, createLogger, runAgent } from "../agent-core/index.ts";
import { fromLambdaEvent } from "./event.ts";

/** The part of the Lambda context the handler uses. */
export interface LambdaContext {
  getRemainingTimeInMillis(): number;
  callbackWaitsForEmptyEventLoop?: boolean;
  awsRequestId?: string;
  logGroupName?: string;
  logStreamName?: string;
}

/** What an invocation returns (async invocations discard it; `invoke` and tests read it). */
export interface InvocationSummary {
  agent: string;
  jobId: string | null;
  exitCode: number;
  summary: string;
  status: string | null;
  reason: string | null;
  errorCode: string | null;
  steps: {
    id: string;
    exitCode: number | null;
    reason: string;
    durationMs: number;
    stdoutBytes: number;
    stderrBytes: number;
  }[];
  timings: AgentOutcome["timings"];
  logs: { group: string | null; stream: string | null };
}

const DEFAULT_MARGIN_MS = 20_000;

/**
 * Lambda entry point: one invocation runs one agent, which takes one job. The agent stops
 * itself `AGENT_DEADLINE_MARGIN_MS` (default 20 s) before the function's timeout.
 */
export async function handler(event: unknown, context: LambdaContext): Promise<InvocationSummary> {
  // Nothing may keep this invocation alive, or leak into the next one, once the agent is done.
  context.callbackWaitsForEmptyEventLoop = false;
  const marginMs = Number(process.env.AGENT_DEADLINE_MARGIN_MS ?? DEFAULT_MARGIN_MS);
  const config = fromLambdaEvent(event, {
    remainingMs: context.getRemainingTimeInMillis(),
    marginMs: Number.isFinite(marginMs) && marginMs >= 0 ? marginMs : DEFAULT_MARGIN_MS,
    env: process.env,
  });
  const logger = createLogger({
    level: "info",
    write: (line) => process.stderr.write(line),
    fields: { agent: config.name, ...(context.awsRequestId ? { requestId: context.awsRequestId } : {}) },
  });
  const outcome = await runAgent(config, { logger });
  return {
    agent: config.name,
    jobId: outcome.jobId ?? null,
    exitCode: outcome.exitCode,
    summary: outcome.summary,
    status: outcome.job?.status ?? null,
    reason: outcome.job?.reason ?? null,
    errorCode: outcome.error?.code ?? null,
    steps: (outcome.job?.steps ?? []).map(({ id, outcome: s }) => ({
      id,
      exitCode: s.exitCode,
      reason: s.reason,
      durationMs: s.durationMs,
      stdoutBytes: s.stdoutBytes,
      stderrBytes: s.stderrBytes,
    })),
    timings: outcome.timings,
    logs: { group: context.logGroupName ?? null, stream: context.logStreamName ?? null },
  };
}

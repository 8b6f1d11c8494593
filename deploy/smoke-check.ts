import { InvokeCommand, type InvokeCommandOutput, type LambdaClient } from "@aws-sdk/client-lambda";
import type { SmokeCheck, SmokeReport } from "../lambda-handler/index.ts";
import { DeployError } from "./errors.ts";
import { awsError } from "./lambda-api.ts";

/** What to ask the smoke test for: the controller check when a URL is given (with credentials: authenticated). */
export interface SmokeRequest {
  controllerUrl?: string;
  nodeName?: string;
  nodeSecret?: string;
}

/** The verdict on one version: the handler's report, or the function error that stood in for it. */
export interface SmokeOutcome {
  ok: boolean;
  /** The version asked for, and the one Lambda says ran (they must match). */
  version: string;
  executedVersion: string | null;
  /** One line: the report's summary, or what went wrong instead. */
  summary: string;
  /** The smoke report, when the handler produced one (passed or failed). */
  report: SmokeReport | null;
  /** A function error that is not a smoke report (init failure, timeout, crash). */
  functionError: { errorType: string; errorMessage: string } | null;
  /** The end of the invocation's log (LogType Tail: up to 4 KB). */
  logTail: string;
  durationMs: number;
}

/** The smoke-mode event for a request; the secret travels only in the payload. */
export function smokeEvent(request: SmokeRequest): Record<string, unknown> {
  return {
    smoke: true,
    ...(request.controllerUrl !== undefined ? { url: request.controllerUrl } : {}),
    ...(request.nodeName !== undefined ? { node_name: request.nodeName } : {}),
    ...(request.nodeSecret !== undefined ? { node_secret: request.nodeSecret } : {}),
  };
}

/**
 * Invokes `version` of the function synchronously in smoke mode (the handler's self-test: /tmp,
 * tools, the controller when asked, CloudWatch) and reads the verdict. Never throws for a bad
 * version: a function error, a timeout or a payload that is not a smoke report is a failed
 * outcome. Throws a DeployError (DEPLOY_ERR_AWS) when the Invoke call itself fails, or when no
 * answer came within `timeoutMs` (the function's timeout plus a grace: Lambda answers a synchronous
 * invoke by then, so a longer wait is a lost request; the bound covers the SDK's retries too).
 *
 * @example
 * const outcome = await smokeCheck(client, "jnlp-agent-git-bash", "5", { controllerUrl });
 * if (!outcome.ok) console.error(formatSmoke(outcome));
 */
export async function smokeCheck(
  client: LambdaClient,
  functionName: string,
  version: string,
  request: SmokeRequest,
  signal?: AbortSignal,
  timeoutMs?: number,
): Promise<SmokeOutcome> {
  const started = performance.now();
  const bound = timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs);
  const abortSignal = signal && bound ? AbortSignal.any([signal, bound]) : (signal ?? bound);
  let output: InvokeCommandOutput;
  try {
    output = await client.send(
      new InvokeCommand({
        FunctionName: functionName,
        Qualifier: version,
        InvocationType: "RequestResponse",
        LogType: "Tail",
        Payload: Buffer.from(JSON.stringify(smokeEvent(request))),
      }),
      abortSignal ? { abortSignal } : {},
    );
  } catch (error) {
    if (bound?.aborted && !signal?.aborted) {
      throw new DeployError(
        "DEPLOY_ERR_AWS",
        `Invoke ${functionName}:${version} got no answer within ${timeoutMs! / 1000} s (the function's timeout and a grace): the request or the connection was lost`,
        { cause: error },
      );
    }
    throw awsError("Invoke", `${functionName}:${version}`, error);
  }
  const durationMs = Math.round(performance.now() - started);
  const text = Buffer.from(output.Payload ?? new Uint8Array()).toString("utf8");
  const logTail = output.LogResult ? Buffer.from(output.LogResult, "base64").toString("utf8") : "";
  const executedVersion = output.ExecutedVersion ?? null;
  const base = { version, executedVersion, logTail, durationMs };
  if (executedVersion !== null && executedVersion !== version) {
    return {
      ...base,
      ok: false,
      summary: `Lambda ran version ${executedVersion}, not ${version}`,
      report: null,
      functionError: null,
    };
  }
  let payload: unknown;
  try {
    payload = text === "" ? null : JSON.parse(text);
  } catch {
    payload = text;
  }
  if (output.FunctionError) {
    const error = payload as { errorType?: unknown; errorMessage?: unknown } | null;
    const errorType = typeof error?.errorType === "string" ? error.errorType : output.FunctionError;
    const errorMessage = typeof error?.errorMessage === "string" ? error.errorMessage : text;
    const report = reportInError(errorMessage);
    if (report) return { ...base, ok: false, summary: report.summary, report, functionError: null };
    return {
      ...base,
      ok: false,
      summary: `the invocation failed: ${errorType}: ${errorMessage.split("\n")[0]}`,
      report: null,
      functionError: { errorType, errorMessage },
    };
  }
  if (!isSmokeReport(payload)) {
    return {
      ...base,
      ok: false,
      summary:
        "the version answered the smoke event without a smoke report (does its handler have a smoke mode?)",
      report: null,
      functionError: null,
    };
  }
  return { ...base, ok: payload.ok, summary: payload.summary, report: payload, functionError: null };
}

/** A failed smoke test's error message: `AGENT_ERR_SMOKE_FAILED: <summary>\n<report JSON>`. */
function reportInError(message: string): SmokeReport | null {
  if (!message.startsWith("AGENT_ERR_SMOKE_FAILED:")) return null;
  const newline = message.indexOf("\n");
  if (newline < 0) return null;
  try {
    const report: unknown = JSON.parse(message.slice(newline + 1));
    return isSmokeReport(report) ? report : null;
  } catch {
    return null;
  }
}

function isSmokeReport(value: unknown): value is SmokeReport {
  const report = value as Partial<SmokeReport> | null;
  return (
    report !== null &&
    typeof report === "object" &&
    report.smoke === true &&
    typeof report.ok === "boolean" &&
    typeof report.summary === "string" &&
    Array.isArray(report.checks)
  );
}

/** The outcome for people: the summary, then one line per check (or the error and the log's tail). */
export function formatSmoke(outcome: SmokeOutcome): string {
  const lines = [`smoke test of version ${outcome.version}: ${outcome.summary}`];
  for (const check of outcome.report?.checks ?? [])
    lines.push(`  ${mark(check)} ${check.name}: ${check.detail}`);
  if (outcome.functionError) {
    lines.push(`  ${outcome.functionError.errorType}: ${outcome.functionError.errorMessage.split("\n")[0]}`);
  }
  if (!outcome.ok && outcome.report === null && outcome.logTail.trim() !== "") {
    lines.push("  end of the invocation's log:");
    for (const line of outcome.logTail.trimEnd().split("\n").slice(-15)) lines.push(`    ${line}`);
  }
  return lines.join("\n");
}

function mark(check: SmokeCheck): string {
  if (check.skipped) return "-";
  return check.ok ? "ok" : "FAIL";
}

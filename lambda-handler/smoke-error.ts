import type { SmokeReport } from "./smoke.ts";

/**
 * A smoke test found a problem: the invocation fails (a function error) so that a deployment
 * pipeline's health check fails. The message starts with the code and the summary, then the
 * whole report as JSON (a Lambda function error carries only `errorType` and `errorMessage`).
 * Its own module: the handler checks for it without loading the smoke test at import.
 */
export class SmokeTestFailedError extends Error {
  readonly code = "AGENT_ERR_SMOKE_FAILED";
  readonly report: SmokeReport;

  constructor(report: SmokeReport) {
    super(`AGENT_ERR_SMOKE_FAILED: ${report.summary}\n${JSON.stringify(report)}`);
    this.name = "SmokeTestFailedError";
    this.report = report;
  }
}

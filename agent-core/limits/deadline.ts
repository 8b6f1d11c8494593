import type { RuntimeKind } from "../protocol/messages.ts";

/**
 * The platform deadline as the runner sees it. `deadlineAt` is when the running step must be
 * gone: it gets SIGTERM at `deadlineAt - graceMs` and SIGKILL at `deadlineAt`, which leaves the
 * wrapper's margin (Lambda: AGENT_DEADLINE_MARGIN_MS) to report the job and flush logs.
 */
export interface DeadlinePlan {
  deadlineAt: number | null;
  graceMs: number;
  /** A step is not started when less than this remains before the step would be stopped. */
  stepStartMinMs: number;
  runtime: RuntimeKind;
}

/** Milliseconds until the running step must be told to stop, or null without a deadline. */
export function msUntilStop(plan: DeadlinePlan, now = Date.now()): number | null {
  return plan.deadlineAt === null ? null : plan.deadlineAt - plan.graceMs - now;
}

/** Whether a new step may start now; when not, how much time was left. */
export function mayStartStep(
  plan: DeadlinePlan,
  now = Date.now(),
): { ok: true } | { ok: false; remainingMs: number } {
  const remainingMs = msUntilStop(plan, now);
  if (remainingMs === null || remainingMs >= plan.stepStartMinMs) return { ok: true };
  return { ok: false, remainingMs: Math.max(0, remainingMs) };
}

const ADVICE: Record<RuntimeKind, string> = {
  lambda:
    "Lambda stops a function after its timeout (at most 900 s). To fix it: raise the function's timeout, split the job into shorter jobs, or route it to a container label (ECS/Fargate has no such limit).",
  ecs: "This agent was started with a maximum duration (AGENT_MAX_DURATION_MS). To fix it: raise that limit, or split the job into shorter jobs.",
  local:
    "This agent was started with a maximum duration. To fix it: raise that limit, or split the job into shorter jobs.",
};

/** The plain-words explanation written into the job's log when the deadline ends a job. */
export function deadlineMessage(
  plan: DeadlinePlan,
  what: { stepId: string; started: boolean; remainingMs?: number },
): string {
  const at = plan.deadlineAt === null ? "" : ` (${new Date(plan.deadlineAt).toISOString()})`;
  const head = what.started
    ? `The platform's deadline${at} was reached while step ${what.stepId} was running: it was stopped (SIGTERM, then SIGKILL after ${plan.graceMs} ms) so that its logs and result could still be reported.`
    : `Step ${what.stepId} was not started: only ${Math.round((what.remainingMs ?? 0) / 1000)} s were left before the platform's deadline${at}, less than the ${Math.round(plan.stepStartMinMs / 1000)} s a step is given at least.`;
  return `${head} ${ADVICE[plan.runtime]}`;
}

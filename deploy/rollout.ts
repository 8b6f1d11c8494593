import {
  type AliasConfiguration,
  CreateAliasCommand,
  type FunctionConfiguration,
  GetAliasCommand,
  GetFunctionCommand,
  type LambdaClient,
  PublishVersionCommand,
  UpdateAliasCommand,
  UpdateFunctionCodeCommand,
  waitUntilFunctionUpdatedV2,
  waitUntilPublishedVersionActive,
} from "@aws-sdk/client-lambda";
import { type Artifact, checkArtifactFits } from "./artifact.ts";
import { DeployError, type DeployErrorCode } from "./errors.ts";
import { awsError, awsFailure, isAwsError } from "./lambda-api.ts";
import {
  type DeploymentRecord,
  decodeRecord,
  describeRecord,
  encodeRecord,
  holdExpired,
  recordTime,
  recordToken,
} from "./record.ts";
import { formatSmoke, type SmokeOutcome, type SmokeRequest, smokeCheck } from "./smoke-check.ts";

/** What every operation needs: the client, where progress goes, and who is acting. */
export interface RolloutContext {
  client: LambdaClient;
  /** Progress for people, one line (or block) at a time. */
  log: (text: string) => void;
  /** Aborts a deploy (SIGINT, SIGTERM): the alias is put back before it returns. */
  signal?: AbortSignal;
  /** Who deploys, as the record shows it (`ci@runner-3`). */
  by: string;
  /** Identifies this run in the record (a few hex digits). */
  runId: string;
  /** How often to poll a function whose code update or version is not ready yet (seconds). */
  pollSeconds: number;
  /** Longest wait for a code update or a new version to be ready (seconds). */
  maxWaitSeconds: number;
  /**
   * How long past the function's timeout a smoke invocation may go unanswered before it is given
   * up as lost (ms, default 30,000).
   */
  smokeGraceMs?: number;
  now?: () => number;
}

export interface DeployRequest {
  functionName: string;
  /** The alias callers invoke (`live`). */
  alias: string;
  /** Code to upload first; without it, $LATEST (as `osls deploy` left it) is published. */
  artifact?: Artifact;
  smoke: SmokeRequest;
  /** Shares of traffic (percent, ascending, 1-99) the new version gets before all of it; [] = at once. */
  steps: number[];
  /** Time at each step before its check (ms). */
  stepWaitMs: number;
  /** How long the deploy holds the alias against other deploys (ms); a crashed deploy's hold expires. */
  leaseMs: number;
  /** The run id of a dead deploy whose hold this one takes over before it expires (`--break-hold`). */
  breakHold?: string;
}

export interface RollbackRequest {
  functionName: string;
  alias: string;
  /** The version to go back to (default: the record's `previous`). */
  to?: string;
  /** Smoke-check the version before moving the alias to it. */
  check: boolean;
  smoke: SmokeRequest;
  /** The run id of a dead deploy whose hold this rollback takes over before it expires (`--break-hold`). */
  breakHold?: string;
}

/**
 * What happened to one function. `outcome`: `promoted` (the alias serves the new version),
 * `unchanged` (nothing new to publish: the alias already served it), `rolled-back`, `failed`
 * (the new version failed its check: the alias is on `previous`), `interrupted`, `refused`
 * (another deploy holds the alias), `error` (an AWS call or the input failed; the alias was not
 * moved, or was put back), `restore-failed` (the alias may still send traffic to an unchecked
 * version).
 */
export interface RolloutResult {
  functionName: string;
  alias: string;
  operation: "deploy" | "rollback";
  outcome:
    | "promoted"
    | "unchanged"
    | "rolled-back"
    | "failed"
    | "interrupted"
    | "refused"
    | "error"
    | "restore-failed";
  /** The version the alias served before. */
  previous: string | null;
  /** The version deployed (or rolled back to). */
  version: string | null;
  /** The version the alias serves now, as far as this run knows. */
  live: string | null;
  smoke: SmokeOutcome[];
  /** The record now in the alias's description. */
  record: DeploymentRecord | null;
  error: { code: DeployErrorCode; message: string } | null;
  durationMs: number;
}

/** A function's alias as `status` reports it. */
export interface AliasStatus {
  functionName: string;
  alias: string;
  /** Null when the alias does not exist. */
  version: string | null;
  /** Extra version -> share of traffic (0-1), during a stepped deploy. */
  weights: Record<string, number>;
  record: DeploymentRecord | null;
  /** The description as stored (when it is not a record, someone else wrote it). */
  description: string;
  /** The human reading of the record. */
  summary: string;
}

/**
 * Deploys one function safely: holds its alias (a conditional UpdateAlias on the alias's
 * RevisionId, refused while another deploy holds it), uploads the artifact if given and
 * publishes a version, smoke-checks that version (synchronous Invoke with the version as
 * qualifier), shifts traffic in `steps` with a check after each, and points the alias at it.
 * On any failure the alias is put back on the version it served, with the reason in its record.
 * Never throws for a deploy that fails: the result says (`outcome`, `error`).
 *
 * @example
 * const result = await deployFunction(ctx, { functionName: "jnlp-agent-git-bash", alias: "live", smoke: {}, steps: [], stepWaitMs: 0, leaseMs: 1_800_000 });
 * if (result.outcome !== "promoted" && result.outcome !== "unchanged") process.exitCode = 1;
 */
export async function deployFunction(ctx: RolloutContext, request: DeployRequest): Promise<RolloutResult> {
  const now = ctx.now ?? Date.now;
  const started = now();
  const { functionName, alias: aliasName } = request;
  const label = `${functionName}:${aliasName}`;
  const result = emptyResult(functionName, aliasName, "deploy");
  let handle: AliasHandle | undefined;
  let before: DeploymentRecord | null = null;
  let originalDescription = "";
  /** Set once the new version may have served traffic or failed its check: restoring then records a failure. */
  let exposed = false;
  /** The hold's record while the deploy runs (`version`: the new version, `-` before it is published). */
  const holding = (version: string) =>
    encodeRecord(
      deployingRecord(
        ctx,
        request,
        result.previous!,
        version,
        carriedPrevious(before, result.previous),
        started,
      ),
    );
  try {
    const fn = await preflightDeploy(ctx, request);
    const alias = await getAlias(ctx.client, functionName, aliasName);
    if (alias) {
      originalDescription = alias.Description ?? "";
      before = decodeRecord(alias.Description);
      refuseIfHeld(ctx, alias, before, now(), label, request.breakHold);
      result.previous = alias.FunctionVersion ?? null;
      result.live = result.previous;
      ctx.log(`${label} serves version ${result.previous}${before ? `: ${describeRecord(before)}` : ""}`);
      handle = new AliasHandle(ctx.client, functionName, aliasName, alias.RevisionId!);
      await handle.update(result.previous!, {}, holding("-"), "hold the alias");
    } else {
      ctx.log(
        `${label} does not exist yet: it will be created on the new version once that passes its check`,
      );
    }

    const version = await publish(ctx, request, fn);
    result.version = version;
    ctx.signal?.throwIfAborted();
    if (handle) await handle.update(result.previous!, {}, holding(version), "record the new version");

    exposed = true;
    await check(ctx, request, result, version, fn.Timeout);

    if (version === result.previous) {
      // Nothing new: release the hold as it was.
      exposed = false;
      ctx.log(`${label} already serves version ${version}: nothing to promote`);
      await handle!.update(
        version,
        {},
        restoredDescription(originalDescription, before),
        "release the alias",
      );
      result.outcome = "unchanged";
      result.record = before;
      return result;
    }

    const previous = result.previous;
    const canStep = handle !== undefined && previous !== null && previous !== "$LATEST";
    if (request.steps.length > 0 && !canStep) {
      ctx.log(`${label}: no version to share traffic with (${previous ?? "no alias"}): promoting at once`);
    }
    if (canStep) {
      for (const percent of request.steps) {
        await handle!.update(
          previous,
          { [version]: percent / 100 },
          holding(version),
          `send ${percent}% to version ${version}`,
        );
        result.live = previous;
        ctx.log(
          `${label}: ${percent}% of invocations go to version ${version}, ${100 - percent}% to ${previous}`,
        );
        await sleep(request.stepWaitMs, ctx.signal);
        await check(ctx, request, result, version, fn.Timeout, `${percent}%`);
      }
    }

    const record: DeploymentRecord = {
      state: "promoted",
      live: version,
      version,
      previous: previous === null || previous === "$LATEST" ? null : previous,
      at: recordTime(now()),
      by: recordToken(ctx.by),
      id: ctx.runId,
    };
    if (handle) {
      await handle.update(version, {}, encodeRecord(record), `point ${aliasName} at version ${version}`);
    } else {
      await createAlias(ctx.client, functionName, aliasName, version, encodeRecord(record));
    }
    result.outcome = "promoted";
    result.live = version;
    result.record = record;
    ctx.log(`${label} now serves version ${version}${previous ? ` (was ${previous})` : ""}`);
    return result;
  } catch (error) {
    const failure = asDeployError(error, ctx.signal);
    result.error = { code: failure.code, message: failure.message };
    result.outcome = outcomeOf(failure.code);
    ctx.log(`${label}: ${failure.message}`);
    if (handle?.held && result.previous !== null) {
      await restore(ctx, result, handle, {
        description: exposed
          ? encodeRecord({
              state: "failed",
              live: result.previous,
              version: result.version ?? "-",
              previous: carriedPrevious(before, result.previous),
              at: recordTime(now()),
              by: recordToken(ctx.by),
              id: ctx.runId,
              reason: failure.code === "DEPLOY_ERR_SMOKE_FAILED" ? lastSummary(result) : failure.message,
            })
          : restoredDescription(originalDescription, before),
      });
    }
    return result;
  } finally {
    result.durationMs = now() - started;
  }
}

/**
 * Checks, before anything changes, that a deploy of `request` can run: the function exists, the
 * hold (`leaseMs`) outlasts a step's wait and a smoke invocation, and the artifact, if any, fits
 * the function's package type and handler. Run it for every function before deploying any, so
 * that a bad input leaves all of them alone. Returns the function's configuration; throws a
 * DeployError (DEPLOY_ERR_USAGE, DEPLOY_ERR_ARTIFACT, DEPLOY_ERR_AWS).
 */
export async function preflightDeploy(
  ctx: RolloutContext,
  request: DeployRequest,
): Promise<FunctionConfiguration> {
  const fn = await getFunction(ctx.client, request.functionName);
  checkLease(request, fn, `${request.functionName}:${request.alias}`);
  if (request.artifact) {
    checkArtifactFits(request.artifact, request.functionName, fn.PackageType, fn.Handler);
  }
  return fn;
}

/**
 * Moves the alias back to `request.to`, or to the version the last deploy replaced (its record's
 * `previous`), with a conditional UpdateAlias; refused while a deploy holds the alias (unless
 * `breakHold` names it). After a deploy that died (its hold expired, or broken), rollback undoes
 * that deploy: the alias stays on the version it served, its traffic split is cleared, and the
 * record's `previous` is kept for the next rollback. With `check`, the version is smoke-checked
 * first. Never throws: the result says.
 */
export async function rollbackFunction(
  ctx: RolloutContext,
  request: RollbackRequest,
): Promise<RolloutResult> {
  const now = ctx.now ?? Date.now;
  const started = now();
  const { functionName, alias: aliasName } = request;
  const label = `${functionName}:${aliasName}`;
  const result = emptyResult(functionName, aliasName, "rollback");
  try {
    const alias = await getAlias(ctx.client, functionName, aliasName);
    if (!alias) {
      throw new DeployError(
        "DEPLOY_ERR_NOTHING_TO_ROLL_BACK",
        `${label} does not exist: nothing to roll back`,
      );
    }
    const record = decodeRecord(alias.Description);
    refuseIfHeld(ctx, alias, record, now(), label, request.breakHold);
    const current = alias.FunctionVersion!;
    result.previous = current;
    result.live = current;
    // A deploy that died (hold expired or broken) is what this rollback undoes; with --to, its hold
    // is released all the same.
    const held = record?.state === "deploying" ? record : null;
    const unfinished = held && request.to === undefined ? held : null;
    const target =
      request.to ??
      (unfinished ? unfinishedTarget(unfinished, current, label) : recordedTarget(record, current, label));
    result.version = target;
    const weights = alias.RoutingConfig?.AdditionalVersionWeights ?? {};
    if (target === current && Object.keys(weights).length === 0 && !held) {
      ctx.log(`${label} already serves version ${target}`);
      result.outcome = "unchanged";
      result.record = record;
      return result;
    }
    // The version must exist (a typo in --to is not a rollback).
    const targetConfig = await getFunction(ctx.client, functionName, target).catch((error: unknown) => {
      if (error instanceof DeployError && isAwsError(error.cause, "ResourceNotFoundException")) {
        throw new DeployError(
          "DEPLOY_ERR_NOTHING_TO_ROLL_BACK",
          `version ${target} of ${functionName} does not exist: nothing to roll back to`,
          { cause: error },
        );
      }
      throw error;
    });
    if (request.check) await check(ctx, request, result, target, targetConfig.Timeout);
    const rolledBack: DeploymentRecord = {
      state: "rolled-back",
      live: target,
      version: unfinished ? unfinished.version : current,
      previous: unfinished ? unfinished.previous : null,
      at: recordTime(now()),
      by: recordToken(ctx.by),
      id: ctx.runId,
    };
    const handle = new AliasHandle(ctx.client, functionName, aliasName, alias.RevisionId!);
    await handle.update(target, {}, encodeRecord(rolledBack), `point ${aliasName} at version ${target}`);
    result.outcome = "rolled-back";
    result.live = target;
    result.record = rolledBack;
    ctx.log(
      `${label} now serves version ${target} (rolled back from ${rolledBackFrom(rolledBack, current)})`,
    );
  } catch (error) {
    const failure = asDeployError(error, ctx.signal);
    result.error = { code: failure.code, message: failure.message };
    result.outcome = outcomeOf(failure.code);
    ctx.log(`${label}: ${failure.message}`);
  } finally {
    result.durationMs = now() - started;
  }
  return result;
}

/** What a rollback left, for people: the version, or the unfinished deploy it undid (`version 5's unfinished deploy`). */
export function rolledBackFrom(record: DeploymentRecord | null, current: string | null): string {
  if (record === null || record.version === current) return current ?? "?";
  return record.version === "-" ? "an unfinished deploy" : `version ${record.version}'s unfinished deploy`;
}

/** Reads a function's alias and its record. Throws DeployError (DEPLOY_ERR_AWS) when the call fails. */
export async function aliasStatus(
  ctx: RolloutContext,
  functionName: string,
  aliasName: string,
): Promise<AliasStatus> {
  const alias = await getAlias(ctx.client, functionName, aliasName);
  const record = decodeRecord(alias?.Description);
  const weights = alias?.RoutingConfig?.AdditionalVersionWeights ?? {};
  const split = Object.entries(weights)
    .map(([version, weight]) => `, ${Math.round(weight * 100)}% to version ${version}`)
    .join("");
  // A new stack's alias is on $LATEST: whatever `osls deploy` uploads is live at once, unchecked.
  const unchecked =
    alias?.FunctionVersion === "$LATEST"
      ? " (unchecked: $LATEST; run deploy to check and pin a version)"
      : "";
  const summary = !alias
    ? `${functionName}:${aliasName} does not exist`
    : `${functionName}:${aliasName} serves version ${alias.FunctionVersion}${unchecked}${split}${record ? `: ${describeRecord(record, (ctx.now ?? Date.now)())}` : alias.Description ? ` (${alias.Description})` : ""}`;
  return {
    functionName,
    alias: aliasName,
    version: alias?.FunctionVersion ?? null,
    weights: { ...weights },
    record,
    description: alias?.Description ?? "",
    summary,
  };
}

// ---- steps ------------------------------------------------------------------------------------

function emptyResult(
  functionName: string,
  alias: string,
  operation: RolloutResult["operation"],
): RolloutResult {
  return {
    functionName,
    alias,
    operation,
    outcome: "error",
    previous: null,
    version: null,
    live: null,
    smoke: [],
    record: null,
    error: null,
    durationMs: 0,
  };
}

/** The hold's record: started at `startedAt`, renewed (`expires`) at every write. */
function deployingRecord(
  ctx: RolloutContext,
  request: DeployRequest,
  live: string,
  version: string,
  previous: string | null,
  startedAt: number,
): DeploymentRecord {
  return {
    state: "deploying",
    live,
    version,
    previous,
    at: recordTime(startedAt),
    expires: recordTime((ctx.now ?? Date.now)() + request.leaseMs),
    by: recordToken(ctx.by),
    id: ctx.runId,
  };
}

/** Where `rollback` should still go after this run leaves the alias on `live`: what the record said, if it describes `live`. */
function carriedPrevious(record: DeploymentRecord | null, live: string | null): string | null {
  return record !== null && record.live === live ? record.previous : null;
}

/** The description to put back when the deploy changed nothing: the original, unless it was an abandoned hold. */
function restoredDescription(original: string, record: DeploymentRecord | null): string {
  return record?.state === "deploying" ? "" : original;
}

/**
 * Refuses while another deploy holds the alias (unless `breakHold` names its run), or when the
 * alias splits traffic that no deploy in progress set. A hold that expired, or was broken, is
 * taken over: its deploy is gone. Should it still be alive, its next conditional write fails
 * (DEPLOY_ERR_BUSY) and it changes nothing more.
 */
function refuseIfHeld(
  ctx: RolloutContext,
  alias: AliasConfiguration,
  record: DeploymentRecord | null,
  now: number,
  label: string,
  breakHold: string | undefined,
): void {
  if (record?.state === "deploying") {
    if (holdExpired(record, now)) {
      ctx.log(`${label}: taking over an expired hold: ${describeRecord(record, now)}`);
      return;
    }
    if (breakHold === record.id) {
      ctx.log(
        `${label}: breaking the hold of run ${record.id} (--break-hold): ${describeRecord(record, now)}`,
      );
      return;
    }
    if (breakHold !== undefined) {
      throw new DeployError(
        "DEPLOY_ERR_BUSY",
        `${label} is held by run ${record.id}, not ${breakHold}: ${describeRecord(record, now)}; nothing was changed`,
      );
    }
    throw new DeployError(
      "DEPLOY_ERR_BUSY",
      `another deploy holds ${label}: ${describeRecord(record, now)}; wait for it, or for its hold to expire; if that deploy is dead (its process was killed), take over now with --break-hold ${record.id}`,
    );
  }
  const weights = Object.entries(alias.RoutingConfig?.AdditionalVersionWeights ?? {});
  if (weights.length > 0) {
    const [version, weight] = weights[0]!;
    throw new DeployError(
      "DEPLOY_ERR_BUSY",
      `${label} sends ${Math.round(weight * 100)}% of invocations to version ${version}, which no deploy in progress set; clear the routing config (or run rollback) first`,
    );
  }
}

/**
 * The hold must outlast the longest gap between two of this run's writes: a step's wait plus a
 * smoke invocation (up to the function's timeout), with a minute to spare.
 */
function checkLease(request: DeployRequest, fn: FunctionConfiguration, label: string): void {
  const stepWaitMs = request.steps.length > 0 ? request.stepWaitMs : 0;
  const neededMs = stepWaitMs + (fn.Timeout ?? 900) * 1000 + 60_000;
  if (request.leaseMs < neededMs) {
    throw new DeployError(
      "DEPLOY_ERR_USAGE",
      `--lease ${request.leaseMs} ms is too short: a step's wait (${stepWaitMs} ms) plus a smoke invocation of ${label} (timeout ${fn.Timeout} s) plus a minute needs ${neededMs} ms`,
    );
  }
}

/** Where a rollback of a deploy that died goes: the version the alias served when it began. */
function unfinishedTarget(record: DeploymentRecord, current: string, label: string): string {
  if (record.live !== current) {
    throw new DeployError(
      "DEPLOY_ERR_NOTHING_TO_ROLL_BACK",
      `${label} serves version ${current} but its unfinished deploy began on ${record.live} (moved by hand?): give the version with --to`,
    );
  }
  return record.live;
}

function recordedTarget(record: DeploymentRecord | null, current: string, label: string): string {
  if (record === null) {
    throw new DeployError(
      "DEPLOY_ERR_NOTHING_TO_ROLL_BACK",
      `${label} carries no deployment record: give the version to go back to with --to`,
    );
  }
  if (record.live !== current) {
    throw new DeployError(
      "DEPLOY_ERR_NOTHING_TO_ROLL_BACK",
      `${label} serves version ${current} but its record says ${record.live} (moved by hand?): give the version with --to`,
    );
  }
  if (record.previous === null) {
    throw new DeployError(
      "DEPLOY_ERR_NOTHING_TO_ROLL_BACK",
      `no earlier version recorded for ${label} (${describeRecord(record)}): give the version with --to`,
    );
  }
  return record.previous;
}

async function getFunction(
  client: LambdaClient,
  functionName: string,
  qualifier?: string,
): Promise<FunctionConfiguration> {
  try {
    const output = await client.send(
      new GetFunctionCommand({ FunctionName: functionName, ...(qualifier ? { Qualifier: qualifier } : {}) }),
    );
    return output.Configuration!;
  } catch (error) {
    throw awsError("GetFunction", qualifier ? `${functionName}:${qualifier}` : functionName, error);
  }
}

async function getAlias(
  client: LambdaClient,
  functionName: string,
  alias: string,
): Promise<AliasConfiguration | null> {
  try {
    return await client.send(new GetAliasCommand({ FunctionName: functionName, Name: alias }));
  } catch (error) {
    if (isAwsError(error, "ResourceNotFoundException") && /alias/i.test(awsFailure(error).message))
      return null;
    throw awsError("GetAlias", `${functionName}:${alias}`, error);
  }
}

async function createAlias(
  client: LambdaClient,
  functionName: string,
  alias: string,
  version: string,
  description: string,
): Promise<void> {
  try {
    await client.send(
      new CreateAliasCommand({
        FunctionName: functionName,
        Name: alias,
        FunctionVersion: version,
        Description: description,
      }),
    );
  } catch (error) {
    if (isAwsError(error, "ResourceConflictException")) {
      throw new DeployError(
        "DEPLOY_ERR_BUSY",
        `${functionName}:${alias} was created by someone else while this deploy ran; version ${version} passed its check but was not promoted`,
        { cause: error },
      );
    }
    throw awsError("CreateAlias", `${functionName}:${alias}`, error);
  }
}

/** Uploads the artifact (if any) and publishes a version of $LATEST; waits until both are ready. */
async function publish(
  ctx: RolloutContext,
  request: DeployRequest,
  fn: FunctionConfiguration,
): Promise<string> {
  const { client } = ctx;
  const name = request.functionName;
  const waiter = {
    client,
    minDelay: ctx.pollSeconds,
    maxDelay: Math.max(ctx.pollSeconds, 5),
    maxWaitTime: ctx.maxWaitSeconds,
  };
  let latest = fn;
  if (request.artifact) {
    const artifact = request.artifact;
    ctx.log(
      artifact.kind === "zip"
        ? `${name}: uploading ${artifact.path} (${artifact.bytes.byteLength} bytes)`
        : `${name}: deploying image ${artifact.uri}`,
    );
    try {
      await client.send(
        new UpdateFunctionCodeCommand({
          FunctionName: name,
          ...(artifact.kind === "zip" ? { ZipFile: artifact.bytes } : { ImageUri: artifact.uri }),
          RevisionId: fn.RevisionId,
        }),
        ctx.signal ? { abortSignal: ctx.signal } : {},
      );
    } catch (error) {
      if (isAwsError(error, "PreconditionFailedException", "ResourceConflictException")) {
        throw new DeployError(
          "DEPLOY_ERR_BUSY",
          `${name} changed or is being updated by someone else (${awsFailure(error).name}); nothing was uploaded`,
          { cause: error },
        );
      }
      throw awsError("UpdateFunctionCode", name, error);
    }
    latest = await waitForUpdate(ctx, name, waiter);
  } else if (fn.LastUpdateStatus === "InProgress") {
    ctx.log(`${name}: waiting for the function's update in progress`);
    latest = await waitForUpdate(ctx, name, waiter);
  }
  let published: FunctionConfiguration;
  try {
    published = await client.send(
      new PublishVersionCommand({
        FunctionName: name,
        CodeSha256: latest.CodeSha256,
        RevisionId: latest.RevisionId,
        Description: `published by ${recordToken(ctx.by)} at ${recordTime((ctx.now ?? Date.now)())} (rollout ${ctx.runId})`,
      }),
    );
  } catch (error) {
    if (isAwsError(error, "PreconditionFailedException", "ResourceConflictException")) {
      throw new DeployError(
        "DEPLOY_ERR_BUSY",
        `$LATEST of ${name} changed while this deploy published it (${awsFailure(error).name}): another deploy?`,
        { cause: error },
      );
    }
    throw awsError("PublishVersion", name, error);
  }
  const version = published.Version!;
  ctx.log(`${name}: version ${version} (code ${published.CodeSha256})`);
  if (published.State !== "Active") {
    const waited = await waitUntilPublishedVersionActive(
      { ...waiter, ...(ctx.signal ? { abortSignal: ctx.signal } : {}) },
      { FunctionName: name, Qualifier: version },
    ).catch((error: unknown) => {
      throw awsError("GetFunctionConfiguration", `${name}:${version}`, error);
    });
    if (waited.state !== "SUCCESS") {
      throw new DeployError(
        "DEPLOY_ERR_AWS",
        `version ${version} of ${name} did not become Active (${waited.state})`,
      );
    }
  }
  return version;
}

async function waitForUpdate(
  ctx: RolloutContext,
  name: string,
  waiter: { client: LambdaClient; minDelay: number; maxDelay: number; maxWaitTime: number },
): Promise<FunctionConfiguration> {
  const waited = await waitUntilFunctionUpdatedV2(
    { ...waiter, ...(ctx.signal ? { abortSignal: ctx.signal } : {}) },
    { FunctionName: name },
  ).catch((error: unknown) => {
    ctx.signal?.throwIfAborted();
    const reason = (error as { result?: { reason?: { Configuration?: FunctionConfiguration } } }).result
      ?.reason?.Configuration;
    throw new DeployError(
      "DEPLOY_ERR_AWS",
      reason?.LastUpdateStatus === "Failed"
        ? `the code update of ${name} failed: ${reason.LastUpdateStatusReasonCode ?? ""} ${reason.LastUpdateStatusReason ?? ""}`.trim()
        : `the code update of ${name} did not finish within ${ctx.maxWaitSeconds} s: ${(error as Error).message}`,
      { cause: error },
    );
  });
  const configuration = (waited.reason as { Configuration?: FunctionConfiguration } | undefined)
    ?.Configuration;
  return configuration ?? (await getFunction(ctx.client, name));
}

/**
 * Smoke-checks `version` (whose timeout is `timeoutSeconds`: the invocation is given up as lost
 * after it and the grace), logs the outcome, and throws DEPLOY_ERR_SMOKE_FAILED when it failed.
 */
async function check(
  ctx: RolloutContext,
  request: { functionName: string; smoke: SmokeRequest },
  result: RolloutResult,
  version: string,
  timeoutSeconds: number | undefined,
  stage?: string,
): Promise<void> {
  ctx.signal?.throwIfAborted();
  const boundMs = (timeoutSeconds ?? 900) * 1000 + (ctx.smokeGraceMs ?? 30_000);
  const outcome = await smokeCheck(
    ctx.client,
    request.functionName,
    version,
    request.smoke,
    ctx.signal,
    boundMs,
  );
  result.smoke.push(outcome);
  ctx.log(`${request.functionName}: ${formatSmoke(outcome)}`);
  if (!outcome.ok) {
    throw new DeployError(
      "DEPLOY_ERR_SMOKE_FAILED",
      `version ${version} failed its smoke test${stage ? ` at ${stage}` : ""}: ${outcome.summary}`,
    );
  }
}

function lastSummary(result: RolloutResult): string {
  return result.smoke.at(-1)?.summary ?? "smoke test failed";
}

/** Puts the alias back on the version it served. A failure here is the one that needs a person. */
async function restore(
  ctx: RolloutContext,
  result: RolloutResult,
  handle: AliasHandle,
  { description }: { description: string },
): Promise<void> {
  const previous = result.previous!;
  try {
    await handle.update(previous, {}, description, `put ${result.alias} back on version ${previous}`);
    result.live = previous;
    result.record = decodeRecord(description);
    ctx.log(`${result.functionName}:${result.alias} serves version ${previous} again`);
  } catch (error) {
    const failure =
      error instanceof DeployError ? error : awsError("UpdateAlias", result.functionName, error);
    result.outcome = "restore-failed";
    result.live = null;
    // What the alias does now, as far as this run wrote it: the hold keeps the old version; only a
    // step sends traffic to the new one.
    const split = Object.entries(handle.weights)
      .map(([version, weight]) => `${Math.round(weight * 100)}% of invocations to version ${version}`)
      .join(", ");
    const now = split
      ? `it may still send ${split}`
      : `it still serves version ${previous} to every invocation, but its record still holds it`;
    result.error = {
      code: "DEPLOY_ERR_RESTORE_FAILED",
      message: `could not put ${result.functionName}:${result.alias} back on version ${previous} (${failure.message}); ${now}: check it with \`npm run rollout -- status --function ${result.functionName}\` and fix it with \`npm run rollout -- rollback --function ${result.functionName} --to ${previous} --break-hold ${ctx.runId}\``,
    };
    ctx.log(`${result.functionName}:${result.alias}: ${result.error.message}`);
  }
}

/**
 * The alias as this run holds it: every write is conditional on the revision this run last saw,
 * so a write after someone else's change is refused (PreconditionFailedException) instead of
 * undoing it. A write that succeeded but whose answer was lost (the SDK retries it, and the retry
 * meets the new revision) is recognised by reading the alias back.
 */
class AliasHandle {
  /** Whether this run holds the alias (its last write succeeded and nobody else wrote since). */
  held = false;
  /** The routing weights of this run's last successful write. */
  weights: Record<string, number> = {};

  constructor(
    private readonly client: LambdaClient,
    private readonly functionName: string,
    private readonly alias: string,
    private revisionId: string,
  ) {}

  async update(
    version: string,
    weights: Record<string, number>,
    description: string,
    what: string,
  ): Promise<void> {
    try {
      const output = await this.client.send(
        new UpdateAliasCommand({
          FunctionName: this.functionName,
          Name: this.alias,
          FunctionVersion: version,
          RoutingConfig: { AdditionalVersionWeights: weights },
          Description: description,
          RevisionId: this.revisionId,
        }),
      );
      this.revisionId = output.RevisionId!;
      this.held = true;
      this.weights = weights;
    } catch (error) {
      if (!isAwsError(error, "PreconditionFailedException")) {
        throw awsError("UpdateAlias", `${this.functionName}:${this.alias} (${what})`, error);
      }
      const now = await getAlias(this.client, this.functionName, this.alias);
      const sameWeights =
        JSON.stringify(now?.RoutingConfig?.AdditionalVersionWeights ?? {}) === JSON.stringify(weights);
      if (now && now.FunctionVersion === version && now.Description === description && sameWeights) {
        this.revisionId = now.RevisionId!;
        this.held = true;
        this.weights = weights;
        return;
      }
      this.held = false;
      const record = decodeRecord(now?.Description);
      throw new DeployError(
        "DEPLOY_ERR_BUSY",
        `${this.functionName}:${this.alias} changed under this deploy (could not ${what}): it serves version ${now?.FunctionVersion ?? "?"}${record ? `, ${describeRecord(record)}` : ""}`,
        { cause: error },
      );
    }
  }
}

function asDeployError(error: unknown, signal: AbortSignal | undefined): DeployError {
  if (signal?.aborted) {
    return new DeployError("DEPLOY_ERR_INTERRUPTED", `interrupted (${String(signal.reason ?? "aborted")})`, {
      cause: error,
    });
  }
  if (error instanceof DeployError) return error;
  return new DeployError(
    "DEPLOY_ERR_INTERNAL",
    `internal error: ${(error as Error)?.stack ?? String(error)}`,
    {
      cause: error,
    },
  );
}

function outcomeOf(code: DeployErrorCode): RolloutResult["outcome"] {
  switch (code) {
    case "DEPLOY_ERR_SMOKE_FAILED":
      return "failed";
    case "DEPLOY_ERR_INTERRUPTED":
      return "interrupted";
    case "DEPLOY_ERR_BUSY":
      return "refused";
    case "DEPLOY_ERR_RESTORE_FAILED":
      return "restore-failed";
    default:
      return "error";
  }
}

/** Waits `ms`, or rejects at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

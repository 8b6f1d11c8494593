import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";
import { arch, platform } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import {
  AGENT_VERSION,
  AGENT_WS_PATH,
  agentConfigSchema,
  agentSocketUrl,
  CloudWatchSinkWarning,
  createCloudWatchSink,
  createLogger,
  diskBudgetBytes,
  filesystemSpace,
  findJava,
  NAME_HEADER,
  PROTOCOL_HEADER,
  PROTOCOL_VERSION,
  SECRET_HEADER,
} from "../agent-core/index.ts";
import type { SmokeInvocation } from "./event.ts";
import { cleanWorkDir, prepareWorkDir } from "./work-dir.ts";

/** One named check of the smoke test. A skipped check is `ok` (it did not fail) and says why it was skipped. */
export interface SmokeCheck {
  name: string;
  ok: boolean;
  skipped?: true;
  detail: string;
  durationMs: number;
}

/** Where the smoke test ran: the function, as its context and environment describe it. */
export interface SmokeFunctionInfo {
  name: string | null;
  version: string | null;
  memoryMb: number | null;
  region: string | null;
  requestId: string | null;
  logGroup: string | null;
  logStream: string | null;
}

/** What a smoke invocation returns (and what a failed one carries in its error message). */
export interface SmokeReport {
  smoke: true;
  ok: boolean;
  /** One line: how many checks passed, failed and were skipped, and which failed. */
  summary: string;
  agentVersion: string;
  runtime: "lambda";
  node: string;
  platform: string;
  arch: string;
  function: SmokeFunctionInfo;
  workDir: string;
  checks: SmokeCheck[];
  durationMs: number;
}

export { SmokeTestFailedError } from "./smoke-error.ts";

/** Longest any one check may take (bounded further by the invocation's deadline). */
export const CHECK_TIMEOUT_MS = 10_000;
/** A job needs at least this much room in the work dir, whatever the function declares. */
export const MIN_BUDGET_BYTES = 64 * 1_048_576;
const PROBE_BYTES = 1_048_576;
const MIB = 1_048_576;

/**
 * Runs the self-test: the work dir is writable and has the space the function claims, the
 * tools it claims run, the controller (when a url is given) answers as a protocol v1
 * controller, and CloudWatch (when enabled) accepts logs. Never throws; the report says.
 *
 * @example
 * const report = await runSmokeTest(invocation, info);
 * if (!report.ok) throw new SmokeTestFailedError(report);
 */
export async function runSmokeTest(
  invocation: SmokeInvocation,
  info: SmokeFunctionInfo,
): Promise<SmokeReport> {
  const started = performance.now();
  const { layout, settings } = invocation;
  const timeoutMs = () => Math.max(1, Math.min(CHECK_TIMEOUT_MS, invocation.deadlineAt - Date.now()));
  const checks: SmokeCheck[] = [];
  try {
    const writable = await check("tmp-writable", () => checkWritable(invocation));
    checks.push(writable);
    const rest = await Promise.all([
      check("tmp-space", async () => checkSpace(invocation)),
      ...settings.smokeTools.map((tool) =>
        check(`tool:${tool}`, () =>
          writable.ok
            ? checkTool(tool, invocation.stepEnv, layout.home, timeoutMs())
            : Promise.resolve(fail("not run: the work dir is not writable")),
        ),
      ),
      invocation.url === undefined
        ? Promise.resolve(skipped("controller", "no url given"))
        : check("controller", () =>
            probeController(invocation.url!, invocation.name, invocation.secret, timeoutMs()),
          ),
      invocation.cloudWatch.enabled
        ? check("cloudwatch", () => checkCloudWatch(invocation, timeoutMs()))
        : Promise.resolve(skipped("cloudwatch", `the job log copy is off (${invocation.cloudWatch.reason})`)),
    ]);
    checks.push(...rest);
  } finally {
    await cleanWorkDir(layout);
  }
  const failed = checks.filter((c) => !c.ok);
  const skippedCount = checks.filter((c) => c.skipped).length;
  const passed = checks.length - failed.length - skippedCount;
  const summary =
    failed.length === 0
      ? `smoke test passed: ${passed} checks passed, ${skippedCount} skipped`
      : `smoke test failed: ${failed.length} of ${checks.length} checks failed (${failed.map((c) => c.name).join(", ")})`;
  return {
    smoke: true,
    ok: failed.length === 0,
    summary,
    agentVersion: AGENT_VERSION,
    runtime: "lambda",
    node: process.version,
    platform: platform(),
    arch: arch(),
    function: info,
    workDir: layout.root,
    checks,
    durationMs: Math.round(performance.now() - started),
  };
}

type Verdict = { ok: boolean; detail: string };
const pass = (detail: string): Verdict => ({ ok: true, detail });
const fail = (detail: string): Verdict => ({ ok: false, detail });

async function check(name: string, run: () => Promise<Verdict>): Promise<SmokeCheck> {
  const started = performance.now();
  let verdict: Verdict;
  try {
    verdict = await run();
  } catch (error) {
    verdict = fail(`error: ${(error as Error).message}`);
  }
  return { name, ...verdict, durationMs: Math.round(performance.now() - started) };
}

function skipped(name: string, detail: string): SmokeCheck {
  return { name, ok: true, skipped: true, detail, durationMs: 0 };
}

/** Writes one line to the job log's CloudWatch stream through the real sink, and waits until it is stored. */
async function checkCloudWatch(invocation: SmokeInvocation, timeoutMs: number): Promise<Verdict> {
  const settings = invocation.cloudWatch;
  const where = `${settings.region} ${settings.logGroupName} ${settings.logStreamName}`;
  // The sink reports why it gave up in a warning (code + error): keep them to name the cause.
  const warnings: Record<string, unknown>[] = [];
  const sink = await createCloudWatchSink({
    region: settings.region!,
    logGroupName: settings.logGroupName,
    logStreamName: settings.logStreamName,
    logger: createLogger({ level: "warn", write: (line) => void warnings.push(JSON.parse(line)) }),
  });
  sink.write(`smoke test of ${AGENT_VERSION} on ${platform()}/${arch()}: CloudWatch Logs writable`);
  const summary = await sink.close(timeoutMs);
  if (summary.sentEvents === 1) return pass(`wrote a line to ${where}`);
  const failure = warnings.find(
    (w) => w.code === CloudWatchSinkWarning.disabled || w.code === CloudWatchSinkWarning.sendFailed,
  );
  const error = failure?.error as CloudWatchFailure | undefined;
  return fail(
    `could not write to ${where} (${summary.timedOut ? `no answer within ${timeoutMs} ms` : "refused"}): ${cloudWatchFailureCause(error, settings.region!, settings.logGroupName)}`,
  );
}

/** The error a CloudWatch call failed with, as the sink's warning carries it. */
export interface CloudWatchFailure {
  name?: string;
  message?: string;
  code?: string;
}

const CREDENTIALS_MISSING = new Set(["CredentialsProviderError"]);
const CREDENTIALS_REFUSED = new Set([
  "UnrecognizedClientException",
  "InvalidClientTokenId",
  "InvalidSignatureException",
  "IncompleteSignature",
  "MissingAuthenticationToken",
  "ExpiredTokenException",
]);
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "EPIPE",
]);

/**
 * The likely cause of a failed CloudWatch check, for the person reading the smoke report: no
 * credentials, credentials refused, a missing permission, or no network (an unreachable or silent
 * endpoint: no error at all within the time also means that). `error` is undefined when the
 * sink gave up without one (it was still retrying).
 *
 * @example
 * cloudWatchFailureCause({ name: "AccessDeniedException" }, "eu-west-1", "/ephemeral-agent/lambda");
 * // "a missing permission: the role needs logs:CreateLogStream and logs:PutLogEvents on /ephemeral-agent/lambda (AccessDeniedException)"
 */
export function cloudWatchFailureCause(
  error: CloudWatchFailure | undefined,
  region: string,
  group: string,
): string {
  const endpoint = `logs.${region}.amazonaws.com`;
  const name = error?.name ?? "";
  const message = error?.message ?? "";
  const detail = error ? ` (${[name, error.code, message.split("\n")[0]].filter(Boolean).join(": ")})` : "";
  if (CREDENTIALS_MISSING.has(name) || /could not load credentials/i.test(message)) {
    return `no AWS credentials: on Lambda the function's role provides them; locally set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or turn the copy off with AGENT_CLOUDWATCH=off${detail}`;
  }
  if (CREDENTIALS_REFUSED.has(name)) {
    return `the credentials were refused (invalid, expired, or for another partition)${detail}`;
  }
  if (name === "AccessDeniedException" || /not authorized/i.test(message)) {
    return `a missing permission: the role needs logs:CreateLogStream and logs:PutLogEvents on ${group}${detail}`;
  }
  if (
    error === undefined ||
    name === "TimeoutError" ||
    NETWORK_CODES.has(error.code ?? "") ||
    NETWORK_CODES.has(name)
  ) {
    return `no network: ${endpoint} could not be reached (offline, DNS, a firewall, or a VPC without a route or endpoint to CloudWatch Logs)${detail}`;
  }
  return `CloudWatch Logs refused the write${detail}`;
}

/** Prepares the work dir as an invocation would, then writes, reads back and removes 1 MiB. */
async function checkWritable(invocation: SmokeInvocation): Promise<Verdict> {
  const { layout } = invocation;
  const leftovers = await prepareWorkDir(layout);
  const probe = join(layout.tmp, `smoke-${randomBytes(4).toString("hex")}`);
  const data = randomBytes(PROBE_BYTES);
  await writeFile(probe, data);
  const back = await readFile(probe);
  await rm(probe);
  if (!back.equals(data)) return fail(`${probe}: the bytes read back differ from those written`);
  const cleaned =
    leftovers.length > 0 ? `; removed leftovers of an earlier invocation: ${leftovers.join(", ")}` : "";
  return pass(`wrote, read back and removed 1 MiB under ${layout.root}${cleaned}`);
}

/** The work dir's filesystem against what the function declares (AGENT_EPHEMERAL_STORAGE_MB). */
async function checkSpace(invocation: SmokeInvocation): Promise<Verdict> {
  const { root } = invocation.layout;
  const { tunables, ephemeralStorageMb: declaredMb } = invocation.settings;
  // The budget exactly as the agent computes it, with the function's own settings.
  const budgetBytes = diskBudgetBytes(
    root,
    tunables.diskBudgetBytes ?? null,
    tunables.diskHeadroomBytes ?? agentConfigSchema.shape.diskHeadroomBytes.parse(undefined),
  );
  const space = { ...filesystemSpace(root), budgetBytes };
  const facts = `${mib(space.totalBytes)} MiB total, ${mib(space.freeBytes)} MiB free, job budget ${mib(space.budgetBytes)} MiB`;
  if (declaredMb === null) {
    return space.budgetBytes >= MIN_BUDGET_BYTES
      ? pass(
          `${facts} (AGENT_EPHEMERAL_STORAGE_MB not set: checked against the ${mib(MIN_BUDGET_BYTES)} MiB minimum)`,
        )
      : fail(`${facts}: below the ${mib(MIN_BUDGET_BYTES)} MiB minimum a job needs`);
  }
  const declaredBytes = declaredMb * MIB;
  if (space.totalBytes < declaredBytes * 0.9)
    return fail(
      `${facts}: the function declares ${declaredMb} MB (AGENT_EPHEMERAL_STORAGE_MB) but the filesystem is smaller; is ephemeralStorageSize deployed?`,
    );
  if (space.budgetBytes < Math.max(MIN_BUDGET_BYTES, declaredBytes * 0.8))
    return fail(
      `${facts}: less than 80% of the declared ${declaredMb} MB is free; something outside the agent's work dir fills /tmp`,
    );
  return pass(`${facts} (declared ${declaredMb} MB)`);
}

/** `<tool> --version` with the environment a step would get. */
function checkTool(
  tool: string,
  env: Record<string, string>,
  cwd: string,
  timeoutMs: number,
): Promise<Verdict> {
  return new Promise((resolve) => {
    execFile(
      tool,
      ["--version"],
      { env, cwd, timeout: timeoutMs, maxBuffer: 65_536 },
      (error, stdout, stderr) => {
        const firstLine = `${stdout}\n${stderr}`
          .split("\n")
          .map((line) => line.trim())
          .find((line) => line !== "");
        if (error === null) {
          resolve(pass(firstLine ?? "ran (no output)"));
          return;
        }
        const code = (error as NodeJS.ErrnoException).code;
        // spawn reports a missing working directory as the program not found: say which it was.
        if (code === "ENOENT" && !existsSync(cwd))
          resolve(fail(`could not run it: the working directory ${cwd} does not exist`));
        else if (code === "ENOENT") resolve(fail(`not found on PATH (${env.PATH ?? "PATH not set"})`));
        else if (error.killed) resolve(fail(`\`${tool} --version\` did not finish within ${timeoutMs} ms`));
        else
          resolve(
            fail(
              `\`${tool} --version\` failed (${error.message.split("\n")[0]})${firstLine ? `: ${firstLine}` : ""}`,
            ),
          );
      },
    );
  });
}

/**
 * Checks that `url` is a protocol v1 controller, over the agent endpoint itself.
 * Without credentials: an upgrade to `<url>/agents/v1` with a random name and a bogus secret must
 * be refused with HTTP 403 (the endpoint exists and checks secrets). With `name` and `secret`: the
 * upgrade must succeed (HTTP 101); the socket is closed before `hello`, so no job is taken.
 */
export function probeController(
  url: string,
  name: string | undefined,
  secret: string | undefined,
  timeoutMs: number,
): Promise<Verdict> {
  const target = agentSocketUrl(url, AGENT_WS_PATH);
  const anonymous = name === undefined || secret === undefined;
  const agentName = anonymous ? `smoke-${randomBytes(4).toString("hex")}` : name;
  return new Promise((resolve) => {
    let settled = false;
    const settle = (verdict: Verdict) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(verdict);
    };
    const socket = new WebSocket(target, {
      perMessageDeflate: false,
      handshakeTimeout: timeoutMs,
      headers: {
        [NAME_HEADER]: agentName,
        [SECRET_HEADER]: anonymous ? "smoke-test-not-a-secret" : secret,
        [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
      },
    });
    const timer = setTimeout(() => {
      socket.terminate();
      settle(fail(`no answer from ${target} within ${timeoutMs} ms`));
    }, timeoutMs + 1_000);
    timer.unref();
    // Only an error before the handshake completes says something; later ones follow our own close.
    let opened = false;
    // An answer other than 101 (handled below) also ends in an error event: that one says nothing.
    let answered = false;
    socket.on("error", (error) => {
      if (!opened && !answered) settle(fail(`cannot reach ${target}: ${error.message}`));
    });
    socket.once("open", () => {
      opened = true;
      const verdict = anonymous
        ? fail(`${target} accepted a random agent with a bogus secret: not a protocol v1 controller`)
        : pass(
            `${target} accepted agent ${agentName} (HTTP 101, protocol v1); closed before hello, so no job was taken`,
          );
      // Settle once the socket is closed, so that nothing of the probe outlives it.
      const force = setTimeout(() => socket.terminate(), 1_000);
      force.unref();
      socket.once("close", () => {
        clearTimeout(force);
        settle(verdict);
      });
      socket.close(1000, "smoke test");
    });
    socket.once("unexpected-response", (_request, response) => {
      answered = true;
      const status = response.statusCode ?? 0;
      const jenkins = response.headers["x-jenkins"];
      response.resume();
      socket.terminate();
      if (jenkins !== undefined) {
        // Jenkins mode runs the controller's remoting agent.jar: it needs a Java runtime here.
        const env = process.env;
        findJava({
          javaBin: env.JENKINS_JAVA_BIN || null,
          javaHome: env.JAVA_HOME || null,
          path: env.PATH,
        }).then(
          (java) =>
            settle(
              pass(
                `${url} is a Jenkins controller (X-Jenkins: ${String(jenkins)}): served in Jenkins mode with remoting's agent.jar on Java ${java.version ?? "(version unknown)"} (${java.bin})`,
              ),
            ),
          (error: unknown) =>
            settle(
              fail(
                `${url} is a Jenkins controller (X-Jenkins: ${String(jenkins)}), but ${(error as Error).message}`,
              ),
            ),
        );
      } else if (anonymous && status === 403) {
        settle(pass(`${target} refused a bogus secret with HTTP 403, as a protocol v1 controller does`));
      } else if (status === 403) {
        settle(fail(`${target} refused agent ${agentName}: HTTP 403, the secret is wrong for this name`));
      } else if (status === 409) {
        settle(fail(`${target} refused agent ${agentName}: HTTP 409, an agent with this name is connected`));
      } else if (status === 404) {
        settle(
          fail(
            `${target} answered HTTP 404: no agent endpoint there (not a protocol v1 controller, or a wrong base path)`,
          ),
        );
      } else {
        settle(fail(`${target} answered HTTP ${status}, expected ${anonymous ? 403 : 101}`));
      }
    });
  });
}

function mib(bytes: number): number {
  return Math.round(bytes / MIB);
}

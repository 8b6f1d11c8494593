import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LambdaClient, UpdateAliasCommand } from "@aws-sdk/client-lambda";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type DeploymentRecord,
  decodeRecord,
  deployFunction,
  encodeRecord,
  main,
  recordTime,
} from "../../deploy/index.ts";
import { bundleZip, type FakeLambda, startFakeLambda } from "../support/fake-lambda.ts";
import { ROOT, startController, tempDir, until } from "../support/harness.ts";

/**
 * The deploy command against the fake Lambda service through the real @aws-sdk/client-lambda;
 * smoke checks run the real handler bundle. The bundle (dist/deploy.mjs, as `npm run rollout`
 * runs it) where exit codes, signals and concurrent processes matter; its main() in this process
 * elsewhere.
 */

const DEPLOY = join(ROOT, "dist/deploy.mjs");
/** The agent's handler with what a test machine lacks switched off: no CloudWatch, bash only. */
const AGENT_ENV = { AGENT_CLOUDWATCH: "off", AGENT_SMOKE_TOOLS: "bash", AGENT_DEADLINE_MARGIN_MS: "1000" };
/** Short polls and lease suited to the fake (a 30 s function timeout needs a lease over 90 s). */
const FAST = ["--poll", "20ms", "--lease", "2m", "--by", "ci@test"];

let lambda: FakeLambda;
let scratch: ReturnType<typeof tempDir>;
let seq = 0;

const savedEnv = { ...process.env };
beforeAll(async () => {
  lambda = await startFakeLambda({ updateDelayMs: 60, idleSandboxMs: 3_000 });
  scratch = tempDir("rollout-");
  // For cli(): the SDK in this process finds the fake as a child process would.
  Object.assign(process.env, lambda.env, { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" });
});
afterAll(async () => {
  process.env = savedEnv;
  await lambda.close();
  scratch.remove();
});
afterEach(() => {
  lambda.clearFailures();
  lambda.onRequest = undefined;
  expect(lambda.faults).toEqual([]);
});

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function start(
  args: string[],
  env: Record<string, string> = {},
): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, [DEPLOY, ...args], {
    cwd: scratch.path,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: scratch.path, ...lambda.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<Run>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`deploy did not finish within 60 s\n${stdout}\n${stderr}`));
    }, 60_000);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done };
}

const run = (args: string[], env?: Record<string, string>) => start(args, env).done;

/** The same command line in this process (the CLI's main, real HTTP to the fake): cheaper than a process. */
async function cli(args: string[]): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const code = await main(args, process.env, {
    stdout: (text) => {
      stdout += text;
    },
    stderr: (text) => {
      stderr += text;
    },
    cwd: scratch.path,
  });
  return { code, signal: null, stdout, stderr };
}

/**
 * A function as the stack leaves it after its first `osls deploy`: version 1 published, the
 * `live` alias on $LATEST (serverless.yml's plugin creates it there).
 */
function stackFunction(
  extra: { environment?: Record<string, string>; imageUri?: string; timeoutSeconds?: number } = {},
): string {
  const name = `jnlp-agent-test-${++seq}`;
  lambda.createFunction({
    name,
    timeoutSeconds: extra.timeoutSeconds ?? 30,
    environment: { ...AGENT_ENV, ...extra.environment },
    ...(extra.imageUri ? { code: { imageUri: extra.imageUri } } : {}),
  });
  lambda.publish(name);
  lambda.setAlias(name, "live", "$LATEST");
  return name;
}

/** A function already promoted once: live on version 1, with the record a deploy leaves. */
function promotedFunction(extra: { timeoutSeconds?: number } = {}): string {
  const name = stackFunction(extra);
  const record: DeploymentRecord = {
    state: "promoted",
    live: "1",
    version: "1",
    previous: null,
    at: recordTime(Date.now()),
    by: "ci@test",
    id: "0000beef",
  };
  lambda.setAlias(name, "live", "1", encodeRecord(record));
  return name;
}

function zipFile(marker: string, overrides: Record<string, string> = {}): string {
  const path = join(scratch.path, `agent-${marker}.zip`);
  writeFileSync(path, bundleZip(undefined, { "build-id.txt": marker, ...overrides }));
  return path;
}

function recordOf(name: string): DeploymentRecord | null {
  return decodeRecord(lambda.state(name).aliases.live?.description);
}

/** Points the alias at `version` with routing weights, through the API (the fake's setAlias has none). */
async function setRouting(
  name: string,
  version: string,
  weights: Record<string, number>,
  description: string,
): Promise<void> {
  const client = new LambdaClient(lambda.clientConfig);
  try {
    await client.send(
      new UpdateAliasCommand({
        FunctionName: name,
        Name: "live",
        FunctionVersion: version,
        RoutingConfig: { AdditionalVersionWeights: weights },
        Description: description,
      }),
    );
  } finally {
    client.destroy();
  }
}

function callsOf(name: string, operation: string) {
  return lambda.requests.filter((r) => r.functionName === name && r.operation === operation);
}

describe("deploy", () => {
  it("a healthy version is published, smoke-checked by version, and promoted; the record says so", async () => {
    const name = stackFunction();
    const result = await run(["deploy", "--function", name, "--zip", zipFile("healthy"), ...FAST]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`${name}:live: promoted version 2`);
    const state = lambda.state(name);
    expect(state.versions).toEqual(["1", "2"]);
    expect(state.aliases.live).toMatchObject({ version: "2", weights: {} });
    expect(recordOf(name)).toMatchObject({
      state: "promoted",
      live: "2",
      version: "2",
      previous: null, // it came from $LATEST: nothing to roll back to
      by: "ci@test",
    });
    // The smoke check ran the real handler, as version 2, synchronously.
    const smoke = lambda.invocations.filter((i) => i.functionName === name);
    expect(smoke).toHaveLength(1);
    expect(smoke[0]).toMatchObject({
      qualifier: "2",
      executedVersion: "2",
      invocationType: "RequestResponse",
      event: { smoke: true },
      status: "succeeded",
      result: { smoke: true, ok: true },
    });
    expect(result.stderr).toMatch(/smoke test of version 2: smoke test passed/);
    // Every alias write was conditional on the revision last seen.
    expect(callsOf(name, "UpdateAlias").every((r) => r.status === 200)).toBe(true);
  });

  it("after `osls deploy` (no artifact) publishes $LATEST as is; the second run finds nothing new", async () => {
    const name = promotedFunction();
    expect(lambda.state(name).aliases.live?.version).toBe("1");
    // osls deploy changed the configuration and published version 2 itself.
    lambda.updateConfiguration(name, { environment: { ...AGENT_ENV, AGENT_LOG_LEVEL: "debug" } });
    lambda.publish(name);
    const second = await cli(["deploy", "--function", name, ...FAST]);
    expect(second.code, second.stderr).toBe(0);
    expect(lambda.state(name).versions).toEqual(["1", "2"]);
    expect(recordOf(name)).toMatchObject({ state: "promoted", live: "2", previous: "1" });
    const third = await cli(["deploy", "--function", name, ...FAST]);
    expect(third.code, third.stderr).toBe(0);
    expect(third.stdout).toContain("unchanged, serves version 2");
    expect(recordOf(name)).toMatchObject({ state: "promoted", live: "2", previous: "1" });
  });

  it("checks the controller from the new version when given its URL", async () => {
    const ctl = await startController();
    try {
      const name = stackFunction();
      const result = await cli([
        "deploy",
        "--function",
        name,
        "--controller-url",
        ctl.controller.url,
        ...FAST,
      ]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toMatch(/ok controller: .*refused a bogus secret with HTTP 403/);
      expect(lambda.invocations.at(-1)?.event).toEqual({ smoke: true, url: ctl.controller.url });
    } finally {
      await ctl.close();
    }
  });

  it("a version that fails its smoke test is not promoted: live stays, the record and exit code 1 say why", async () => {
    const name = promotedFunction();
    const before = lambda.state(name).aliases.live!;
    lambda.updateConfiguration(name, {
      environment: { ...AGENT_ENV, AGENT_SMOKE_TOOLS: "bash,definitely-not-installed" },
    });
    const result = await run(["deploy", "--function", name, ...FAST, "--json"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/FAIL tool:definitely-not-installed: not found on PATH/);
    expect(lambda.state(name).aliases.live).toMatchObject({ version: before.version, weights: {} });
    expect(recordOf(name)).toMatchObject({
      state: "failed",
      live: "1",
      version: "2",
      reason: expect.stringContaining("(tool:definitely-not-installed)"),
    });
    const json = JSON.parse(result.stdout) as {
      results: { outcome: string; smoke: { report: unknown }[] }[];
    };
    expect(json.results[0]).toMatchObject({
      outcome: "failed",
      live: "1",
      error: { code: "DEPLOY_ERR_SMOKE_FAILED" },
      smoke: [{ ok: false, report: { ok: false, checks: expect.any(Array) } }],
    });
  });

  it("a broken build (its handler cannot load) fails with the runtime's error and the log's tail", async () => {
    const name = promotedFunction();
    const broken = zipFile("broken", { "dist/lambda/handler.js": 'throw new Error("broken build");\n' });
    const result = await cli(["deploy", "--function", name, "--zip", broken, ...FAST]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/the invocation failed: Error: broken build/);
    expect(result.stderr).toMatch(/end of the invocation's log:/);
    expect(lambda.state(name).aliases.live?.version).toBe("1");
  });

  it("shifts traffic in steps with a check after each, and puts live back when a later check fails", async () => {
    const ctl = await startController();
    const name = promotedFunction();
    const weights: Record<string, number>[] = [];
    let controllerUp = true;
    lambda.onRequest = async (operation, input) => {
      if (operation !== "UpdateAlias" || input.functionName !== name) return;
      const routing =
        (input.body.RoutingConfig as { AdditionalVersionWeights?: Record<string, number> }) ?? {};
      weights.push(routing.AdditionalVersionWeights ?? {});
    };
    const healthy = await cli([
      "deploy",
      "--function",
      name,
      "--zip",
      zipFile("steps"),
      "--steps",
      "10,50",
      "--step-wait",
      "200ms",
      "--controller-url",
      ctl.controller.url,
      ...FAST,
    ]);
    expect(healthy.code, healthy.stderr).toBe(0);
    // Hold, record the version, 10%, 50%, promote (all writes clear or set the weights).
    expect(weights).toEqual([{}, {}, { "2": 0.1 }, { "2": 0.5 }, {}]);
    expect(healthy.stderr).toMatch(/10% of invocations go to version 2, 90% to 1/);
    expect(lambda.invocations.filter((i) => i.functionName === name && i.qualifier === "2")).toHaveLength(3);
    expect(lambda.state(name).aliases.live?.version).toBe("2");

    // Next deploy: the controller goes away once 50% of the traffic is on the new version.
    weights.length = 0;
    lambda.onRequest = async (operation, input) => {
      if (operation !== "UpdateAlias" || input.functionName !== name) return;
      const routing =
        (input.body.RoutingConfig as { AdditionalVersionWeights?: Record<string, number> }) ?? {};
      weights.push(routing.AdditionalVersionWeights ?? {});
      if (routing.AdditionalVersionWeights?.["3"] === 0.5 && controllerUp) {
        controllerUp = false;
        await ctl.close();
      }
    };
    const failing = await cli([
      "deploy",
      "--function",
      name,
      "--zip",
      zipFile("steps-2"),
      "--steps",
      "10,50",
      "--step-wait",
      "100ms",
      "--controller-url",
      ctl.controller.url,
      ...FAST,
    ]);
    expect(failing.code).toBe(1);
    expect(failing.stderr).toMatch(/version 3 failed its smoke test at 50%/);
    expect(weights.at(-1)).toEqual({});
    expect(lambda.state(name).aliases.live).toMatchObject({ version: "2", weights: {} });
    expect(recordOf(name)).toMatchObject({ state: "failed", live: "2", version: "3", previous: "1" });
  });

  it("deploys an image function from --image-uri", async () => {
    const uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/jnlp-agent:2";
    const images = await startFakeLambda({
      updateDelayMs: 20,
      images: {
        // The image's files and its entrypoint: the Runtime API loop around the same handler.
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/jnlp-agent:1": {
          code: { zip: bundleZip(undefined, {}, "image") },
          entrypoint: [process.execPath, "dist/lambda/bootstrap.js"],
        },
        [uri]: {
          code: { zip: bundleZip(undefined, {}, "image") },
          entrypoint: [process.execPath, "dist/lambda/bootstrap.js"],
        },
      },
    });
    try {
      images.createFunction({
        name: "jnlp-agent-image",
        timeoutSeconds: 30,
        environment: AGENT_ENV,
        code: { imageUri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/jnlp-agent:1" },
      });
      images.publish("jnlp-agent-image");
      images.setAlias("jnlp-agent-image", "live", "1");
      const deployed = await run(
        ["deploy", "--function", "jnlp-agent-image", "--image-uri", uri, ...FAST],
        images.env,
      );
      expect(deployed.code, deployed.stderr).toBe(0);
      expect(images.state("jnlp-agent-image").aliases.live?.version).toBe("2");
      // A zip is refused for an image function before anything changes.
      const wrong = await run(
        ["deploy", "--function", "jnlp-agent-image", "--zip", zipFile("img"), ...FAST],
        images.env,
      );
      expect(wrong.code).toBe(2);
      expect(wrong.stderr).toMatch(/packaged as Image: give --image-uri, not --zip/);
      expect(images.requests.filter((r) => r.operation === "UpdateFunctionCode")).toHaveLength(1);
    } finally {
      await images.close();
    }
  });
});

describe("rollback", () => {
  it("moves live back to the version the last deploy replaced; then there is nothing recorded to go back to", async () => {
    const name = promotedFunction();
    const second = await cli(["deploy", "--function", name, "--zip", zipFile("rb"), ...FAST]);
    expect(second.code, second.stderr).toBe(0);
    expect(lambda.state(name).aliases.live?.version).toBe("2");

    const back = await cli(["rollback", "--function", name, "--by", "oncall"]);
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toContain(`${name}:live: rolled back to version 1 (from 2)`);
    expect(lambda.state(name).aliases.live?.version).toBe("1");
    expect(recordOf(name)).toMatchObject({
      state: "rolled-back",
      live: "1",
      version: "2",
      previous: null,
      by: "oncall",
    });

    const again = await cli(["rollback", "--function", name]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/no earlier version recorded.*give the version with --to/);

    const forward = await cli(["rollback", "--function", name, "--to", "2", "--check", "--by", "oncall"]);
    expect(forward.code, forward.stderr).toBe(0);
    expect(lambda.state(name).aliases.live?.version).toBe("2");
    expect(lambda.invocations.at(-1)).toMatchObject({
      functionName: name,
      qualifier: "2",
      status: "succeeded",
    });

    // A version that does not exist is nothing to roll back to (exit 2), not an AWS failure.
    const missing = await cli(["rollback", "--function", name, "--to", "99", "--json"]);
    expect(missing.code).toBe(2);
    expect(JSON.parse(missing.stdout).results[0].error).toMatchObject({
      code: "DEPLOY_ERR_NOTHING_TO_ROLL_BACK",
      message: expect.stringMatching(/version 99 of \S+ does not exist/),
    });
    expect(lambda.state(name).aliases.live?.version).toBe("2");

    const status = await cli(["status", "--function", name]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(
      new RegExp(`${name}:live serves version 2: rolled back from 1 to 2 at \\S+ by oncall$`, "m"),
    );
  });
});

describe("rollback after trouble", () => {
  it("undoes a deploy that died mid-step: live back on the version it served, no split, the earlier history kept", async () => {
    const name = promotedFunction();
    const second = await cli(["deploy", "--function", name, "--zip", zipFile("died-base"), ...FAST]);
    expect(second.code, second.stderr).toBe(0);
    // A deploy of version 3 died at its 50% step, and its hold has expired.
    lambda.updateConfiguration(name, { environment: { ...AGENT_ENV, AGENT_LOG_LEVEL: "debug" } });
    const three = lambda.publish(name);
    const dead: DeploymentRecord = {
      state: "deploying",
      live: "2",
      version: three,
      previous: "1",
      at: "2026-01-01T00:00:00Z",
      expires: "2026-01-01T00:30:00Z",
      by: "crashed@ci",
      id: "deadbeef",
    };
    await setRouting(name, "2", { [three]: 0.5 }, encodeRecord(dead));

    const back = await cli(["rollback", "--function", name, "--by", "oncall"]);
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toContain(
      `${name}:live: rolled back to version 2 (from version 3's unfinished deploy)`,
    );
    expect(lambda.state(name).aliases.live).toMatchObject({ version: "2", weights: {} });
    expect(recordOf(name)).toMatchObject({ state: "rolled-back", live: "2", version: "3", previous: "1" });
    // The version before still is where the next rollback goes.
    const further = await cli(["rollback", "--function", name]);
    expect(further.code, further.stderr).toBe(0);
    expect(lambda.state(name).aliases.live?.version).toBe("1");
  });

  it("a hand-edited record cannot send live to $LATEST or to another alias", async () => {
    for (const previous of ["$LATEST", "live"]) {
      const name = promotedFunction();
      lambda.setAlias(
        name,
        "live",
        "1",
        `rollout/1 state=promoted live=1 version=1 previous=${previous} at=2026-01-01T00:00:00Z by=x id=y`,
      );
      const result = await cli(["rollback", "--function", name, "--json"]);
      expect(result.code, previous).toBe(2);
      expect(JSON.parse(result.stdout).results[0].error.code).toBe("DEPLOY_ERR_NOTHING_TO_ROLL_BACK");
      expect(lambda.state(name).aliases.live?.version).toBe("1");
    }
  });

  it("after a deploy killed with SIGKILL mid-step, its hold names the run to break; --break-hold takes over", async () => {
    const name = promotedFunction();
    const deploy = start([
      "deploy",
      "--function",
      name,
      "--zip",
      zipFile("killed"),
      "--steps",
      "50",
      "--step-wait",
      "30s",
      ...FAST,
    ]);
    await until(
      () => Object.keys(lambda.state(name).aliases.live?.weights ?? {}).length > 0,
      20_000,
      "the 50% step",
    );
    deploy.child.kill("SIGKILL");
    expect((await deploy.done).signal).toBe("SIGKILL");
    const hold = recordOf(name)!;
    expect(hold).toMatchObject({ state: "deploying", live: "1", version: "2" });

    const refused = await cli(["rollback", "--function", name]);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain(`--break-hold ${hold.id}`);
    const wrongId = await cli(["rollback", "--function", name, "--break-hold", "0000abcd"]);
    expect(wrongId.code).toBe(4);
    expect(wrongId.stderr).toMatch(/held by run [0-9a-f]+, not 0000abcd/);
    expect(lambda.state(name).aliases.live?.weights).toEqual({ "2": 0.5 });

    const back = await cli(["rollback", "--function", name, "--break-hold", hold.id, "--by", "oncall"]);
    expect(back.code, back.stderr).toBe(0);
    expect(lambda.state(name).aliases.live).toMatchObject({ version: "1", weights: {} });
    expect(recordOf(name)).toMatchObject({ state: "rolled-back", live: "1", version: "2" });
  });

  it("a deploy can break a dead deploy's hold too, and then promotes", async () => {
    const name = promotedFunction();
    const dead: DeploymentRecord = {
      state: "deploying",
      live: "1",
      version: "-",
      previous: null,
      at: recordTime(Date.now()),
      expires: recordTime(Date.now() + 30 * 60_000),
      by: "killed@ci",
      id: "0badf00d",
    };
    lambda.setAlias(name, "live", "1", encodeRecord(dead));
    const refused = await cli(["deploy", "--function", name, ...FAST]);
    expect(refused.code).toBe(4);
    const taken = await cli([
      "deploy",
      "--function",
      name,
      "--zip",
      zipFile("break"),
      "--break-hold",
      "0badf00d",
      ...FAST,
    ]);
    expect(taken.code, taken.stderr).toBe(0);
    expect(recordOf(name)).toMatchObject({ state: "promoted", live: "2", previous: "1" });
  });
});

describe("two deploys at once", () => {
  it("refuses a second deploy while the first holds the alias, and leaves the first to finish", async () => {
    const name = promotedFunction();
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    // Hold the first deploy's smoke invocation until the second one has given up.
    lambda.onRequest = async (operation, input) => {
      if (operation === "Invoke" && input.functionName === name) await released;
    };
    const invokesBefore = callsOf(name, "Invoke").length;
    const first = start(["deploy", "--function", name, "--zip", zipFile("first"), ...FAST]);
    await until(
      () => callsOf(name, "Invoke").length > invokesBefore,
      20_000,
      "the first deploy's smoke check",
    );
    expect(recordOf(name)).toMatchObject({ state: "deploying", live: "1", version: "2" });
    const second = await run(["deploy", "--function", name, "--zip", zipFile("second"), ...FAST]);
    release();
    const firstRun = await first.done;
    expect(second.code).toBe(4);
    expect(second.stderr).toMatch(
      /another deploy holds .*:live: a deploy by ci@test \(run [0-9a-f]+\) started at/,
    );
    expect(firstRun.code, firstRun.stderr).toBe(0);
    expect(lambda.state(name).aliases.live?.version).toBe("2");
    // The refused deploy uploaded nothing.
    expect(callsOf(name, "UpdateFunctionCode")).toHaveLength(1);
  });

  it("of two deploys that read the alias at the same moment, the conditional update lets one through", async () => {
    const name = promotedFunction();
    let waiting: (() => void)[] = [];
    // Answer GetAlias only once both deploys have asked: both see the same RevisionId.
    lambda.onRequest = async (operation, input) => {
      if (operation !== "GetAlias" || input.functionName !== name) return;
      await new Promise<void>((resolve) => {
        waiting.push(resolve);
        if (waiting.length === 2) {
          for (const wake of waiting) wake();
          waiting = [];
          lambda.onRequest = undefined;
        }
      });
    };
    const [a, b] = await Promise.all([
      run(["deploy", "--function", name, "--zip", zipFile("race-a"), ...FAST]),
      run(["deploy", "--function", name, "--zip", zipFile("race-b"), ...FAST]),
    ]);
    const codes = [a.code, b.code].sort();
    expect(codes, `${a.stderr}\n${b.stderr}`).toEqual([0, 4]);
    const refused = a.code === 4 ? a : b;
    expect(refused.stderr).toMatch(/changed under this deploy \(could not hold the alias\)/);
    expect(
      callsOf(name, "UpdateAlias").filter((r) => r.errorType === "PreconditionFailedException"),
    ).toHaveLength(1);
    expect(lambda.state(name).aliases.live?.version).toBe("2");
  });

  it("takes over a hold whose deploy crashed once the hold has expired", async () => {
    const name = promotedFunction();
    const abandoned: DeploymentRecord = {
      state: "deploying",
      live: "1",
      version: "-",
      previous: null,
      at: "2026-01-01T00:00:00Z",
      expires: "2026-01-01T00:30:00Z",
      by: "crashed@ci",
      id: "deadbeef",
    };
    lambda.setAlias(name, "live", "1", encodeRecord(abandoned));
    const result = await cli(["deploy", "--function", name, "--zip", zipFile("takeover"), ...FAST]);
    expect(result.code, result.stderr).toBe(0);
    expect(recordOf(name)).toMatchObject({ state: "promoted", live: "2" });
  });
});

describe("AWS trouble", () => {
  it("retries a throttled API (UpdateAlias, Invoke, PublishVersion) and still deploys", async () => {
    const name = promotedFunction();
    lambda.failNext(2, "TooManyRequestsException", "UpdateAlias");
    lambda.failNext(1, "TooManyRequestsException", "Invoke");
    lambda.failNext(1, "TooManyRequestsException", "PublishVersion");
    const result = await cli(["deploy", "--function", name, "--zip", zipFile("throttled"), ...FAST]);
    expect(result.code, result.stderr).toBe(0);
    expect(callsOf(name, "UpdateAlias").filter((r) => r.status === 429)).toHaveLength(2);
    expect(callsOf(name, "Invoke").filter((r) => r.status === 429)).toHaveLength(1);
    expect(callsOf(name, "PublishVersion").filter((r) => r.status === 429)).toHaveLength(1);
    expect(lambda.state(name).aliases.live?.version).toBe("2");
  });

  it("gives up after --max-attempts with exit 3, and puts live back", async () => {
    const name = promotedFunction();
    lambda.failNext(100, "TooManyRequestsException", "Invoke");
    const result = await cli([
      "deploy",
      "--function",
      name,
      "--zip",
      zipFile("gives-up"),
      ...FAST,
      "--max-attempts",
      "2",
    ]);
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(
      /Invoke .* failed: TooManyRequestsException.*still throttled after the retries/,
    );
    expect(lambda.state(name).aliases.live).toMatchObject({ version: "1", weights: {} });
    expect(recordOf(name)).toMatchObject({ state: "failed", live: "1" });
  });

  it("when live cannot be put back (exit 5), the command it prints is the one that fixes it", async () => {
    const name = promotedFunction();
    lambda.updateConfiguration(name, {
      environment: { ...AGENT_ENV, AGENT_SMOKE_TOOLS: "bash,definitely-not-installed" },
    });
    // Alias writes are throttled from the failed smoke check on: the put-back fails too.
    lambda.onRequest = (operation, input) => {
      if (operation === "Invoke" && input.functionName === name) {
        lambda.failNext(100, "TooManyRequestsException", "UpdateAlias");
        lambda.onRequest = undefined;
      }
    };
    const result = await cli(["deploy", "--function", name, ...FAST, "--max-attempts", "2"]);
    expect(result.code).toBe(5);
    // No step was reached: every invocation still goes to version 1, and the message says so.
    expect(result.stderr).toMatch(/it still serves version 1 to every invocation/);
    const fix =
      /fix it with `npm run rollout -- (rollback --function \S+ --to 1 --break-hold [0-9a-f]+)`/.exec(
        result.stderr,
      );
    expect(fix, result.stderr).not.toBeNull();
    lambda.clearFailures();
    const fixed = await cli(fix![1]!.split(" "));
    expect(fixed.code, fixed.stderr).toBe(0);
    expect(lambda.state(name).aliases.live).toMatchObject({ version: "1", weights: {} });
    expect(recordOf(name)).toMatchObject({ state: "rolled-back", live: "1" });
  });

  it("recognises its own alias update whose answer was lost", async () => {
    const name = promotedFunction();
    lambda.failNext(1, "ConnectionReset", "UpdateAlias", { afterHandling: true });
    const result = await cli(["deploy", "--function", name, "--zip", zipFile("reset"), ...FAST]);
    expect(result.code, result.stderr).toBe(0);
    expect(callsOf(name, "UpdateAlias").some((r) => r.errorType === "PreconditionFailedException")).toBe(
      true,
    );
    expect(lambda.state(name).aliases.live?.version).toBe("2");
  });

  it("a smoke invocation Lambda never answers is given up after the function's timeout, and live is put back", async () => {
    const name = promotedFunction({ timeoutSeconds: 2 });
    lambda.onRequest = (operation, input) =>
      operation === "Invoke" && input.functionName === name ? new Promise<void>(() => {}) : undefined;
    const client = new LambdaClient({ ...lambda.clientConfig, maxAttempts: 3 });
    try {
      const result = await deployFunction(
        {
          client,
          log: () => {},
          by: "ci@test",
          runId: "0000cafe",
          pollSeconds: 0.02,
          maxWaitSeconds: 30,
          smokeGraceMs: 200,
        },
        { functionName: name, alias: "live", smoke: {}, steps: [], stepWaitMs: 0, leaseMs: 120_000 },
      );
      lambda.onRequest = undefined;
      expect(result.error).toMatchObject({
        code: "DEPLOY_ERR_AWS",
        message: expect.stringMatching(/no answer within 2\.2 s/),
      });
      // One invocation, not one per retry: the bound covers the whole call.
      expect(callsOf(name, "Invoke")).toHaveLength(1);
      expect(lambda.state(name).aliases.live).toMatchObject({ version: "1", weights: {} });
      expect(recordOf(name)).toMatchObject({ state: "failed", live: "1" });
    } finally {
      client.destroy();
    }
  }, 60_000);

  it("names the missing permission when the role may not move the alias", async () => {
    const name = promotedFunction();
    lambda.failNext(1, "AccessDeniedException", "UpdateAlias");
    const result = await cli(["deploy", "--function", name, ...FAST]);
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/the deploying role needs lambda:UpdateAlias on/);
    expect(lambda.state(name).aliases.live?.version).toBe("1");
  });

  it("on SIGINT during a step puts live back and exits 130", async () => {
    const name = promotedFunction();
    const deploy = start([
      "deploy",
      "--function",
      name,
      "--zip",
      zipFile("interrupted"),
      "--steps",
      "25",
      "--step-wait",
      "30s",
      ...FAST,
    ]);
    await until(
      () => Object.keys(lambda.state(name).aliases.live?.weights ?? {}).length > 0,
      20_000,
      "the 25% step",
    );
    deploy.child.kill("SIGINT");
    const result = await deploy.done;
    expect(result.code, result.stderr).toBe(130);
    expect(lambda.state(name).aliases.live).toMatchObject({ version: "1", weights: {} });
    expect(recordOf(name)).toMatchObject({
      state: "failed",
      live: "1",
      reason: expect.stringContaining("SIGINT"),
    });
  });
});

describe("IAM", () => {
  it("every Lambda call deploy, rollback and status make is an action the policy in docs/deploy.md allows", async () => {
    const doc = readFileSync(join(ROOT, "docs/deploy.md"), "utf8");
    const section = doc.slice(doc.indexOf("## IAM for deploying"));
    const policy = JSON.parse(/```json\n([\s\S]*?)\n```/.exec(section)![1]!) as {
      Statement: { Action: string[]; Resource: string[] }[];
    };
    const allowed = new Set(policy.Statement.flatMap((statement) => statement.Action));
    // A function with no alias yet (CreateAlias), a stepped zip deploy, a checked rollback, status.
    const fresh = `jnlp-agent-test-${++seq}`;
    lambda.createFunction({ name: fresh, timeoutSeconds: 30, environment: AGENT_ENV });
    const name = promotedFunction();
    const since = lambda.requests.length;
    for (const args of [
      ["deploy", "--function", fresh, ...FAST],
      [
        "deploy",
        "--function",
        name,
        "--zip",
        zipFile("iam"),
        "--steps",
        "50",
        "--step-wait",
        "10ms",
        ...FAST,
      ],
      ["rollback", "--function", name, "--check"],
      ["status", "--function", name],
    ]) {
      const result = await cli(args);
      expect(result.code, result.stderr).toBe(0);
    }
    const operations = new Set(
      lambda.requests
        .slice(since)
        .filter((r) => r.functionName === fresh || r.functionName === name)
        .map((r) => r.operation),
    );
    expect(operations).toEqual(
      new Set([
        "GetFunction",
        "GetAlias",
        "CreateAlias",
        "UpdateAlias",
        "UpdateFunctionCode",
        "PublishVersion",
        "Invoke",
      ]),
    );
    for (const operation of operations) {
      expect(allowed, operation).toContain(`lambda:${operation === "Invoke" ? "InvokeFunction" : operation}`);
    }
  });
});

describe("bad input", () => {
  it("lists every argument problem at once, exit 2, and calls no AWS API", async () => {
    const before = lambda.requests.length;
    const result = await cli([
      "deploy",
      "--function",
      "bad name",
      "--steps",
      "50,10",
      "--step-wait",
      "soon",
      "--to",
      "3",
      "--controller-url",
      "ftp://x",
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/invalid arguments \(5 problems\)/);
    expect(result.stderr).toMatch(/--steps must be ascending/);
    expect(result.stderr).toMatch(/--step-wait must be a duration/);
    expect(result.stderr).toMatch(/--to is not an option of deploy/);
    expect(lambda.requests.length).toBe(before);
  });

  it("checks every function selected before it changes any: a later one's unfit zip or too short a lease leaves the first alone", async () => {
    const first = promotedFunction();
    const otherHandler = `jnlp-agent-test-${++seq}`;
    lambda.createFunction({ name: otherHandler, timeoutSeconds: 30, handler: "other/main.handler" });
    const slow = `jnlp-agent-test-${++seq}`;
    lambda.createFunction({ name: slow, timeoutSeconds: 90 }); // needs a lease over 150 s
    for (const [second, rule] of [
      [otherHandler, /holds no other\/main\.js/],
      [slow, /--lease 120000 ms is too short/],
    ] as const) {
      const result = await cli([
        "deploy",
        "--function",
        first,
        "--function",
        second,
        "--zip",
        zipFile(`preflight-${second}`),
        ...FAST,
        "--json",
      ]);
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toMatch(rule);
      expect(result.stderr).toMatch(/nothing was deployed/);
      expect(JSON.parse(result.stdout).error.code).toMatch(/^DEPLOY_ERR_(ARTIFACT|USAGE)$/);
    }
    expect(callsOf(first, "UpdateFunctionCode")).toHaveLength(0);
    expect(callsOf(first, "UpdateAlias")).toHaveLength(0);
    expect(recordOf(first)).toMatchObject({ state: "promoted", live: "1" });
  });

  it("with --json, a usage error is JSON on stdout too, with its code", async () => {
    const result = await cli(["deploy", "--steps", "50,10", "--json"]);
    expect(result.code).toBe(2);
    expect(JSON.parse(result.stdout)).toEqual({
      error: { code: "DEPLOY_ERR_USAGE", message: expect.stringMatching(/--steps must be ascending/) },
    });
    expect(result.stderr).toMatch(/^rollout: DEPLOY_ERR_USAGE: invalid arguments/);
    const notZip = await cli(["deploy", "--function", "jnlp-agent-x", "--zip", "/dev/null", "--json"]);
    expect(JSON.parse(notZip.stdout).error.code).toBe("DEPLOY_ERR_ARTIFACT");
  });

  it("refuses a zip that is not one, or lacks the function's handler, before changing anything", async () => {
    const name = promotedFunction();
    const notZip = join(scratch.path, "not.zip");
    writeFileSync(notZip, "just text");
    const a = await cli(["deploy", "--function", name, "--zip", notZip, ...FAST]);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/not a zip file/);
    const wrongZip = join(scratch.path, "wrong.zip");
    writeFileSync(wrongZip, bundleZip(join(ROOT, "test/fixtures/lambda-functions"), {}, "all"));
    const b = await cli(["deploy", "--function", name, "--zip", wrongZip, ...FAST]);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(
      /holds no dist\/lambda\/handler.js, .* for the function's handler dist\/lambda\/handler.handler/,
    );
    expect(callsOf(name, "UpdateFunctionCode")).toHaveLength(0);
    expect(recordOf(name)).toMatchObject({ state: "promoted", live: "1" });
  });
});

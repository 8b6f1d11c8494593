import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { zipSync } from "fflate";
import { afterAll, describe, expect, it } from "vitest";
import { checkArtifactFits, DeployError, parseRolloutArgs, readZipArtifact } from "../../deploy/index.ts";
import { ROOT } from "../support/harness.ts";

const dir = mkdtempSync(join(tmpdir(), "deploy-args-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function usageError(argv: string[], env: NodeJS.ProcessEnv = {}, cwd = dir): Promise<DeployError> {
  try {
    await parseRolloutArgs(argv, env, cwd);
  } catch (error) {
    if (error instanceof DeployError) return error;
    throw error;
  }
  throw new Error("expected a DeployError");
}

describe("parseRolloutArgs", () => {
  it("reads the function names and the alias from serverless.yml", async () => {
    const command = await parseRolloutArgs(["status"], {}, ROOT);
    expect(command).toMatchObject({
      command: "status",
      functions: expect.arrayContaining(["jnlp-agent-git-bash", "jnlp-agent-git-bash-node"]),
      alias: "live",
    });
  });

  it("takes the documented defaults", async () => {
    const command = await parseRolloutArgs(["deploy", "--function", "f"], { GITHUB_ACTOR: "octocat" }, dir);
    expect(command).toMatchObject({
      functions: ["f"],
      alias: "live",
      by: "octocat",
      maxAttempts: 8,
      steps: [],
      stepWaitMs: 60_000,
      leaseMs: 1_800_000,
      pollMs: 2_000,
      maxWaitMs: 600_000,
      smoke: {},
      check: false,
      json: false,
    });
  });

  it("parses steps, durations and the controller check, the secret from a file or the environment only", async () => {
    const secretFile = join(dir, "secret");
    writeFileSync(secretFile, "s3cr3t\n");
    const command = await parseRolloutArgs(
      [
        "deploy",
        "--function",
        "f",
        "--steps",
        "10,50%",
        "--step-wait",
        "90s",
        "--lease",
        "45m",
        "--controller-url",
        "https://ctl.example.com/",
        "--node-name",
        "smoke-1",
        "--node-secret-file",
        secretFile,
      ],
      {},
      dir,
    );
    expect(command).toMatchObject({
      steps: [10, 50],
      stepWaitMs: 90_000,
      leaseMs: 2_700_000,
      smoke: { controllerUrl: "https://ctl.example.com/", nodeName: "smoke-1", nodeSecret: "s3cr3t" },
    });
    const fromEnv = await parseRolloutArgs(
      ["rollback", "--function", "f", "--check", "--controller-url", "wss://c/", "--node-name", "n"],
      { DEPLOY_SMOKE_NODE_SECRET: "from-env" },
      dir,
    );
    expect(fromEnv).toMatchObject({ check: true, smoke: { nodeSecret: "from-env" } });
  });

  it("lists every problem at once, each naming the option and the value", async () => {
    const error = await usageError([
      "deploy",
      "--function",
      "no spaces allowed",
      "--alias",
      "123",
      "--steps",
      "50,20",
      "--lease",
      "forever",
      "--max-attempts",
      "0",
      "--zip",
      "a.zip",
      "--image-uri",
      "x",
      "--node-name",
      "n",
    ]);
    expect(error.code).toBe("DEPLOY_ERR_USAGE");
    expect(error.message).toMatch(/^invalid arguments \(8 problems\):/);
    for (const expected of [
      '--function "no spaces allowed": not a Lambda function name',
      '--alias "123": not a Lambda alias name',
      '--steps must be ascending whole percentages between 1 and 99 (e.g. 10,50), got "50,20"',
      '--lease must be a duration (500ms, 30s, 5m, or milliseconds), got "forever"',
      '--max-attempts must be an integer from 1 to 20, got "0"',
      "give --zip or --image-uri, not both",
      "--node-name needs the agent's secret in --node-secret-file or $DEPLOY_SMOKE_NODE_SECRET",
      "--node-name needs --controller-url",
    ]) {
      expect(error.message).toContain(`\n  - ${expected}`);
    }
  });

  it.each(["--step-wait", "--poll", "--max-wait", "--lease"])(
    "refuses %s past 24h (a wait of 2^31 ms or more would end at once in Node)",
    async (option) => {
      const error = await usageError(["deploy", "--zip", "a.zip", option, "30d"]);
      expect(error.code).toBe("DEPLOY_ERR_USAGE");
      expect(error.message).toContain(`\n  - ${option} must be at most 24h, got "30d"`);
    },
  );

  it("refuses options of another command, unknown options and commands", async () => {
    expect((await usageError(["status", "--function", "f", "--zip", "x.zip", "--to", "3"])).message).toMatch(
      /--zip is not an option of status[\s\S]*--to is not an option of status/,
    );
    expect((await usageError(["deploy", "--function", "f", "--force"])).message).toMatch(
      /Unknown option '--force'/,
    );
    expect((await usageError(["promote"])).message).toMatch(/unknown command "promote"/);
    expect((await usageError(["rollback", "--function", "f", "--to", "latest"])).message).toMatch(
      /--to must be a published version number/,
    );
    for (const to of ["0", "007", "-1", "1.5"]) {
      expect((await usageError(["rollback", "--function", "f", `--to=${to}`])).message, to).toMatch(
        /--to must be a published version number \(1, 2, \.\.\.\)/,
      );
    }
    expect((await usageError(["status", "--function", "f", "--break-hold", "x"])).message).toMatch(
      /--break-hold is not an option of status/,
    );
    expect((await usageError(["rollback", "--function", "f", "--break-hold", "two words"])).message).toMatch(
      /--break-hold must be the run id a refusal names/,
    );
  });

  it("deploys a function named twice once", async () => {
    const command = await parseRolloutArgs(
      ["deploy", "--function", "f", "--function", "g", "--function", "f"],
      {},
      dir,
    );
    expect(command).toMatchObject({ functions: ["f", "g"] });
  });

  it("needs --function when there is no serverless.yml to read", async () => {
    expect((await usageError(["status"])).message).toMatch(
      /--config serverless.yml: cannot read it \(ENOENT\); give --function NAME/,
    );
    writeFileSync(join(dir, "stage.yml"), "functions:\n  agent:\n    name: ${sls:stage}-agent\n");
    expect((await usageError(["status", "--config", "stage.yml"])).message).toMatch(
      /function agent has no literal name \(it depends on the stage\): give --function/,
    );
  });
});

describe("deployment artifacts", () => {
  it("reads a zip and lists its entries; refuses what is not one", async () => {
    const good = join(dir, "good.zip");
    writeFileSync(good, zipSync({ "dist/lambda/handler.js": Buffer.from("export const handler = 1;") }));
    const artifact = await readZipArtifact(good);
    expect(artifact).toMatchObject({ kind: "zip", entries: ["dist/lambda/handler.js"] });

    const text = join(dir, "text.zip");
    writeFileSync(text, "hello");
    await expect(readZipArtifact(text)).rejects.toMatchObject({
      code: "DEPLOY_ERR_ARTIFACT",
      message: /not a zip file/,
    });
    await expect(readZipArtifact(join(dir, "missing.zip"))).rejects.toMatchObject({
      code: "DEPLOY_ERR_ARTIFACT",
      message: /cannot read it \(ENOENT\); build it with `npm run package:lambda`/,
    });
  });

  it("checks that the artifact fits the function: package type and handler module", async () => {
    const zip = join(dir, "fits.zip");
    writeFileSync(
      zip,
      zipSync({ "dist/lambda/handler.js": Buffer.from(""), "package.json": Buffer.from("{}") }),
    );
    const artifact = await readZipArtifact(zip);
    expect(() => checkArtifactFits(artifact, "f", "Zip", "dist/lambda/handler.handler")).not.toThrow();
    expect(() => checkArtifactFits(artifact, "f", "Zip", "index.handler")).toThrow(
      /holds no index.js, index.mjs, index.cjs for the function's handler index.handler/,
    );
    expect(() => checkArtifactFits(artifact, "f", "Image", undefined)).toThrow(
      /packaged as Image: give --image-uri/,
    );
  });
});

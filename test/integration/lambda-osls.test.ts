import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { inflateRawSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SmokeReport } from "../../lambda-handler/index.ts";
import { ROOT, tempDir } from "../support/harness.ts";
import { type OslsRun, osls, runProcess } from "../support/osls.ts";

/**
 * The Serverless Framework side, offline: `osls package` (the open-source fork, pinned as a
 * devDependency) must produce the CloudFormation and the artifact we mean to deploy. No AWS
 * account: dummy credentials. (`osls invoke local` is lambda-osls-invoke.test.ts: the two files
 * run side by side.)
 */
const FUNCTIONS = ["jnlp-agent-git-bash", "jnlp-agent-git-bash-node"] as const;
/** The zip holds the bundle: a few hundred KiB compressed. A zip with node_modules would be MiBs. */
const MAX_ARTIFACT_BYTES = 1_048_576;

type Template = { Resources: Record<string, { Type: string; Properties: Record<string, unknown> }> };

function resourcesOf(template: Template, type: string) {
  return Object.entries(template.Resources).filter(([, r]) => r.Type === type);
}

/** Entries of a zip file from its central directory: name, uncompressed size and content. */
function zipEntries(zip: Buffer): { name: string; size: number; data: () => Buffer }[] {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error("not a zip file: no end of central directory record");
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  const entries: { name: string; size: number; data: () => Buffer }[] = [];
  for (let i = 0; i < count; i++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error(`bad central directory entry at ${at}`);
    const method = zip.readUInt16LE(at + 10);
    const compressedSize = zip.readUInt32LE(at + 20);
    const size = zip.readUInt32LE(at + 24);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    const data = () => {
      const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const raw = zip.subarray(start, start + compressedSize);
      return method === 8 ? inflateRawSync(raw) : Buffer.from(raw);
    };
    entries.push({ name: zip.subarray(at + 46, at + 46 + nameLength).toString("utf8"), size, data });
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

let scratch: ReturnType<typeof tempDir>;
beforeAll(() => {
  scratch = tempDir("osls-");
});
afterAll(() => {
  scratch.remove();
});

describe("serverless.yml, packaged offline with osls", () => {
  let run: OslsRun;
  let template: Template;
  const packageDir = () => join(scratch.path, "package");

  beforeAll(async () => {
    run = await osls(["package", "--package", packageDir(), "--stage", "test"], scratch.path);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    template = JSON.parse(
      readFileSync(join(packageDir(), "cloudformation-template-update-stack.json"), "utf8"),
    ) as Template;
  }, 90_000);

  it("packages offline with dummy credentials: the CloudFormation templates and one artifact, nothing else", () => {
    // How long packaging takes is measured by the bench (`npm run bench`, row "osls package").
    expect(readdirSync(packageDir()).sort()).toEqual([
      "cloudformation-template-create-stack.json",
      "cloudformation-template-update-stack.json",
      expect.stringMatching(/\.zip$/),
      "serverless-state.json",
    ]);
  });

  it("defines the two jnlp-agent-* functions: nodejs22.x, arm64, 900 s, deliberate memory and /tmp", () => {
    const functions = Object.fromEntries(
      resourcesOf(template, "AWS::Lambda::Function").map(([, r]) => [
        r.Properties.FunctionName,
        r.Properties,
      ]),
    );
    expect(Object.keys(functions).sort()).toEqual([...FUNCTIONS]);
    for (const name of FUNCTIONS) {
      expect(functions[name]).toMatchObject({
        Runtime: "nodejs22.x",
        Architectures: ["arm64"],
        Timeout: 900,
        Handler: "dist/lambda/handler.handler",
        Environment: { Variables: expect.objectContaining({ AGENT_DEADLINE_MARGIN_MS: "20000" }) },
      });
      expect(functions[name]).not.toHaveProperty("ReservedConcurrentExecutions");
    }
    expect(functions["jnlp-agent-git-bash"]).toMatchObject({
      MemorySize: 256,
      EphemeralStorage: { Size: 2048 },
      Environment: {
        Variables: expect.objectContaining({
          AGENT_SMOKE_TOOLS: "bash,git",
          AGENT_LABELS: "git bash",
          AGENT_EPHEMERAL_STORAGE_MB: "2048",
        }),
      },
    });
    expect(functions["jnlp-agent-git-bash-node"]).toMatchObject({
      MemorySize: 1024,
      EphemeralStorage: { Size: 4096 },
      Environment: {
        Variables: expect.objectContaining({
          AGENT_SMOKE_TOOLS: "bash,git,node",
          AGENT_EPHEMERAL_STORAGE_MB: "4096",
        }),
      },
    });
  });

  it("never retries an async invocation, and drops events older than the plugin waits: on $LATEST and on live", () => {
    const configs = resourcesOf(template, "AWS::Lambda::EventInvokeConfig").map(([, r]) => r.Properties);
    // Async settings are per qualifier: callers invoke the live alias, so it needs its own.
    expect(configs.map((c) => c.Qualifier).sort()).toEqual(["$LATEST", "$LATEST", "live", "live"]);
    for (const config of configs) {
      expect(config).toMatchObject({ MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 60 });
    }
  });

  it("publishes a version per deploy, kept for rollbacks, and a live alias per function that CloudFormation never moves", () => {
    const functionIds = Object.fromEntries(
      resourcesOf(template, "AWS::Lambda::Function").map(([id, r]) => [
        r.Properties.FunctionName as string,
        id,
      ]),
    );
    const versions = resourcesOf(template, "AWS::Lambda::Version");
    expect(versions).toHaveLength(FUNCTIONS.length);
    for (const [, version] of versions) {
      expect((version as unknown as { DeletionPolicy: string }).DeletionPolicy).toBe("Retain");
    }
    const aliases = resourcesOf(template, "AWS::Lambda::Alias");
    expect(aliases).toHaveLength(FUNCTIONS.length);
    for (const name of FUNCTIONS) {
      const alias = aliases.find(
        ([, a]) => (a.Properties.FunctionName as { Ref: string }).Ref === functionIds[name],
      );
      // Created on $LATEST and never changed by a stack update: the deploy command moves it.
      expect(alias?.[1].Properties).toEqual({
        FunctionName: { Ref: functionIds[name] },
        Name: "live",
        FunctionVersion: "$LATEST",
      });
      const evConf = resourcesOf(template, "AWS::Lambda::EventInvokeConfig").find(
        ([, c]) =>
          c.Properties.Qualifier === "live" &&
          (c.Properties.FunctionName as { Ref: string }).Ref === functionIds[name],
      );
      expect(evConf).toBeDefined();
      expect((evConf![1] as unknown as { DependsOn: string[] }).DependsOn).toEqual([alias![0]]);
    }
    const outputs = (template as unknown as { Outputs: Record<string, { Value: unknown }> }).Outputs;
    expect(Object.values(outputs).map((o) => o.Value)).toEqual(
      expect.arrayContaining(aliases.map(([id]) => ({ Ref: id }))),
    );
  });

  it("grants the functions' role CloudWatch Logs actions only", () => {
    const roles = resourcesOf(template, "AWS::IAM::Role");
    expect(roles).toHaveLength(1);
    const policies = roles[0]![1].Properties.Policies as { PolicyDocument: { Statement: unknown[] } }[];
    const statements = policies.flatMap((p) => p.PolicyDocument.Statement) as {
      Effect: string;
      Action: string[];
      Resource: unknown[];
    }[];
    expect(statements.length).toBeGreaterThan(0);
    for (const statement of statements) {
      expect(statement.Effect).toBe("Allow");
      for (const action of statement.Action) expect(action).toMatch(/^logs:/);
      for (const resource of statement.Resource) {
        // The functions' own groups, or the group of the job logs' copies.
        expect(JSON.stringify(resource)).toMatch(
          /log-group:\/aws\/lambda\/jnlp-agent-git-bash(-node)?:|"Fn::GetAtt":\["AgentJobLogGroup","Arn"\]/,
        );
      }
    }
    expect(roles[0]![1].Properties).not.toHaveProperty("ManagedPolicyArns");
  });

  it("keeps logs for a bounded time", () => {
    for (const [, group] of resourcesOf(template, "AWS::Logs::LogGroup")) {
      expect(group.Properties.RetentionInDays).toBe(14);
    }
  });

  it("ships the esbuild bundle only: small, no node_modules, no sources, no source map", () => {
    const zipPath = join(packageDir(), "jnlp-agent.zip");
    const size = statSync(zipPath).size;
    expect(size).toBeGreaterThan(10_000);
    expect(size).toBeLessThan(MAX_ARTIFACT_BYTES);
    const names = zipEntries(readFileSync(zipPath))
      .map((e) => e.name)
      .sort();
    // The handler, the chunks it loads on demand (the AWS SDK for the CloudWatch copy), package.json.
    const chunks = names.filter((name) => name.startsWith("dist/lambda/chunks/"));
    // Chunk names come from their entry files (node-tar's is index.min.js): dots included.
    for (const name of chunks) expect(name).toMatch(/^dist\/lambda\/chunks\/([\w.-]+\.js(\.LEGAL\.txt)?)?$/);
    expect(names.filter((name) => !chunks.includes(name))).toEqual([
      "dist/lambda/handler.js",
      "package.json",
    ]);
    // The bundle is ESM in a .js file: the package.json shipped with it must say "type": "module".
    const manifest = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { type?: string };
    expect(manifest.type).toBe("module");
  });

  it("runs from the artifact alone, as Lambda loads it: an ES module, no node_modules", async () => {
    const taskRoot = join(scratch.path, "var-task");
    for (const entry of zipEntries(readFileSync(join(packageDir(), "jnlp-agent.zip")))) {
      mkdirSync(dirname(join(taskRoot, entry.name)), { recursive: true });
      writeFileSync(join(taskRoot, entry.name), entry.data());
    }
    const script = [
      `const { handler } = await import(${JSON.stringify(join(taskRoot, "dist/lambda/handler.js"))});`,
      "const end = Date.now() + 60000;",
      `const report = await handler({ smoke: true, work_dir: ${JSON.stringify(join(scratch.path, "smoke-work"))} }, { getRemainingTimeInMillis: () => end - Date.now() });`,
      "const error = await handler({}, { getRemainingTimeInMillis: () => end - Date.now() }).catch((e) => e);",
      "process.stdout.write(JSON.stringify({ report, errorName: error.name, errorMessage: error.message }));",
    ].join("\n");
    const { code, stdout, stderr } = await runProcess(
      process.execPath,
      ["--input-type=module", "-e", script],
      {
        cwd: taskRoot,
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", AGENT_SMOKE_TOOLS: "bash" },
      },
    );
    expect(code, stderr).toBe(0);
    const out = JSON.parse(stdout) as { report: SmokeReport; errorName: string; errorMessage: string };
    expect(out.report).toMatchObject({ smoke: true, ok: true });
    // Lambda reports `errorType` from the error's name: stable even in the minified bundle.
    expect(out.errorName).toBe("ConfigError");
    expect(out.errorMessage).toMatch(/^AGENT_ERR_CONFIG: /);
  });

  it("takes a git layer, a concurrency cap and sizes as params", async () => {
    const dir = join(scratch.path, "package-params");
    const layer = "arn:aws:lambda:us-east-1:123456789012:layer:git-al2023-arm64:3";
    const withParams = await osls(
      [
        "package",
        "--package",
        dir,
        "--stage",
        "test",
        `--param=gitLayerArn=${layer}`,
        "--param=gitBashConcurrency=5",
        "--param=gitBashMemoryMb=512",
      ],
      scratch.path,
    );
    expect(withParams.code, withParams.stderr).toBe(0);
    const t = JSON.parse(
      readFileSync(join(dir, "cloudformation-template-update-stack.json"), "utf8"),
    ) as Template & {
      Conditions: Record<string, unknown>;
    };
    const gitBash = resourcesOf(t, "AWS::Lambda::Function").find(
      ([, r]) => r.Properties.FunctionName === "jnlp-agent-git-bash",
    )![1].Properties;
    expect(gitBash).toMatchObject({ MemorySize: 512, ReservedConcurrentExecutions: 5 });
    expect(gitBash.Layers).toEqual([{ "Fn::If": ["HasGitLayer", layer, { Ref: "AWS::NoValue" }] }]);
    expect(t.Conditions.HasGitLayer).toEqual({
      "Fn::And": [{ "Fn::Not": [{ "Fn::Equals": [layer, ""] }] }, { "Fn::Equals": ["zip", "zip"] }],
    });
    // Without the param the condition is false: no layer at all.
    expect((template as unknown as { Conditions: Record<string, unknown> }).Conditions.HasGitLayer).toEqual({
      "Fn::And": [{ "Fn::Not": [{ "Fn::Equals": ["", ""] }] }, { "Fn::Equals": ["zip", "zip"] }],
    });
  }, 90_000);
});

describe("serverless.yml, image form (packageType=image), packaged offline", () => {
  const IMAGE_URI =
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/ephemeral-agent@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  let template: Template & { Conditions: Record<string, unknown> };
  let dir: string;

  beforeAll(async () => {
    dir = join(scratch.path, "package-image");
    const run = await osls(
      [
        "package",
        "--package",
        dir,
        "--stage",
        "test",
        "--param=packageType=image",
        `--param=imageUri=${IMAGE_URI}`,
        "--param=architecture=x86_64",
        // Ignored for images: the condition leaves the layer out.
        "--param=gitLayerArn=arn:aws:lambda:us-east-1:123456789012:layer:git:1",
      ],
      scratch.path,
    );
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    template = JSON.parse(
      readFileSync(join(dir, "cloudformation-template-update-stack.json"), "utf8"),
    ) as typeof template;
  }, 90_000);

  it("deploys the same two functions from the image: package type Image, the digest-pinned URI, no handler or runtime", () => {
    const functions = resourcesOf(template, "AWS::Lambda::Function").map(([, r]) => r.Properties);
    expect(functions.map((f) => f.FunctionName).sort()).toEqual([...FUNCTIONS]);
    for (const f of functions) {
      expect(f).toMatchObject({
        PackageType: "Image",
        Code: { ImageUri: IMAGE_URI },
        Architectures: ["x86_64"],
        Timeout: 900,
        Environment: { Variables: expect.objectContaining({ AGENT_DEADLINE_MARGIN_MS: "20000" }) },
      });
      expect(f).not.toHaveProperty("Handler");
      expect(f).not.toHaveProperty("Runtime");
    }
    const byName = Object.fromEntries(functions.map((f) => [f.FunctionName, f]));
    expect(byName["jnlp-agent-git-bash"]).toMatchObject({
      MemorySize: 256,
      EphemeralStorage: { Size: 2048 },
    });
    expect(byName["jnlp-agent-git-bash-node"]).toMatchObject({
      MemorySize: 1024,
      EphemeralStorage: { Size: 4096 },
    });
    // A layer cannot be attached to an image function: the condition is false whatever the ARN.
    expect(template.Conditions.HasGitLayer).toMatchObject({
      "Fn::And": [expect.anything(), { "Fn::Equals": ["image", "zip"] }],
    });
  });

  it("keeps retries off, and builds no zip", () => {
    for (const [, r] of resourcesOf(template, "AWS::Lambda::EventInvokeConfig")) {
      expect(r.Properties).toMatchObject({ MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 60 });
    }
    expect(existsSync(join(dir, "jnlp-agent.zip"))).toBe(false);
  });

  it("publishes a version per deploy and keeps the live alias (with its async settings), as the zip form does", () => {
    expect(resourcesOf(template, "AWS::Lambda::Version")).toHaveLength(FUNCTIONS.length);
    const aliases = resourcesOf(template, "AWS::Lambda::Alias").map(([, a]) => a.Properties);
    expect(aliases).toHaveLength(FUNCTIONS.length);
    for (const alias of aliases) expect(alias).toMatchObject({ Name: "live", FunctionVersion: "$LATEST" });
    const qualifiers = resourcesOf(template, "AWS::Lambda::EventInvokeConfig").map(
      ([, c]) => c.Properties.Qualifier,
    );
    expect(qualifiers.sort()).toEqual(["$LATEST", "$LATEST", "live", "live"]);
  });

  it("refuses an image form without an image URI, with one Lambda cannot run, and an unknown package type", async () => {
    const ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ephemeral-agent";
    const cases: [string[], RegExp][] = [
      [["--param=packageType=image"], /IMAGE_URI_MISSING.*--param="imageUri=/],
      // A digest that is not 64 hex digits: CloudFormation would fail only at deploy.
      [["--param=packageType=image", `--param=imageUri=${ecr}@sha256:abc`], /IMAGE_URI_INVALID.*sha256:abc/],
      // Lambda runs images from ECR only, in the function's own region.
      [
        ["--param=packageType=image", "--param=imageUri=docker.io/library/ephemeral-agent:0.1.0"],
        /IMAGE_URI_INVALID.*docker\.io\/library\/ephemeral-agent:0\.1\.0/,
      ],
      [
        [
          "--param=packageType=image",
          `--param=imageUri=${ecr}@sha256:${"a".repeat(64)}`,
          "--region",
          "eu-west-1",
        ],
        /IMAGE_URI_REGION.*us-east-1.*eu-west-1/,
      ],
      [["--param=packageType=docker"], /Either "handler" or "image" property needs to be set/],
    ];
    const runs = await Promise.all(
      cases.map(([params], n) =>
        osls(
          ["package", "--package", join(scratch.path, `bad-${n}`), "--stage", "test", ...params],
          scratch.path,
        ),
      ),
    );
    for (const [n, run] of runs.entries()) {
      const [params, message] = cases[n]!;
      expect(run.code, params.join(" ")).not.toBe(0);
      expect(`${run.stdout}${run.stderr}`.replace(/\s+/g, " "), params.join(" ")).toMatch(message);
    }
  }, 90_000);
});

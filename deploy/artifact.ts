import { readFile, stat } from "node:fs/promises";
import { unzipSync } from "fflate";
import { DeployError } from "./errors.ts";

/** Lambda's limits on a zip uploaded directly (UpdateFunctionCode with ZipFile): 50 MB zipped, 250 MB unzipped. */
export const MAX_ZIP_BYTES = 50 * 1024 * 1024;
export const MAX_UNZIPPED_BYTES = 262_144_000;
const IMAGE_URI = /^[a-z0-9.-]+(?::\d+)?\/[a-z0-9._/-]+(?::[\w][\w.-]{0,127}|@sha256:[a-f0-9]{64})$/;

/** What to deploy: a zip (the bytes and the entries' names) or a container image. */
export type Artifact =
  | { kind: "zip"; path: string; bytes: Uint8Array; entries: string[] }
  | { kind: "image"; uri: string };

/**
 * Reads and checks a deployment zip (e.g. `.serverless/jnlp-agent.zip` from `npm run
 * package:lambda`): a readable file, a zip, within Lambda's direct-upload limits. Throws
 * DeployError DEPLOY_ERR_ARTIFACT naming the file and the rule.
 */
export async function readZipArtifact(path: string): Promise<Artifact> {
  const fail = (why: string, cause?: unknown): never => {
    throw new DeployError("DEPLOY_ERR_ARTIFACT", `--zip ${path}: ${why}`, { cause });
  };
  const info = await stat(path).catch((error: unknown) =>
    fail(
      `cannot read it (${(error as NodeJS.ErrnoException).code ?? String(error)}); build it with \`npm run package:lambda\``,
      error,
    ),
  );
  if (!info.isFile()) fail("not a file");
  if (info.size > MAX_ZIP_BYTES) {
    fail(
      `${info.size} bytes; Lambda takes at most ${MAX_ZIP_BYTES} bytes uploaded directly (use a container image beyond)`,
    );
  }
  const bytes = new Uint8Array(await readFile(path));
  const entries: string[] = [];
  let unzippedBytes = 0;
  try {
    // List the entries without inflating them.
    unzipSync(bytes, {
      filter(file) {
        entries.push(file.name);
        unzippedBytes += file.originalSize;
        return false;
      },
    });
  } catch (error) {
    fail(`not a zip file (${(error as Error).message})`, error);
  }
  if (entries.length === 0) fail("the zip is empty");
  if (unzippedBytes > MAX_UNZIPPED_BYTES) {
    fail(`${unzippedBytes} bytes unzipped; Lambda takes at most ${MAX_UNZIPPED_BYTES}`);
  }
  return { kind: "zip", path, bytes, entries };
}

/** Checks the form of an image URI: `registry/repository:tag` or `registry/repository@sha256:digest`. */
export function imageArtifact(uri: string): Artifact {
  if (!IMAGE_URI.test(uri)) {
    throw new DeployError(
      "DEPLOY_ERR_ARTIFACT",
      `--image-uri ${JSON.stringify(uri)}: expected REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST (e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/jnlp-agent:1.4.0)`,
    );
  }
  return { kind: "image", uri };
}

/**
 * Checks an artifact against the function it is for: the package type matches, and a zip holds
 * the module the function's `Handler` names (`dist/lambda/handler.handler` -> dist/lambda/handler.js,
 * .mjs or .cjs), so that a wrong zip is refused before anything changes.
 */
export function checkArtifactFits(
  artifact: Artifact,
  functionName: string,
  packageType: string | undefined,
  handler: string | undefined,
): void {
  const fail = (why: string): never => {
    throw new DeployError("DEPLOY_ERR_ARTIFACT", `${functionName}: ${why}`);
  };
  const type = packageType ?? "Zip";
  if (artifact.kind === "zip" && type !== "Zip") fail(`packaged as ${type}: give --image-uri, not --zip`);
  if (artifact.kind === "image" && type !== "Image") fail(`packaged as ${type}: give --zip, not --image-uri`);
  if (artifact.kind !== "zip" || handler === undefined) return;
  const dot = handler.lastIndexOf(".");
  const modulePath = dot > 0 ? handler.slice(0, dot) : handler;
  const candidates = [".js", ".mjs", ".cjs"].map((ext) => modulePath + ext);
  if (!candidates.some((name) => artifact.entries.includes(name))) {
    fail(
      `${artifact.path} holds no ${candidates.join(", ")} for the function's handler ${handler} (entries: ${artifact.entries.slice(0, 8).join(", ")}${artifact.entries.length > 8 ? ", ..." : ""})`,
    );
  }
}

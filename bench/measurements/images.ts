import { execFileSync, spawnSync } from "node:child_process";
import { createReadStream, existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { createGunzip } from "node:zlib";
import type { BenchContext, Measurement, Row } from "../lib/context.ts";
import { type Figure, measured, notAvailable } from "../lib/figures.ts";

/**
 * (10) The container images' sizes, as a registry stores them (the gzip-compressed layers that
 * `buildah push` writes, which is what ECR keeps and Fargate pulls at every task start: at the
 * client's default gzip level, 5, and at level 9, which docs/ecs.md's push commands ask for) and
 * uncompressed (the layers' tar streams), beside the base image they were built from. Measured
 * on the images `npm run image:test` last built (it records them, and its build times, in its
 * cache directory); n/a before that, without buildah, and in quick and smoke runs.
 */
const ROWS = [
  { id: "image-default-compressed", title: "image default, compressed layers", unit: "MB" },
  { id: "image-default-compressed-9", title: "image default, compressed layers, gzip level 9", unit: "MB" },
  { id: "image-default-uncompressed", title: "image default, uncompressed", unit: "MB" },
  { id: "image-jenkins-compressed", title: "image jenkins, compressed layers", unit: "MB" },
  { id: "image-jenkins-compressed-9", title: "image jenkins, compressed layers, gzip level 9", unit: "MB" },
  { id: "image-jenkins-uncompressed", title: "image jenkins, uncompressed", unit: "MB" },
  { id: "image-build-default", title: "image build, default (last image:test run)", unit: "ms" },
  { id: "image-build-jenkins", title: "image build, jenkins (last image:test run)", unit: "ms" },
] as const satisfies readonly Row[];

interface LastBuild {
  date: string;
  node: string;
  base: string;
  baseBuild: { how: string; ms: number };
  images: { default: string; jenkins: string };
  buildMs: { default: number; jenkins: number };
}

interface Sizes {
  compressed: number;
  uncompressed: number;
  layers: number;
}

export const images: Measurement = {
  name: "images",
  rows: ROWS,
  async run(ctx: BenchContext): Promise<Figure[]> {
    const cache = process.env.IMAGE_TEST_CACHE ?? join(homedir(), ".cache/ephemeral-agent/image-test");
    const record = join(cache, "last-build.json");
    const why =
      ctx.scale !== "full"
        ? "full runs only: sizing pushes three images, about a minute"
        : !hasBuildah()
          ? "no buildah on this machine"
          : !existsSync(record)
            ? "no images yet: run `npm run image:test` (as root) first"
            : undefined;
    if (why !== undefined) return ROWS.map((row) => notAvailable(row.id, row.title, row.unit, why));
    const last = JSON.parse(readFileSync(record, "utf8")) as LastBuild;

    ctx.progress(`images: pushing ${last.base} and the two images to OCI layouts to size their layers`);
    const base = await imageSizes(last.base, join(ctx.tmp, "oci-base"));
    const standard = await imageSizes(last.images.default, join(ctx.tmp, "oci-default"));
    const jenkins = await imageSizes(last.images.jenkins, join(ctx.tmp, "oci-jenkins"));
    const standard9 = await imageSizes(last.images.default, join(ctx.tmp, "oci-default-9"), 9);
    const jenkins9 = await imageSizes(last.images.jenkins, join(ctx.tmp, "oci-jenkins-9"), 9);
    const mb = (bytes: number) => bytes / 1e6;
    const note = `built ${last.date} on a local base (debootstrap bookworm + node ${last.node}); ${last.base}`;
    const details = { base, default: standard, jenkins, default9: standard9, jenkins9 };
    const atMost = (limit: number) => ({
      text: `<= ${limit} MB`,
      actual: (f: Figure) => f.value?.median ?? null,
      op: "<=" as const,
      limit,
    });
    return [
      measured({
        ...ROWS[0],
        samples: [mb(standard.compressed)],
        baseline: { title: "the base image, compressed", samples: [mb(base.compressed)] },
        target: atMost(60),
        notes: [note, `${standard.layers} layer(s)`],
        details,
      }),
      measured({
        ...ROWS[1],
        samples: [mb(standard9.compressed)],
        baseline: { title: "the same layers at the default level", samples: [mb(standard.compressed)] },
        target: atMost(60),
      }),
      measured({
        ...ROWS[2],
        samples: [mb(standard.uncompressed)],
        baseline: { title: "the base image, uncompressed", samples: [mb(base.uncompressed)] },
      }),
      measured({
        ...ROWS[3],
        samples: [mb(jenkins.compressed)],
        baseline: { title: "the default image, compressed", samples: [mb(standard.compressed)] },
        target: atMost(120),
        notes: [`${jenkins.layers} layer(s); the first ${standard.layers} are the default image's`],
      }),
      measured({
        ...ROWS[4],
        samples: [mb(jenkins9.compressed)],
        baseline: { title: "the same layers at the default level", samples: [mb(jenkins.compressed)] },
        target: atMost(120),
      }),
      measured({
        ...ROWS[5],
        samples: [mb(jenkins.uncompressed)],
        baseline: { title: "the default image, uncompressed", samples: [mb(standard.uncompressed)] },
      }),
      measured({
        ...ROWS[6],
        samples: [last.buildMs.default],
        notes: [
          `base ${last.baseBuild.how} in ${Math.round(last.baseBuild.ms / 1000)} s; layers cached by earlier builds are reused`,
        ],
      }),
      measured({
        ...ROWS[7],
        samples: [last.buildMs.jenkins],
        notes: ["after the default build (shared stages)"],
      }),
    ];
  },
};

function hasBuildah(): boolean {
  return spawnSync("sh", ["-c", "command -v buildah"], { stdio: "ignore" }).status === 0;
}

/**
 * Pushes an image to an OCI layout (gzip layers, as `buildah push` sends them to a registry: at
 * its default level, 5, or at `gzipLevel`) and sums its layers: the blobs' sizes, and their tar streams' sizes once gunzipped.
 */
export async function imageSizes(tag: string, dir: string, gzipLevel?: number): Promise<Sizes> {
  const level =
    gzipLevel === undefined ? [] : ["--compression-format", "gzip", "--compression-level", String(gzipLevel)];
  execFileSync("buildah", ["push", "--quiet", ...level, tag, `oci:${dir}:latest`], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const blob = (digest: string) => join(dir, "blobs", ...digest.split(":"));
  const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as {
    manifests: { digest: string }[];
  };
  const manifest = JSON.parse(readFileSync(blob(index.manifests[0]!.digest), "utf8")) as {
    layers: { digest: string; size: number; mediaType: string }[];
  };
  let compressed = 0;
  let uncompressed = 0;
  for (const layer of manifest.layers) {
    compressed += layer.size;
    uncompressed += layer.mediaType.endsWith("+gzip") ? await gunzippedBytes(blob(layer.digest)) : layer.size;
  }
  return { compressed, uncompressed, layers: manifest.layers.length };
}

function gunzippedBytes(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    const gunzip = createGunzip();
    gunzip.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
    });
    gunzip.once("end", () => resolve(bytes));
    gunzip.once("error", reject);
    createReadStream(path).once("error", reject).pipe(gunzip);
  });
}

import { join } from "node:path";
import type { BenchContext, Measurement, Row } from "../lib/context.ts";
import { type Figure, measured, notAvailable } from "../lib/figures.ts";
import { ROOT } from "../lib/peers.ts";
import { minimalEnv, timedRun } from "../lib/proc.ts";

const OSLS = join(ROOT, "node_modules/osls/bin/serverless.js");

const ROWS = [
  { id: "osls-package", title: "osls package (offline, both functions)", unit: "ms" },
] as const satisfies readonly Row[];

/**
 * (11) How long `osls package` takes to make the Lambda artifact and the CloudFormation template
 * offline (dummy credentials, as test/integration/lambda-osls.test.ts runs it), against the
 * framework starting and printing its version in the same run. The test checks what packaging
 * makes; this row says how long it takes (it was a 30 s assertion in the test, which failed
 * under load).
 */
export const packaging: Measurement = {
  name: "packaging",
  rows: ROWS,
  async run(ctx: BenchContext): Promise<Figure[]> {
    if (ctx.scale !== "full") {
      return ROWS.map((row) =>
        notAvailable(row.id, row.title, row.unit, "full runs only: three packagings, about a minute"),
      );
    }
    const runs = 3;
    const env = minimalEnv({
      HOME: ctx.tmp,
      AWS_ACCESS_KEY_ID: "x",
      AWS_SECRET_ACCESS_KEY: "x",
      AWS_REGION: "us-east-1",
    });
    const packageMs: number[] = [];
    const versionMs: number[] = [];
    for (let i = 0; i < runs; i++) {
      ctx.progress(`packaging: osls package, run ${i + 1} of ${runs}`);
      versionMs.push((await timedRun(process.execPath, [OSLS, "--version"], { env, cwd: ROOT })).ms);
      const dir = join(ctx.tmp, `osls-package-${i}`);
      const args = [OSLS, "package", "--package", dir, "--stage", "bench"];
      packageMs.push((await timedRun(process.execPath, args, { env, cwd: ROOT, timeoutMs: 180_000 })).ms);
    }
    return [
      measured({
        ...ROWS[0],
        samples: packageMs,
        baseline: { title: "osls --version", samples: versionMs },
        target: { text: "<= 30 s", actual: (f) => f.value?.median ?? null, op: "<=", limit: 30_000 },
      }),
    ];
  },
};

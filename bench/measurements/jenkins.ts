import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { FakeJenkins } from "../../test/support/fake-jenkins.ts";
import { fakeRemotingJar, JAVAC_MISSING } from "../../test/support/fake-remoting-jar.ts";
import { type BenchContext, byScale, type Measurement } from "../lib/context.ts";
import { type Figure, measured, notAvailable } from "../lib/figures.ts";
import { ENTRYPOINT, FIXTURES, ROOT } from "../lib/peers.ts";
import { minimalEnv, NODE, start, waitUntil, withTimeout } from "../lib/proc.ts";

const ROWS = {
  start: {
    id: "jenkins-first-request",
    title: "Jenkins mode: start to remoting's first request",
    unit: "ms",
  },
  warm: {
    id: "jenkins-warm-lambda-first-request",
    title: "Jenkins mode: warm Lambda invocation to remoting's first request",
    unit: "ms",
  },
} as const;

const SECRET = "bench-secret-0123456789abcdef";
const WARM_LAMBDA = join(FIXTURES, "warm-lambda.mjs");
const HANDLER = join(ROOT, "dist/lambda/handler.js");

/**
 * Invocation to remoting's first request (its TCP discovery, `GET tcpSlaveAgentListener/`) at a
 * fake Jenkins on loopback, with the jar cached, against plain
 * `java -jar agent.jar -url ... -noreconnect` with the same jar, alternating, in the same run:
 * - the container entrypoint, a new process each time (the ECS form), in its default `auto` mode;
 * - a warm Lambda sandbox: one process that loaded the handler bundle once and runs invocation
 *   after invocation (bench/fixtures/warm-lambda.mjs), as Lambda reuses a warm sandbox.
 * The jar is the test fixture that behaves like remoting (javac at run time); set
 * BENCH_AGENT_JAR to a real agent.jar to measure remoting itself (its discovery is the same).
 */
export const jenkins: Measurement = {
  name: "jenkins",
  rows: Object.values(ROWS),
  async run(ctx: BenchContext): Promise<Figure[]> {
    const real = process.env.BENCH_AGENT_JAR;
    if (real === undefined && JAVAC_MISSING !== null) {
      return Object.values(ROWS).map((row) => notAvailable(row.id, row.title, row.unit, JAVAC_MISSING!));
    }
    return startToFirstRequest(
      ctx,
      real ?? fakeRemotingJar(),
      byScale(ctx, { full: 15, quick: 3, smoke: 1 }),
    );
  },
};

async function startToFirstRequest(ctx: BenchContext, jar: string, runs: number): Promise<Figure[]> {
  ctx.progress(
    `Jenkins mode start: ${runs} runs each (+1 warm-up, which also downloads the jar and writes the class-data archive)`,
  );
  const fake = await FakeJenkins.start({ jar });
  const secretFile = join(ctx.tmp, "jenkins-secret");
  writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
  const invoked = new Map<string, { invokedAt: number; exitCode: number }>();
  let pending = "";
  const sandbox = start(NODE, [WARM_LAMBDA, HANDLER], {
    stdin: true,
    env: minimalEnv({
      AGENT_CLOUDWATCH: "off",
      AGENT_LOG_LEVEL: "warn",
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "1024",
      AWS_LAMBDA_FUNCTION_NAME: "jnlp-agent-bench",
    }),
    onStdout: (chunk) => {
      pending += chunk.toString("utf8");
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines.filter((l) => l.startsWith("BENCH "))) {
        const result = JSON.parse(line.slice(6)) as { name: string; invokedAt: number; exitCode: number };
        invoked.set(result.name, result);
      }
    },
  });
  const entrypoint: number[] = [];
  const warm: number[] = [];
  const plain: number[] = [];
  const firstRequestOf = async (name: string, since: number, done: () => boolean) => {
    await waitUntil(
      () => done() || fake.requests.some((r) => r.at >= since && r.headers["node-name"] === name),
      30_000,
      `remoting's first request for ${name}`,
    );
    const request = fake.requests.find((r) => r.at >= since && r.headers["node-name"] === name);
    if (request === undefined) throw new Error(`${name} made no request`);
    return request.at - since;
  };
  try {
    for (let i = 0; i <= runs; i++) {
      const agentName = `bench-ours-${i}`;
      fake.addNode(agentName, { secret: SECRET, script: [] });
      const since = Date.now();
      const agent = start(
        NODE,
        [ENTRYPOINT, "-url", fake.url, "-secret", `@${secretFile}`, "-name", agentName],
        {
          env: minimalEnv({ JENKINS_AGENT_WORKDIR: join(ctx.tmp, "jenkins-agent"), AGENT_LOG_LEVEL: "warn" }),
        },
      );
      let exited = false;
      void agent.closed.then(() => {
        exited = true;
      });
      const oursMs = await firstRequestOf(agentName, since, () => exited);
      const exit = await agent.closed;
      if (exit.code !== 0) throw new Error(`the agent exited ${exit.code}: ${agent.tail()}`);

      const lambdaName = `bench-lambda-${i}.lambda-abcdef`;
      fake.addNode(lambdaName, { secret: SECRET, script: [] });
      sandbox.child.stdin!.write(`${JSON.stringify({ url: fake.url, secret: SECRET, name: lambdaName })}\n`);
      await waitUntil(() => invoked.has(lambdaName), 30_000, `the warm invocation ${lambdaName}`);
      const invocation = invoked.get(lambdaName)!;
      if (invocation.exitCode !== 0)
        throw new Error(`the warm invocation exited ${invocation.exitCode}: ${sandbox.tail()}`);
      const warmMs = await firstRequestOf(lambdaName, invocation.invokedAt, () => true);

      const plainName = `bench-plain-${i}`;
      fake.addNode(plainName, { secret: SECRET, script: [] });
      const plainSince = Date.now();
      const java = start(
        "java",
        ["-jar", jar, "-url", fake.url, "-secret", `@${secretFile}`, "-name", plainName, "-noreconnect"],
        { env: minimalEnv() },
      );
      let javaExited = false;
      void java.closed.then(() => {
        javaExited = true;
      });
      const plainMs = await firstRequestOf(plainName, plainSince, () => javaExited);
      await java.closed;
      if (i === 0) continue; // warm-up: file cache, the jar download and the class-data archive
      entrypoint.push(oursMs);
      warm.push(warmMs);
      plain.push(plainMs);
    }
  } finally {
    sandbox.child.stdin?.end();
    await withTimeout(sandbox.closed, 10_000, "the warm Lambda sandbox to exit", () =>
      sandbox.child.kill("SIGKILL"),
    );
    await fake.close();
  }
  const baseline = {
    title: "java -jar agent.jar -url ... -noreconnect, spawn to first request",
    samples: plain,
  };
  const target = {
    text: "ratio <= 0.70 (30% sooner)",
    actual: (f: Figure) => f.ratio,
    op: "<=" as const,
    limit: 0.7,
  };
  const jarNote = process.env.BENCH_AGENT_JAR
    ? `jar: ${process.env.BENCH_AGENT_JAR}`
    : "jar: the test fixture that behaves like remoting (test/fixtures/fake-remoting)";
  return [
    measured({
      ...ROWS.start,
      samples: entrypoint,
      baseline,
      target,
      notes: [
        "spawn of `node dist/container-entrypoint.mjs -url U -secret @FILE -name N` (a new process: the ECS form; auto mode, the jar cached in its work dir) until the fake Jenkins sees remoting's GET tcpSlaveAgentListener/",
        jarNote,
      ],
    }),
    measured({
      ...ROWS.warm,
      samples: warm,
      baseline,
      target,
      notes: [
        "the handler bundle's `handler` called with the AWS Lambda Cloud plugin's payload in a process that already ran the previous invocations (bench/fixtures/warm-lambda.mjs, 1024 MB), until the fake Jenkins sees remoting's GET tcpSlaveAgentListener/",
        jarNote,
      ],
    }),
  ];
}

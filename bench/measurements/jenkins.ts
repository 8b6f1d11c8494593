import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { FakeJenkins } from "../../test/support/fake-jenkins.ts";
import { fakeRemotingJar, JAVAC_MISSING } from "../../test/support/fake-remoting-jar.ts";
import { type BenchContext, byScale, type Measurement } from "../lib/context.ts";
import { type Figure, measured, notAvailable } from "../lib/figures.ts";
import { ENTRYPOINT } from "../lib/peers.ts";
import { minimalEnv, NODE, start, waitUntil } from "../lib/proc.ts";

const ROWS = {
  start: {
    id: "jenkins-first-request",
    title: "Jenkins mode: start to remoting's first request",
    unit: "ms",
  },
} as const;

const SECRET = "bench-secret-0123456789abcdef";

/**
 * Invocation to remoting's first request (its TCP discovery, `GET tcpSlaveAgentListener/`) at a
 * fake Jenkins on loopback: the container entrypoint in its default `auto` mode (discovery, the
 * jar revalidated from its cache, class-data archive, JVM flags) against plain
 * `java -jar agent.jar -url ... -noreconnect` with the same jar, alternating, in the same run.
 * The jar is the test fixture that behaves like remoting (javac at run time); set
 * BENCH_AGENT_JAR to a real agent.jar to measure remoting itself (its discovery is the same).
 */
export const jenkins: Measurement = {
  name: "jenkins",
  rows: Object.values(ROWS),
  async run(ctx: BenchContext): Promise<Figure[]> {
    const real = process.env.BENCH_AGENT_JAR;
    if (real === undefined && JAVAC_MISSING !== null) {
      return [notAvailable(ROWS.start.id, ROWS.start.title, ROWS.start.unit, JAVAC_MISSING)];
    }
    return [
      await startToFirstRequest(
        ctx,
        real ?? fakeRemotingJar(),
        byScale(ctx, { full: 15, quick: 3, smoke: 1 }),
      ),
    ];
  },
};

async function startToFirstRequest(ctx: BenchContext, jar: string, runs: number): Promise<Figure> {
  ctx.progress(
    `Jenkins mode start: ${runs} runs each (+1 warm-up, which also writes the class-data archive)`,
  );
  const fake = await FakeJenkins.start({ jar });
  const workDir = join(ctx.tmp, "jenkins-agent");
  const secretFile = join(ctx.tmp, "jenkins-secret");
  writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
  const ours: number[] = [];
  const plain: number[] = [];
  const firstRequestOf = async (name: string, since: number, exited: Promise<unknown>) => {
    let done = false;
    void exited.then(() => {
      done = true;
    });
    await waitUntil(
      () => done || fake.requests.some((r) => r.at >= since && r.headers["node-name"] === name),
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
          env: minimalEnv({ JENKINS_AGENT_WORKDIR: workDir, AGENT_LOG_LEVEL: "warn" }),
        },
      );
      const oursMs = await firstRequestOf(agentName, since, agent.closed);
      const exit = await agent.closed;
      if (exit.code !== 0) throw new Error(`the agent exited ${exit.code}: ${agent.tail()}`);

      const plainName = `bench-plain-${i}`;
      fake.addNode(plainName, { secret: SECRET, script: [] });
      const plainSince = Date.now();
      const java = start(
        "java",
        ["-jar", jar, "-url", fake.url, "-secret", `@${secretFile}`, "-name", plainName, "-noreconnect"],
        { env: minimalEnv() },
      );
      const plainMs = await firstRequestOf(plainName, plainSince, java.closed);
      await java.closed;
      if (i === 0) continue; // warm-up: file cache, the jar download and the class-data archive
      ours.push(oursMs);
      plain.push(plainMs);
    }
  } finally {
    await fake.close();
  }
  return measured({
    ...ROWS.start,
    samples: ours,
    baseline: { title: "java -jar agent.jar -url ... -noreconnect, spawn to first request", samples: plain },
    target: { text: "ratio <= 0.70 (30% sooner)", actual: (f) => f.ratio, op: "<=", limit: 0.7 },
    notes: [
      "spawn of `node dist/container-entrypoint.mjs -url U -secret @FILE -name N` (auto mode: discovery, agent.jar revalidated from the cache, class-data archive) until the fake Jenkins sees remoting's GET tcpSlaveAgentListener/",
      process.env.BENCH_AGENT_JAR
        ? `jar: ${process.env.BENCH_AGENT_JAR}`
        : "jar: the test fixture that behaves like remoting (test/fixtures/fake-remoting)",
    ],
  });
}

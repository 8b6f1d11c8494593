import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode } from "../../agent-core/index.ts";
import type { InvocationSummary } from "../../lambda-handler/index.ts";
import { FakeJenkins } from "../support/fake-jenkins.ts";
import { type FakeLambdaRuntime, startFakeLambdaRuntime } from "../support/fake-lambda-runtime.ts";
import { fakeRemotingJar, JAVAC_MISSING } from "../support/fake-remoting-jar.ts";
import { type Container, IMAGES, startContainer } from "./support/image.ts";

/**
 * The jenkins image in Jenkins mode against a fake Jenkins on the host's loopback (test/support):
 * the amazon-ecs plugin's launch form, and the AWS Lambda Cloud plugin's payload through the
 * Runtime API loop. test/image/run.ts baked the jar the fake serves (the fixture that behaves like
 * remoting) into the image, with its class-data archive.
 */
const SECRET = "7c1e2d3f4a5b6978877665544332211f-node-secret";
const containers: Container[] = [];
let jenkins: FakeJenkins;

const skipReason =
  JAVAC_MISSING === null ? "" : ` (skipped: ${JAVAC_MISSING}, the fake agent.jar cannot be built)`;

describe.skipIf(JAVAC_MISSING !== null)(`the jenkins image in Jenkins mode${skipReason}`, () => {
  beforeAll(async () => {
    jenkins = await FakeJenkins.start({ jar: fakeRemotingJar() });
  });
  afterAll(async () => {
    for (const container of containers) await container.remove();
    await jenkins?.close();
  });

  it("maps the baked jar's class-data archive on the image's own runtime", async () => {
    const java = await startContainer(IMAGES.jenkins, {
      command: [
        "java",
        "-Xshare:on",
        "-XX:SharedArchiveFile=/opt/jenkins-agent/agent.jsa",
        "-Xlog:class+load=info",
        "-jar",
        "/opt/jenkins-agent/agent.jar",
        "-help",
      ],
    });
    containers.push(java);
    const { code, stdout, stderr } = await java.exited;
    expect(code, stderr).toBe(0);
    // The jar's own classes come from the archive, not from the jar.
    expect(stdout).toMatch(/FakeRemoting source: shared objects file/);
  });

  it("amazon-ecs: -url URL SECRET NAME runs the baked jar (the one the controller serves) and exits 0 when the channel ends", async () => {
    const name = "ecs-image-1";
    jenkins.addNode(name, { secret: SECRET, script: ["echo from the image", "log building"] });
    const ecs = await startContainer(IMAGES.jenkins, { args: ["-url", jenkins.url, SECRET, name] });
    containers.push(ecs);
    const { code, stderr } = await ecs.exited;
    expect(code, stderr.split("\n").slice(-12).join("\n")).toBe(ExitCode.ok);
    expect(jenkins.sessions.find((s) => s.name === name)?.acks).toEqual([
      "ack echo from the image",
      "ack log building",
    ]);
    const starting = JSON.parse(stderr.split("\n").find((l) => l.includes('"starting remoting"'))!) as {
      jar: { source: string; path: string };
      cds: { action: string; archive: string };
      waitsForAnswer: boolean;
      argv: string[];
    };
    expect(starting).toMatchObject({
      jar: { source: "image", path: "/opt/jenkins-agent/agent.jar" },
      cds: { action: "use", archive: "/opt/jenkins-agent/agent.jsa" },
      waitsForAnswer: true,
    });
    expect(starting.argv.join(" ")).not.toContain(SECRET);
    expect(stderr).toContain("remoting: Connected");
    expect(stderr).not.toContain(SECRET);
  });

  describe("Lambda: the Runtime API loop", () => {
    let api: FakeLambdaRuntime;
    let lambda: Container;
    beforeAll(async () => {
      api = await startFakeLambdaRuntime();
      lambda = await startContainer(IMAGES.jenkins, {
        lambda: true,
        env: {
          AWS_LAMBDA_RUNTIME_API: api.address,
          AWS_LAMBDA_FUNCTION_NAME: "jnlp-agent-git-bash",
          AWS_LAMBDA_FUNCTION_VERSION: "$LATEST",
          AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "512",
          AWS_LAMBDA_LOG_GROUP_NAME: "/aws/lambda/jnlp-agent-git-bash",
          AWS_LAMBDA_LOG_STREAM_NAME: "2026/11/30/[$LATEST]image",
          AWS_REGION: "us-east-1",
          AGENT_CLOUDWATCH: "off",
          JENKINS_WEB_SOCKET: "true",
          AGENT_DEADLINE_MARGIN_MS: "3000",
          AGENT_GRACE_MS: "1000",
        },
      });
      containers.push(lambda);
      const ready = await Promise.race([
        api.ready(),
        lambda.exited.then((exit) => ({ kind: "exited" as const, exit })),
      ]);
      expect(ready, lambda.stderr()).toEqual({ kind: "next" });
    }, 60_000);
    afterAll(async () => {
      await api?.close();
    });

    it("serves the plugin's payload twice in one warm sandbox: WebSocket, heap from the function's memory, the jar revalidated", async () => {
      for (const name of ["build.lambda-abcdef", "build.lambda-ghijkl"]) {
        jenkins.addNode(name, { secret: SECRET, script: ["echo on lambda"] });
        const result = await api.invoke(
          { url: jenkins.url, node_secret: SECRET, node_name: name },
          { timeoutMs: 120_000 },
        );
        expect(result.status, `${JSON.stringify(result)}\n${lambda.stderr()}`).toBe("response");
        const summary = (result as Extract<typeof result, { status: "response" }>).body as InvocationSummary;
        expect(summary).toMatchObject({
          mode: "jenkins",
          result: "served",
          exitCode: ExitCode.ok,
          jenkins: { transport: "websocket", connected: true, heapMb: 128 },
        });
        expect(jenkins.sessions.find((s) => s.name === name)?.acks).toEqual(["ack echo on lambda"]);
      }
      const jarRequests = jenkins.requests.filter((r) => r.path === "/jnlpJars/agent.jar");
      expect(jarRequests.at(-1)?.status).toBe(304);
      expect(lambda.stderr()).not.toContain(SECRET);
      expect(api.violations).toEqual([]);
    });
  });
});

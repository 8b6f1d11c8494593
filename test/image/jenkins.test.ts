import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { selfSignedCertificate } from "./support/git-servers.ts";
import { type Container, IMAGES, imageConfig, startContainer } from "./support/image.ts";

/** The Jenkins variant: the default image plus a jlink Java runtime for agent.jar, ps and ssh-agent. */
const containers: Container[] = [];
let dir: string;
let server: Server;
let caPem: string;
let probeClass: Buffer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "image-jenkins-"));
  const tls = selfSignedCertificate(dir);
  caPem = tls.cert;
  server = createServer(tls, (_req, res) => res.end("jenkins"));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  // The probe is compiled by the host's JDK for Java 17, the image's runtime.
  execFileSync("javac", [
    "--release",
    "17",
    "-d",
    dir,
    join(import.meta.dirname, "fixtures/AgentJvmProbe.java"),
  ]);
  probeClass = readFileSync(join(dir, "AgentJvmProbe.class"));
});

afterAll(async () => {
  for (const container of containers) await container.remove();
  server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the jenkins image", () => {
  it("runs java -version as the image's user, with the class-data-sharing archive mapped", async () => {
    const java = await startContainer(IMAGES.jenkins, { command: ["java", "-Xshare:on", "-version"] });
    containers.push(java);
    const { code, stderr } = await java.exited;
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/openjdk version "(17|21)\./);
    expect(stderr).toMatch(/sharing\)/);
    const config = await imageConfig(IMAGES.jenkins);
    expect(config.Labels?.["io.ephemeral-agent.variant"]).toBe("jenkins");
    expect(config.Env).toContain("JAVA_HOME=/opt/java");
  });

  it("runs what an agent's JVM does in Pipeline builds on its module list: TLS (EC), trust store, XML, zip, beans, JMX, Unsafe, sh", async () => {
    const { port } = server.address() as AddressInfo;
    const probe = await startContainer(IMAGES.jenkins, {
      command: [
        "java",
        "-cp",
        "/tmp/probe",
        "AgentJvmProbe",
        `https://127.0.0.1:${port}/`,
        "/tmp/probe/ca.pem",
      ],
      files: {
        "tmp/probe/AgentJvmProbe.class": { content: probeClass, mode: 0o644 },
        "tmp/probe/ca.pem": { content: caPem, mode: 0o644 },
      },
    });
    containers.push(probe);
    const { code, stdout, stderr } = await probe.exited;
    expect(code, stderr).toBe(0);
    expect(stdout).toBe(
      "https 200 EC\ncacerts true\nxml 2\nzip true\nbeans true\njmx true\nunsafe true\nstep 42\nexit 0\n",
    );
  });

  it("keeps the default image's entrypoint and tools, and adds ps and ssh-agent", async () => {
    const tools = await startContainer(IMAGES.jenkins, {
      command: [
        "/bin/bash",
        "-c",
        'git --version && node --version && test "$(id -u)" = 1000 && ps -o comm= -p $$ && eval "$(ssh-agent -s)" >/dev/null && ssh-add -l; ssh-agent -k >/dev/null && echo ok',
      ],
    });
    containers.push(tools);
    const { code, stdout, stderr } = await tools.exited;
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(
      /git version 2\.\d+[\s\S]*v22\.\d+\.\d+\nbash\nThe agent has no identities\.\nok\n$/,
    );
    expect((await imageConfig(IMAGES.jenkins)).Entrypoint).toEqual(
      (await imageConfig(IMAGES.default)).Entrypoint,
    );
  });
});

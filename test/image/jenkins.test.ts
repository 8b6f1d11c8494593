import { afterAll, describe, expect, it } from "vitest";
import { type Container, IMAGES, imageConfig, startContainer } from "./support/image.ts";

/** The Jenkins variant: the default image plus a headless Java runtime for agent.jar. */
const containers: Container[] = [];
afterAll(async () => {
  for (const container of containers) await container.remove();
});

describe("the jenkins image", () => {
  it("runs java -version as the image's user", async () => {
    const java = await startContainer(IMAGES.jenkins, { command: ["java", "-version"] });
    containers.push(java);
    const { code, stderr } = await java.exited;
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/openjdk version "(17|21)\./);
    const config = await imageConfig(IMAGES.jenkins);
    expect(config.Labels?.["io.ephemeral-agent.variant"]).toBe("jenkins");
    expect(config.Env).toContain("JAVA_HOME=/opt/java");
  });

  it("keeps the default image's entrypoint and tools", async () => {
    const tools = await startContainer(IMAGES.jenkins, {
      command: ["/bin/bash", "-c", 'git --version && node --version && test "$(id -u)" = 1000 && echo ok'],
    });
    containers.push(tools);
    const { code, stdout } = await tools.exited;
    expect(code).toBe(0);
    expect(stdout).toMatch(/git version 2\.\d+[\s\S]*v2\d\.\d+\.\d+[\s\S]*ok/);
    expect((await imageConfig(IMAGES.jenkins)).Entrypoint).toEqual(
      (await imageConfig(IMAGES.default)).Entrypoint,
    );
  });
});

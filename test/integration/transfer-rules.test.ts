import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CloseCode } from "../../agent-core/index.ts";
import { rawAgent } from "../support/fake-peers.ts";
import { startController, type TestController } from "../support/harness.ts";

let ctl: TestController;
beforeEach(async () => {
  ctl = await startController();
});
afterEach(async () => {
  await ctl.close();
});

/** A hand-driven agent that took a job (with or without artifacts): its step not started yet. */
async function agentWithJob(name: string, fields: Record<string, unknown>) {
  const job = ctl.controller.submit({ steps: [{ id: "s1", run: "true" }], ...fields });
  const agent = await rawAgent(ctl.controller, name);
  agent.hello();
  await agent.next("job");
  const artifact = (seq: number, offset: number, data = Buffer.from("tar")) =>
    agent.artifact(seq, offset, data);
  return { agent, job, artifact };
}

describe("the controller's rules for transfers", () => {
  it("refuses artifact frames for a job that keeps none (4003)", async () => {
    const { agent, artifact } = await agentWithJob("no-artifacts", {});
    artifact(1, 0);
    expect((await agent.closed).code).toBe(CloseCode.outOfOrder);
  });

  it("refuses an artifact frame that skips bytes (4003)", async () => {
    const { agent, artifact } = await agentWithJob("gap", { artifacts: ["dist"] });
    artifact(1, 0);
    artifact(2, 100);
    expect((await agent.closed).code).toBe(CloseCode.outOfOrder);
  });

  it("refuses artifact frames while a step runs (4003)", async () => {
    const { agent, job, artifact } = await agentWithJob("mid-step", { artifacts: ["dist"] });
    agent.sendJson({ v: 1, type: "step-start", seq: 1, jobId: job.id, stepId: "s1", startedAt: Date.now() });
    artifact(2, 0);
    expect((await agent.closed).code).toBe(CloseCode.outOfOrder);
  });

  it("refuses artifacts-end whose length is not what arrived (4001), and keeps nothing", async () => {
    const { agent, job, artifact } = await agentWithJob("miscount", { artifacts: ["dist"] });
    artifact(1, 0, Buffer.alloc(1024));
    agent.artifactsEnd(2, job.id, 2048, "0".repeat(64));
    expect((await agent.closed).code).toBe(CloseCode.invalidMessage);
    // Nothing had run: the job goes back to the queue, with no artifacts.
    await expect.poll(() => ctl.controller.getJob(job.id)?.status).toBe("queued");
    expect(ctl.controller.getJob(job.id)?.artifacts).toBeUndefined();
    expect(() => ctl.controller.artifactsOf(job.id)).toThrow(expect.objectContaining({ status: 404 }));
  });

  it("records artifacts whose digest is not the agent's as refused, with the reason", async () => {
    const { agent, job, artifact } = await agentWithJob("bad-digest", { artifacts: ["dist"] });
    artifact(1, 0, Buffer.alloc(1024));
    agent.artifactsEnd(2, job.id, 1024, "0".repeat(64));
    await expect
      .poll(() => ctl.controller.getJob(job.id)?.artifacts)
      .toMatchObject({ status: "failed", code: "AGENT_ERR_ARCHIVE_CHECKSUM" });
    agent.socket.close();
  });

  it("refuses a workspace-pull for a job without a seed (4003)", async () => {
    const { agent, job } = await agentWithJob("no-seed", {});
    agent.sendJson({ v: 1, type: "workspace-pull", jobId: job.id, offset: 0, length: 1024 });
    expect((await agent.closed).code).toBe(CloseCode.outOfOrder);
  });

  it("refuses a job that names an upload it does not have (400), and a directory through the API", () => {
    expect(() =>
      ctl.controller.submit({ steps: [{ run: "true" }], workspace: { upload: "0".repeat(24) } }),
    ).toThrow(expect.objectContaining({ status: 400, code: "CONTROLLER_ERR_INVALID_JOB" }));
    expect(() => ctl.controller.submit({ steps: [{ run: "true" }], workspace: "./src" })).toThrow(
      expect.objectContaining({ status: 400, code: "CONTROLLER_ERR_INVALID_JOB" }),
    );
  });
});

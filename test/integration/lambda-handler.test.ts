import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode } from "../../agent-core/index.ts";
import { handler } from "../../lambda-handler/index.ts";
import { startController, type TestController } from "../support/harness.ts";

let ctl: TestController;
beforeAll(async () => {
  ctl = await startController();
});
afterAll(async () => {
  await ctl.close();
});

function context(remainingMs: number) {
  const deadline = Date.now() + remainingMs;
  return {
    getRemainingTimeInMillis: () => deadline - Date.now(),
    callbackWaitsForEmptyEventLoop: true,
    awsRequestId: "req-1",
  };
}

describe("Lambda handler (in process, real controller)", () => {
  it("runs one job from the Jenkins plugin's payload and returns a summary", async () => {
    const name = "build.lambda-abcdef";
    const record = ctl.controller.submit({ steps: [{ run: "echo from lambda; echo HOME=$HOME" }] });
    const ctx = context(900_000);
    const summary = await handler(
      { url: ctl.controller.url, node_secret: ctl.controller.secretFor(name), node_name: name },
      ctx,
    );
    expect(ctx.callbackWaitsForEmptyEventLoop).toBe(false);
    expect(summary).toMatchObject({
      agent: name,
      jobId: record.id,
      exitCode: ExitCode.ok,
      status: "succeeded",
      errorCode: null,
    });
    expect(summary.steps[0]).toMatchObject({ exitCode: 0, reason: "exit" });
    expect((await ctl.controller.waitForJob(record.id)).agent?.runtime).toBe("lambda");
  });

  it("rejects a malformed event with every problem listed and the secret masked", async () => {
    await expect(handler({ url: 5, node_secret: 7 }, context(60_000))).rejects.toMatchObject({
      code: "AGENT_ERR_CONFIG",
      problems: expect.arrayContaining([
        expect.objectContaining({ field: "url" }),
        expect.objectContaining({ field: "node_name" }),
        expect.objectContaining({ field: "node_secret", message: expect.stringContaining("***") }),
      ]),
    });
  });
});

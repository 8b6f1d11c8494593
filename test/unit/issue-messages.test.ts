import { describe, expect, it } from "vitest";
import {
  type AgentError,
  CloseCode,
  decodeAgentMessage,
  decodeControllerMessage,
  ProtocolError,
  parseAgentConfig,
} from "../../agent-core/index.ts";
import { parseControllerConfig } from "../../controller/config.ts";
import { type ControllerApiError, prepareJob } from "../../controller/index.ts";
import { fromLambdaEvent } from "../../lambda-handler/index.ts";

/**
 * The schemas are built with zod/mini, which loads no locale: an issue without a message of our
 * own would read "Invalid input" unless the parse is given zod's English locale. These cases
 * cover each place that shows zod's wording to a user (agent config, protocol messages, the
 * Lambda event, the controller config, job submissions), one issue kind each, with the words
 * classic zod gave them.
 */

const SECRET = "f3a9c0ffee5ecret0123456789abcdef";
const AGENT = { url: "http://127.0.0.1:8080/", secret: SECRET, name: "agent-1" };
const LONG_NAME = "n".repeat(201);

/** Field -> message of the problems an error lists (the error's stable code checked first). */
function problemsOf(run: () => unknown, code: string): Record<string, string> {
  try {
    run();
  } catch (error) {
    expect((error as AgentError | ControllerApiError).code).toBe(code);
    const problems = (error as { problems: { field: string; message: string }[] }).problems;
    return Object.fromEntries(problems.map((p) => [p.field, p.message]));
  }
  throw new Error("expected the input to be refused");
}

function protocolMessage(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ProtocolError);
    expect((error as ProtocolError).closeCode).toBe(CloseCode.invalidMessage);
    return (error as ProtocolError).message;
  }
  throw new Error("expected the message to be refused");
}

describe("zod's issues read in English wherever a user sees them", () => {
  it("agent config: wrong type, too small, not an integer, not an option, too long, nested", () => {
    const problems = problemsOf(
      () =>
        parseAgentConfig({
          ...AGENT,
          labels: "x",
          frameMaxBytes: 100,
          maxUnackedBytes: 1.5,
          mode: "fast",
          name: LONG_NAME,
          jenkins: { memoryMb: 10 },
        }),
      "AGENT_ERR_CONFIG",
    );
    expect(problems).toMatchObject({
      labels: 'Invalid input: expected array, received string, got `"x"` (string)',
      frameMaxBytes: "Too small: expected number to be >=256, got `100` (number)",
      maxUnackedBytes: "Invalid input: expected int, received number, got `1.5` (number)",
      mode: 'Invalid option: expected one of "auto"|"native"|"jenkins", got `"fast"` (string)',
      "jenkins.memoryMb": "Too small: expected number to be >=64, got `10` (number)",
    });
    expect(problems.name).toMatch(/^Too big: expected string to have <=200 characters, got `"n+\.\.\./);
  });

  it("protocol messages: the close reason names the field and the rule", () => {
    expect(protocolMessage(() => decodeControllerMessage('{"v":1,"type":"ack","seq":"x"}'))).toBe(
      'the controller sent an invalid "ack" message: seq: Invalid input: expected number, received string',
    );
    expect(
      protocolMessage(() => decodeControllerMessage('{"v":1,"type":"job","job":{"id":"j","steps":[]}}')),
    ).toBe(
      'the controller sent an invalid "job" message: job.steps: Too small: expected array to have >=1 items',
    );
    const hello = {
      v: 1,
      type: "hello",
      agent: { name: "a", labels: [], runtime: "k8s", version: "1" },
      limits: { deadlineAt: null, diskBudgetBytes: null },
      capabilities: [],
    };
    expect(protocolMessage(() => decodeAgentMessage(JSON.stringify(hello)))).toBe(
      'the agent sent an invalid "hello" message: agent.runtime: Invalid option: expected one of "lambda"|"ecs"|"local"',
    );
    const jobEnd = {
      v: 1,
      type: "job-end",
      seq: 1,
      jobId: "j",
      status: "failed",
      reason: "exit",
      durationMs: 1,
      transfers: { workspace: { status: "lost" } },
    };
    expect(protocolMessage(() => decodeAgentMessage(JSON.stringify(jobEnd)))).toBe(
      `the agent sent an invalid "job-end" message: transfers.workspace.status: Invalid discriminator value. Expected 'done' | 'failed' | 'skipped'`,
    );
  });

  it("protocol messages: the job's mask list, whose messages are worded only when it is refused", () => {
    const job = (mask: string[]) =>
      JSON.stringify({ v: 1, type: "job", job: { id: "j", mask, steps: [{ id: "s", run: "true" }] } });
    const values = Array.from({ length: 1_001 }, (_, i) => `value-${i}`);
    expect(protocolMessage(() => decodeControllerMessage(job(values)))).toBe(
      'the controller sent an invalid "job" message: job.mask: must hold at most 1,000 values',
    );
    expect(protocolMessage(() => decodeControllerMessage(job(["b".repeat(65_537)])))).toBe(
      'the controller sent an invalid "job" message: job.mask: must hold at most 65,536 bytes in all',
    );
  });

  it("Lambda event: its own fields and the agent config's rules behind them", () => {
    const problems = problemsOf(
      () =>
        fromLambdaEvent(
          { url: AGENT.url, node_secret: SECRET, node_name: LONG_NAME, log_level: "loud", smoke: "yes" },
          { remainingMs: 600_000, env: {} },
        ),
      "AGENT_ERR_CONFIG",
    );
    expect(problems).toMatchObject({
      log_level: 'Invalid option: expected one of "debug"|"info"|"warn"|"error", got `"loud"` (string)',
      smoke: 'Invalid input: expected boolean, received string, got `"yes"` (string)',
    });
    expect(problems.node_name).toMatch(/^Too big: expected string to have <=200 characters/);
  });

  it("controller config: a URL, a bound, a size, an unknown platform", () => {
    const problems = problemsOf(
      () =>
        parseControllerConfig({
          url: "not a url",
          listen: { port: 70_000 },
          maxLogBytes: 0,
          clouds: [{ name: "x", type: "gcp" }],
        }),
      "CONTROLLER_ERR_CONFIG",
    );
    expect(problems).toMatchObject({
      url: 'Invalid URL, got `"not a url"` (string)',
      "listen.port": "Too big: expected number to be <=65535, got `70000` (number)",
      maxLogBytes: "Too small: expected number to be >0, got `0` (number)",
      "clouds.0.type": `Invalid discriminator value. Expected 'aws' | 'local', got \`{"name":"x","type":"gcp"}\` (object)`,
    });
  });

  it("job submissions: an empty label, no steps", () => {
    const problems = problemsOf(
      () => prepareJob({ labels: [""], steps: [] }, "job-1"),
      "CONTROLLER_ERR_INVALID_JOB",
    );
    expect(problems).toEqual({
      "labels.0": 'Too small: expected string to have >=1 characters, got `""` (string)',
      steps: "Too small: expected array to have >=1 items, got `[]` (array)",
    });
  });
});

/** Every problem an error lists, in order, as `field: message` (the error's stable code checked first). */
function problemList(run: () => unknown, code: string): string[] {
  try {
    run();
  } catch (error) {
    expect((error as AgentError | ControllerApiError).code).toBe(code);
    const problems = (error as { problems: { field: string; message: string }[] }).problems;
    return problems.map((p) => `${p.field}: ${p.message}`);
  }
  throw new Error("expected the input to be refused");
}

describe("a value of none of a field's forms is told the forms, once", () => {
  it("job submissions: a duration that is no duration is told its format only, not bounds it cannot be judged by", () => {
    expect(
      problemList(
        () => prepareJob({ steps: [{ run: "x" }], timeout: "banana" }, "job-1"),
        "CONTROLLER_ERR_INVALID_JOB",
      ),
    ).toEqual(['timeout: must look like 500ms, 30s, 5m or 1h, got `"banana"` (string)']);
    expect(
      problemList(
        () => prepareJob({ steps: [{ run: "x", timeout: 0 }] }, "job-1"),
        "CONTROLLER_ERR_INVALID_JOB",
      ),
    ).toEqual(["steps.0.timeout: Too small: expected number to be >0, got `0` (number)"]);
  });

  it("job submissions: durations, environment values, shells, workspaces and artifacts of the wrong kind", () => {
    const list = problemList(
      () =>
        prepareJob(
          { steps: [{ run: "x", timeout: 1.5, env: { A: null }, shell: 5 }], workspace: 5, artifacts: 5 },
          "job-1",
        ),
      "CONTROLLER_ERR_INVALID_JOB",
    );
    expect(list.sort()).toEqual([
      "artifacts: must be a list of patterns or {paths, exclude, when}, got `5` (number)",
      "steps.0.env.A: must be a string, a number or a boolean, got `null` (null)",
      'steps.0.shell: must be "bash", "sh" or a program and its arguments, got `5` (number)',
      "steps.0.timeout: must be a whole number of milliseconds or look like 500ms, 30s, 5m or 1h, got `1.5` (number)",
      "workspace: must be a directory, {path, exclude} or {upload}, got `5` (number)",
    ]);
  });

  it("controller config: a duration and a size of the wrong kind", () => {
    expect(
      problemList(
        () => parseControllerConfig({ resumeWindow: true, maxLogBytes: 1.5 }),
        "CONTROLLER_ERR_CONFIG",
      ),
    ).toEqual([
      "maxLogBytes: must be a whole number of bytes or look like 512MiB or 1GiB, got `1.5` (number)",
      "resumeWindow: must be a whole number of milliseconds or look like 500ms, 30s, 5m or 1h, got `true` (boolean)",
    ]);
  });

  it("Lambda event: labels that are neither a list nor a string", () => {
    const problems = problemsOf(
      () =>
        fromLambdaEvent(
          { url: AGENT.url, node_secret: SECRET, node_name: "n", labels: 5 },
          { remainingMs: 600_000, env: {} },
        ),
      "AGENT_ERR_CONFIG",
    );
    expect(problems.labels).toBe(
      "must be a list of labels or a comma/space separated string, got `5` (number)",
    );
  });
});

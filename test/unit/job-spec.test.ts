import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeControllerMessage, encodeMessage } from "../../agent-core/index.ts";
import { ControllerApiError, prepareJob, readJobFile } from "../../controller/index.ts";

const SECRET_VALUE = "hunter2-Zq8xVv3-very-secret";

function apiError(fn: () => unknown): ControllerApiError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ControllerApiError) return error;
    throw error;
  }
  throw new Error("expected a ControllerApiError");
}

async function apiErrorAsync(promise: Promise<unknown>): Promise<ControllerApiError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ControllerApiError) return error;
    throw error;
  }
  throw new Error("expected a ControllerApiError");
}

function invalidJob(input: unknown): ControllerApiError {
  const error = apiError(() => prepareJob(input, "job-1"));
  expect(error.status).toBe(400);
  expect(error.code).toBe("CONTROLLER_ERR_INVALID_JOB");
  return error;
}

const fields = (error: ControllerApiError) => error.problems.map((p) => p.field);

describe("prepareJob", () => {
  it("numbers steps that have no id from 1, keeping explicit ids", () => {
    const { job } = prepareJob(
      { steps: [{ run: "echo a" }, { id: "build", run: "make" }, { argv: ["node", "-v"] }] },
      "job-1",
    );
    expect(job.id).toBe("job-1");
    expect(job.steps.map((s) => s.id)).toEqual(["1", "build", "3"]);
    expect(job.steps[0]).toEqual({ id: "1", run: "echo a", env: {}, continueOnError: false });
    expect(job.steps[2]).toEqual({ id: "3", argv: ["node", "-v"], env: {}, continueOnError: false });
    expect(job.env).toEqual({});
    expect(job.mask).toEqual([]);
    expect(job.timeoutMs).toBeUndefined();
  });

  it("builds a job the protocol accepts", () => {
    const { job } = prepareJob(
      {
        name: "demo",
        env: { A: "1", B: 2, C: true },
        secrets: { TOKEN: SECRET_VALUE },
        timeout: "5m",
        steps: [
          { name: "hello", run: "echo hi", shell: "sh", env: { X: "y" }, workingDir: "sub", timeout: 250 },
        ],
      },
      "job-1",
    );
    expect(job.env).toEqual({ A: "1", B: "2", C: "true", TOKEN: SECRET_VALUE });
    const message = decodeControllerMessage(encodeMessage({ v: 1, type: "job", job }));
    expect(message).toEqual({ v: 1, type: "job", job });
  });

  it("returns the labels, defaulting to none", () => {
    expect(prepareJob({ steps: [{ run: "x" }] }, "j").labels).toEqual([]);
    expect(prepareJob({ labels: ["linux", "big"], steps: [{ run: "x" }] }, "j").labels).toEqual([
      "linux",
      "big",
    ]);
  });

  it.each([
    ["500ms", 500],
    ["30s", 30_000],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["1.5s", 1_500],
    ["2 m", 120_000],
    [1234, 1234],
  ])("maps the duration %s to %i ms", (timeout, ms) => {
    const { job } = prepareJob({ timeout, steps: [{ run: "x", timeout }] }, "job-1");
    expect(job.timeoutMs).toBe(ms);
    expect(job.steps[0]!.timeoutMs).toBe(ms);
  });

  it("puts secrets in the env and the mask, and stores them as ***", () => {
    const prepared = prepareJob(
      {
        env: { TOKEN: "placeholder", PLAIN: "visible" },
        secrets: { TOKEN: SECRET_VALUE, OTHER: "another-secret-value" },
        steps: [{ run: "echo $TOKEN" }],
      },
      "job-1",
    );
    expect(prepared.job.env).toEqual({
      TOKEN: SECRET_VALUE,
      PLAIN: "visible",
      OTHER: "another-secret-value",
    });
    expect([...prepared.job.mask].sort()).toEqual(["another-secret-value", SECRET_VALUE].sort());
    expect(prepared.stored.secrets).toEqual({ TOKEN: "***", OTHER: "***" });
    expect(prepared.stored.env).toEqual({ TOKEN: "placeholder", PLAIN: "visible" });
    const stored = JSON.stringify(prepared.stored);
    expect(stored).not.toContain(SECRET_VALUE);
    expect(stored).not.toContain("another-secret-value");
  });

  it("stores a submission without secrets unchanged", () => {
    const { stored } = prepareJob({ name: "n", steps: [{ run: "x" }] }, "job-1");
    expect(stored).toEqual({ name: "n", labels: [], steps: [{ run: "x" }] });
    expect(stored.secrets).toBeUndefined();
  });

  it("reports every problem at once, each naming its field", () => {
    const error = invalidJob({
      nmae: "typo",
      timeout: "5 minutes",
      env: { "BAD NAME": "x" },
      steps: [{ run: "ok" }, { name: "neither" }, { run: "x", timeout: "10 sec" }],
    });
    expect(error.problems.length).toBeGreaterThanOrEqual(5);
    const found = fields(error);
    expect(found).toContain("timeout");
    expect(found).toContain("steps.1");
    expect(found).toContain("steps.2.timeout");
    expect(found.some((f) => f.startsWith("env"))).toBe(true);
    expect(error.problems.some((p) => p.message.includes("nmae"))).toBe(true);
    for (const problem of error.problems) expect(error.message).toContain(problem.field);
  });

  it.each([
    ["an unknown top-level key", { steps: [{ run: "x" }], nmae: "x" }, "(input)"],
    ["an unknown step key", { steps: [{ run: "x", cmd: "y" }] }, "steps.0"],
    ["a step with neither run nor argv", { steps: [{ name: "n" }] }, "steps.0"],
    ["a step with both run and argv", { steps: [{ run: "x", argv: ["y"] }] }, "steps.0"],
    ["a duration of '5 minutes'", { timeout: "5 minutes", steps: [{ run: "x" }] }, "timeout"],
    ["a negative duration", { steps: [{ run: "x", timeout: -5 }] }, "steps.0.timeout"],
    ["a fractional duration in ms", { steps: [{ run: "x", timeout: 1.5 }] }, "steps.0.timeout"],
    ["an env name with a space", { env: { "MY VAR": "x" }, steps: [{ run: "x" }] }, "env.MY VAR"],
    ["an env name starting with a digit", { steps: [{ run: "x", env: { "1X": "x" } }] }, "steps.0.env.1X"],
    ["an object env value", { env: { A: { b: 1 } }, steps: [{ run: "x" }] }, "env.A"],
    ["no steps", { steps: [] }, "steps"],
    ["missing steps", {}, "steps"],
    ["a bad step id", { steps: [{ id: "-x", run: "x" }] }, "steps.0.id"],
  ])("rejects %s", (_label, input, field) => {
    expect(fields(invalidJob(input))).toContain(field);
  });

  it.each([
    ["an env value", { env: { A: "a\0b" }, steps: [{ run: "x" }] }, "env.A"],
    ["a secret", { secrets: { TOKEN: "s3cr3t\0" }, steps: [{ run: "x" }] }, "secrets.TOKEN"],
    ["a run script", { steps: [{ run: "echo a\0b" }] }, "steps.0.run"],
    ["an argument", { steps: [{ argv: ["echo", "a\0b"] }] }, "steps.0.argv.1"],
    ["a working directory", { steps: [{ run: "x", workingDir: "a\0b" }] }, "steps.0.workingDir"],
    ["a shell prefix", { steps: [{ run: "x", shell: ["ba\0sh", "-c"] }] }, "steps.0.shell"],
  ])("rejects a NUL byte in %s (no process could be started with it)", (_label, input, field) => {
    const error = invalidJob(input);
    expect(error.problems).toEqual([
      { field, message: expect.stringMatching(/must not contain a NUL byte/) },
    ]);
    expect(error.message).not.toContain("s3cr3t");
  });

  it.each([
    ["a job timeout over 365 days", { timeout: "8761h", steps: [{ run: "x" }] }, "timeout"],
    [
      "a step timeout over 365 days in ms",
      { steps: [{ run: "x", timeout: 31_536_000_001 }] },
      "steps.0.timeout",
    ],
  ])("rejects %s: durations are at most 365 days", (_label, input, field) => {
    const error = invalidJob(input);
    expect(error.problems).toEqual([{ field, message: expect.stringMatching(/must be at most 365 days/) }]);
  });

  it("accepts a timeout of 720h (past Node's 2^31 ms timer limit: the agent schedules it in hops)", () => {
    const { job } = prepareJob({ timeout: "720h", steps: [{ run: "x", timeout: "8760h" }] }, "job-1");
    expect(job.timeoutMs).toBe(720 * 3_600_000);
    expect(job.steps[0]?.timeoutMs).toBe(8760 * 3_600_000);
  });

  it.each([
    [
      "20,000 secrets (a 669 KB submission)",
      Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`S${i}`, `${SECRET_VALUE}-${i}`])),
      /must hold at most 1,000 secrets/,
    ],
    [
      "1,001 secrets",
      Object.fromEntries(Array.from({ length: 1_001 }, (_, i) => [`S${i}`, `v-${i}-xx`])),
      /1,000 secrets/,
    ],
    ["65,537 bytes of secret values", { BIG: "b".repeat(65_537) }, /at most 65,536 bytes of values in all/],
  ])("refuses %s with CONTROLLER_ERR_INVALID_JOB, showing no value", (_label, secrets, message) => {
    const error = invalidJob({ secrets, steps: [{ run: "x" }] });
    expect(error.problems).toContainEqual({ field: "secrets", message: expect.stringMatching(message) });
    expect(new Set(fields(error))).toEqual(new Set(["secrets"]));
    expect(error.message).not.toContain(SECRET_VALUE);
    expect(error.message).not.toContain("bbbb");
  });

  it("accepts 1,000 secrets of 65,536 bytes in all, and the agent's protocol schema takes the job", () => {
    const secrets = Object.fromEntries(
      Array.from({ length: 1_000 }, (_, i) => [`S${i}`, `${"s".repeat(61)}${String(i).padStart(4, "0")}`]),
    );
    const { job } = prepareJob({ secrets, steps: [{ run: "x" }] }, "job-1");
    expect(job.mask).toHaveLength(1_000);
    const message = encodeMessage({ v: 1, type: "job", job });
    expect(decodeControllerMessage(message)).toMatchObject({ type: "job" });
  });

  it("rejects duplicate step ids, explicit or defaulted", () => {
    const explicit = invalidJob({
      steps: [
        { id: "a", run: "x" },
        { id: "a", run: "y" },
      ],
    });
    expect(fields(explicit)).toEqual(["steps.1.id"]);
    const defaulted = invalidJob({ steps: [{ id: "2", run: "x" }, { run: "y" }] });
    expect(fields(defaulted)).toEqual(["steps.1.id"]);
  });

  it.each([
    ["a valid secret beside another problem", { secrets: { TOKEN: SECRET_VALUE }, steps: [] }],
    ["a secret with a bad name", { secrets: { "BAD NAME": SECRET_VALUE }, steps: [{ run: "x" }] }],
    ["a secret of a bad type", { secrets: { TOKEN: [SECRET_VALUE] }, steps: [{ run: "x" }] }],
    ["a secret beside an unknown key", { secrets: { TOKEN: SECRET_VALUE }, extra: 1, steps: [{ run: "x" }] }],
  ])("never shows a secret value in the error: %s", (_label, input) => {
    const error = invalidJob(input);
    expect(error.message).not.toContain(SECRET_VALUE);
    expect(JSON.stringify(error.toJSON())).not.toContain(SECRET_VALUE);
  });

  it("serialises the error for the HTTP API", () => {
    const error = invalidJob({ steps: [] });
    const body = error.toJSON();
    expect(body.error.code).toBe("CONTROLLER_ERR_INVALID_JOB");
    expect(body.error.problems?.map((p) => p.field)).toEqual(["steps"]);
  });
});

describe("readJobFile", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "job-spec-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads a YAML job file", async () => {
    const path = join(dir, "job.yml");
    await writeFile(
      path,
      [
        "name: hello",
        "timeout: 5m",
        "env:",
        "  GREETING: hi",
        "steps:",
        "  - name: say",
        "    run: echo $GREETING",
        "  - argv: [node, -v]",
        "    timeout: 30s",
        "",
      ].join("\n"),
    );
    const input = await readJobFile(path);
    expect(input).toEqual({
      name: "hello",
      timeout: "5m",
      env: { GREETING: "hi" },
      steps: [
        { name: "say", run: "echo $GREETING" },
        { argv: ["node", "-v"], timeout: "30s" },
      ],
    });
    const { job } = prepareJob(input, "job-1");
    expect(job.timeoutMs).toBe(300_000);
    expect(job.steps.map((s) => [s.id, s.timeoutMs])).toEqual([
      ["1", undefined],
      ["2", 30_000],
    ]);
  });

  it("reads a .yaml job file", async () => {
    const path = join(dir, "job.yaml");
    await writeFile(path, "steps:\n  - run: true\n");
    expect(await readJobFile(path)).toEqual({ steps: [{ run: true }] });
  });

  it("reads a JSON job file", async () => {
    const path = join(dir, "job.json");
    const content = { name: "j", steps: [{ id: "one", run: "echo 1" }] };
    await writeFile(path, JSON.stringify(content));
    expect(await readJobFile(path)).toEqual(content);
  });

  it("fails with CONTROLLER_ERR_JOB_FILE for a missing file", async () => {
    const error = await apiErrorAsync(readJobFile(join(dir, "does-not-exist.yml")));
    expect(error.code).toBe("CONTROLLER_ERR_JOB_FILE");
    expect(error.status).toBe(400);
  });

  it("fails with CONTROLLER_ERR_JOB_FILE for malformed YAML", async () => {
    const path = join(dir, "bad.yml");
    await writeFile(path, "steps:\n  - run: [unclosed\n    argv: {\n");
    const error = await apiErrorAsync(readJobFile(path));
    expect(error.code).toBe("CONTROLLER_ERR_JOB_FILE");
    expect(error.status).toBe(400);
  });

  it("fails with CONTROLLER_ERR_JOB_FILE for malformed JSON", async () => {
    const path = join(dir, "bad.json");
    await writeFile(path, '{"steps": [');
    const error = await apiErrorAsync(readJobFile(path));
    expect(error.code).toBe("CONTROLLER_ERR_JOB_FILE");
  });
});

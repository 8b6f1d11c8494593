import { describe, expect, it } from "vitest";
import {
  CloseCode,
  type ConfigProblem,
  isResumableClose,
  readIntegerEnv,
  readTunables,
} from "../../agent-core/index.ts";

describe("isResumableClose: the one rule agent and controller share", () => {
  it.each([1001, 1006, 1011, CloseCode.heartbeatTimeout, CloseCode.ackTimeout])(
    "resumes after %i (a drop)",
    (code) => {
      expect(isResumableClose(code)).toBe(true);
    },
  );

  it.each([
    CloseCode.normal,
    CloseCode.invalidPayload,
    CloseCode.messageTooBig,
    CloseCode.malformed,
    CloseCode.invalidMessage,
    CloseCode.unknownType,
    CloseCode.outOfOrder,
    CloseCode.unsupportedVersion,
    CloseCode.resumeRefused,
  ])("does not resume after %i (the peers disagree)", (code) => {
    expect(isResumableClose(code)).toBe(false);
  });
});

describe("readIntegerEnv and readTunables", () => {
  it("reads set values, ignores unset and blank ones", () => {
    const problems: ConfigProblem[] = [];
    expect(readIntegerEnv({ A: " 42 " }, "A", problems)).toBe(42);
    expect(readIntegerEnv({ A: "" }, "A", problems)).toBeUndefined();
    expect(readIntegerEnv({}, "A", problems)).toBeUndefined();
    expect(problems).toEqual([]);
  });

  it("names the variable, the rule and the value", () => {
    const problems: ConfigProblem[] = [];
    expect(
      readIntegerEnv({ MB: "100" }, "MB", problems, { min: 512, max: 10_240, unit: "MB" }),
    ).toBeUndefined();
    expect(readIntegerEnv({ N: "1.5" }, "N", problems, { min: 1 })).toBeUndefined();
    expect(problems).toEqual([
      { field: "MB", message: "Expected `MB` to be an integer from 512 to 10240 (MB), got `100` (string)" },
      { field: "N", message: "Expected `N` to be an integer >= 1, got `1.5` (string)" },
    ]);
  });

  it("maps every tunable set to its config field, with units in the problems", () => {
    const problems: ConfigProblem[] = [];
    const found = readTunables({ AGENT_GRACE_MS: "500", AGENT_MAX_SPOOL_BYTES: "-1", OTHER: "7" }, problems);
    expect(found).toEqual([{ variable: "AGENT_GRACE_MS", field: "graceMs", value: 500 }]);
    expect(problems).toEqual([
      {
        field: "AGENT_MAX_SPOOL_BYTES",
        message: "Expected `AGENT_MAX_SPOOL_BYTES` to be a non-negative integer (bytes), got `-1` (string)",
      },
    ]);
  });
});

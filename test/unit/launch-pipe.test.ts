import { closeSync, openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../agent-core/index.ts";
import { LAUNCH_FD_ENV, readLaunchFd, takeLaunch } from "../../container-entrypoint/launch-pipe.ts";
import { tempDir } from "../support/harness.ts";

const SECRET = "4f3c2b1a0d9e8f7a6b5c4d3e2f1a0b9c";
const records = (...items: string[]) => Buffer.from(items.map((item) => `${item}\0`).join(""), "utf8");
const from = (bytes: Buffer) => () => bytes;

function launchError(
  env: Record<string, string>,
  read: (fd: number) => Buffer,
  argv: string[] = [],
): ConfigError {
  try {
    takeLaunch(argv, env, read);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe("AGENT_ERR_CONFIG");
    expect((error as ConfigError).message).not.toContain(SECRET);
    return error as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

const files = tempDir("launch-pipe-");
afterAll(() => files.remove());

describe("takeLaunch", () => {
  it("without AGENT_LAUNCH_FD, returns the arguments and environment as given, reading nothing", () => {
    const read = () => {
      throw new Error("must not read");
    };
    expect(takeLaunch(["-url", "u", SECRET, "n"], { JENKINS_URL: "x" }, read)).toEqual({
      argv: ["-url", "u", SECRET, "n"],
      env: { JENKINS_URL: "x" },
    });
  });

  it("takes the arguments and the secret's variables from the pipe, and drops AGENT_LAUNCH_FD", () => {
    let readFd: number | undefined;
    const launch = takeLaunch([], { [LAUNCH_FD_ENV]: "11", HOME: "/home/agent" }, (fd) => {
      readFd = fd;
      return records(
        "4",
        "-url",
        "http://c/",
        `a b\n${SECRET}`,
        "",
        `JENKINS_SECRET=${SECRET}=x`,
        "AGENT_SECRET=",
      );
    });
    expect(readFd).toBe(11);
    expect(launch).toEqual({
      argv: ["-url", "http://c/", `a b\n${SECRET}`, ""],
      env: { HOME: "/home/agent", JENKINS_SECRET: `${SECRET}=x`, AGENT_SECRET: "" },
    });
  });

  it("accepts no arguments and no variables (`docker run IMAGE` with nothing appended)", () => {
    expect(takeLaunch([], { [LAUNCH_FD_ENV]: "10" }, from(records("0")))).toEqual({ argv: [], env: {} });
  });

  it("reads a real descriptor to its end and closes it", () => {
    const path = join(files.path, "launch");
    writeFileSync(path, records("1", "--help"));
    const fd = openSync(path, "r");
    expect(takeLaunch([], { [LAUNCH_FD_ENV]: String(fd) }, readLaunchFd).argv).toEqual(["--help"]);
    expect(() => closeSync(fd)).toThrow(/EBADF/);
  });

  it.each([
    ["not a number", "eleven", /to be an open file descriptor number of 3 or more, got "eleven"/],
    ["stdin", "0", /of 3 or more, got "0"/],
    ["negative", "-4", /got "-4"/],
    ["empty", "", /got ""/],
  ])("refuses an AGENT_LAUNCH_FD that is %s", (_what, value, message) => {
    const error = launchError({ [LAUNCH_FD_ENV]: value }, from(records("0")));
    expect(error.problems).toEqual([{ field: LAUNCH_FD_ENV, message: expect.stringMatching(message) }]);
    expect(error.message).toMatch(/set by the image's entrypoint, images\/entrypoint.sh; unset it/);
  });

  it("refuses arguments beside the pipe (they would be dropped)", () => {
    const error = launchError({ [LAUNCH_FD_ENV]: "11" }, from(records("0")), ["-url", "u"]);
    expect(error.problems[0]!.message).toMatch(/Expected no arguments beside AGENT_LAUNCH_FD .*got 2/);
  });

  it("says why a descriptor cannot be read (not open)", () => {
    const error = launchError({ [LAUNCH_FD_ENV]: "987" }, readLaunchFd);
    expect(error.problems[0]!.message).toMatch(/Cannot read the launch pipe \(descriptor 987\): EBADF/);
  });

  it.each([
    ["nothing", Buffer.alloc(0), /Expected NUL-terminated records .*got nothing/],
    ["no final NUL", Buffer.from(`1\0${SECRET}`), /got \d+ bytes without a final NUL/],
    ["no count", records("-url", "u"), /Expected the argument count first \(0 to 1\), got "-url"/],
    [
      "a count beyond the records",
      records("3", "-url", "u"),
      /Expected the argument count first \(0 to 2\), got "3"/,
    ],
    [
      "a variable without =",
      records("0", SECRET),
      /variable 1 after the arguments to be NAME=VALUE .*got no `=`/,
    ],
    [
      "a variable that does not carry the secret",
      records("0", `LD_PRELOAD=${SECRET}`),
      /NAME one of JENKINS_SECRET, SLAVE_NODE_SECRET, AGENT_SECRET, got the name "LD_PRELOAD"/,
    ],
  ])("refuses a pipe holding %s, without showing its content", (_what, bytes, message) => {
    const error = launchError({ [LAUNCH_FD_ENV]: "11" }, from(bytes));
    expect(error.message).toMatch(/^Invalid launch pipe \(images\/entrypoint.sh\)/);
    expect(error.problems.map((p) => p.message)).toEqual([expect.stringMatching(message)]);
  });
});

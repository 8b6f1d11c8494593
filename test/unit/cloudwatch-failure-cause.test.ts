import { describe, expect, it } from "vitest";
import { cloudWatchFailureCause } from "../../lambda-handler/index.ts";

const cause = (error: Parameters<typeof cloudWatchFailureCause>[0]) =>
  cloudWatchFailureCause(error, "eu-west-1", "/ephemeral-agent/lambda");

describe("cloudWatchFailureCause", () => {
  it("tells missing credentials from refused ones", () => {
    expect(
      cause({ name: "CredentialsProviderError", message: "Could not load credentials from any providers" }),
    ).toMatch(/^no AWS credentials: .*AWS_PROFILE/);
    expect(cause({ name: "Error", message: "Could not load credentials from any providers" })).toMatch(
      /^no AWS credentials/,
    );
    for (const name of [
      "UnrecognizedClientException",
      "InvalidSignatureException",
      "ExpiredTokenException",
    ]) {
      expect(cause({ name, message: "bad" })).toMatch(/^the credentials were refused/);
    }
  });

  it("names the permissions when access is denied", () => {
    expect(
      cause({
        name: "AccessDeniedException",
        message: "User: x is not authorized to perform: logs:PutLogEvents",
      }),
    ).toBe(
      "a missing permission: the role needs logs:CreateLogStream and logs:PutLogEvents on /ephemeral-agent/lambda (AccessDeniedException: User: x is not authorized to perform: logs:PutLogEvents)",
    );
  });

  it("blames the network for connection errors, timeouts, and silence", () => {
    for (const code of ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT"]) {
      expect(cause({ name: "Error", code, message: `connect ${code}` })).toMatch(
        /^no network: logs\.eu-west-1\.amazonaws\.com could not be reached/,
      );
    }
    expect(cause({ name: "TimeoutError", message: "timed out" })).toMatch(/^no network/);
    expect(cause(undefined)).toMatch(/^no network: .*VPC/);
  });

  it("quotes anything else as it came", () => {
    expect(cause({ name: "InvalidParameterException", message: "bad group" })).toBe(
      "CloudWatch Logs refused the write (InvalidParameterException: bad group)",
    );
  });
});

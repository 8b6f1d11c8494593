import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type DeploymentRecord,
  decodeRecord,
  describeRecord,
  encodeRecord,
  MAX_DESCRIPTION_LENGTH,
  recordTime,
} from "../../deploy/index.ts";

const promoted: DeploymentRecord = {
  state: "promoted",
  live: "5",
  version: "5",
  previous: "4",
  at: "2026-05-04T10:11:12Z",
  by: "ci@runner-3",
  id: "5f1c0e6a",
};

describe("the deployment record in an alias description", () => {
  it("reads as a line of key=value a person can follow", () => {
    expect(encodeRecord(promoted)).toBe(
      "rollout/1 state=promoted live=5 version=5 previous=4 at=2026-05-04T10:11:12Z by=ci@runner-3 id=5f1c0e6a",
    );
    expect(describeRecord(promoted)).toBe(
      "version 5 promoted at 2026-05-04T10:11:12Z by ci@runner-3 (previous: 4)",
    );
  });

  it("round-trips every state, with no previous version written as -", () => {
    const records: DeploymentRecord[] = [
      promoted,
      { ...promoted, state: "deploying", version: "-", previous: null, expires: "2026-05-04T10:41:12Z" },
      {
        ...promoted,
        state: "failed",
        live: "4",
        reason: "smoke test failed: 1 of 6 checks failed (tool:git)",
      },
      { ...promoted, state: "rolled-back", live: "4", previous: null },
    ];
    for (const record of records) expect(decodeRecord(encodeRecord(record))).toEqual(record);
  });

  it("fits Lambda's 256 characters whatever the reason, and cleans values of spaces", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 2000 }), fc.string({ maxLength: 300 }), (reason, by) => {
        const encoded = encodeRecord({ ...promoted, state: "failed", reason, by });
        expect(encoded.length).toBeLessThanOrEqual(MAX_DESCRIPTION_LENGTH);
        const decoded = decodeRecord(encoded);
        expect(decoded?.state).toBe("failed");
        expect(decoded?.by).toMatch(/^[A-Za-z0-9@._:/+$-]{1,64}$/);
      }),
    );
    const long = encodeRecord({ ...promoted, state: "failed", reason: "x".repeat(1000) });
    expect(long).toMatch(/reason=x+\.\.\.$/);
  });

  it("is null for anything that is not a record: empty, someone's note, a damaged one", () => {
    for (const description of [
      undefined,
      "",
      "live alias for Jenkins",
      "rollout/1",
      "rollout/1 state=exploded live=5 version=5 previous=4 at=2026-05-04T10:11:12Z by=x id=y",
      "rollout/1 state=promoted live=5 version=5 previous=4 at=yesterday by=x id=y",
      "rollout/1 state=deploying live=5 version=- previous=- at=2026-05-04T10:11:12Z by=x id=y",
      "rollout/1 state=promoted live=5 version=5 previous=4 at=2026-05-04T10:11:12Z by=x",
      "rollout/2 state=promoted live=5 version=5 previous=4 at=2026-05-04T10:11:12Z by=x id=y",
    ]) {
      expect(decodeRecord(description), String(description)).toBeNull();
    }
  });

  it("is null when a version field is not a version: a hand edit cannot aim rollback at $LATEST or an alias", () => {
    const base = "at=2026-05-04T10:11:12Z by=x id=y";
    for (const fields of [
      "state=promoted live=5 version=5 previous=$LATEST",
      "state=promoted live=5 version=5 previous=live",
      "state=promoted live=5 version=5 previous=0",
      "state=promoted live=5 version=5 previous=04",
      "state=promoted live=canary version=5 previous=4",
      "state=promoted live=5 version=$LATEST previous=4",
      "state=rolled-back live=4 version=five previous=-",
    ]) {
      expect(decodeRecord(`rollout/1 ${fields} ${base}`), fields).toBeNull();
    }
    // What deploys write: live on $LATEST (a new stack), a version not yet published.
    expect(decodeRecord(`rollout/1 state=failed live=$LATEST version=2 previous=- ${base}`)).toMatchObject({
      live: "$LATEST",
    });
    expect(
      decodeRecord(
        `rollout/1 state=deploying live=5 version=- previous=4 at=2026-05-04T10:11:12Z expires=2026-05-04T10:41:12Z by=x id=y`,
      ),
    ).toMatchObject({ version: "-", previous: "4" });
  });

  it("says when a hold has expired, and that a failed record was not promoted whatever the cause", () => {
    const hold: DeploymentRecord = {
      ...promoted,
      state: "deploying",
      live: "4",
      expires: "2026-05-04T10:41:12Z",
    };
    expect(describeRecord(hold, Date.parse("2026-05-04T10:30:00Z"))).toMatch(
      /holding the alias until 2026-05-04T10:41:12Z$/,
    );
    expect(describeRecord(hold, Date.parse("2026-05-04T11:00:00Z"))).toMatch(
      /held the alias until 2026-05-04T10:41:12Z \(expired: the next deploy or rollback takes over\)$/,
    );
    const interrupted: DeploymentRecord = {
      ...promoted,
      state: "failed",
      live: "4",
      reason: "interrupted (SIGINT)",
    };
    expect(describeRecord(interrupted)).toBe(
      "version 5 was not promoted (deploy by ci@runner-3 at 2026-05-04T10:11:12Z); the alias stayed on 4: interrupted (SIGINT)",
    );
  });

  it("writes times in UTC to the second", () => {
    expect(recordTime(Date.UTC(2026, 4, 4, 10, 11, 12, 999))).toBe("2026-05-04T10:11:12Z");
  });
});

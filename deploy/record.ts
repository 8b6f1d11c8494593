/**
 * The deployment record: what the last deploy or rollback of a function did, kept in the
 * Description of the function's alias (at most 256 characters), so that it lives in AWS itself,
 * changes in the same conditional UpdateAlias call that moves the alias (record and pointer never
 * disagree), and reads in the console or with `aws lambda get-alias`:
 *
 *     rollout/1 state=promoted live=5 version=5 previous=4 at=2026-05-04T10:11:12Z by=ci@runner-3 id=5f1c0e6a
 *
 * - `state`: `deploying` (a deploy holds the alias until `expires`), `promoted`, `failed` (the
 *   new version was not promoted: it failed its check, or the deploy failed or was interrupted;
 *   the alias stayed on `live`), `rolled-back`.
 * - `live`: the version the alias serves (all traffic; during `deploying`, the version it served
 *   when the deploy began).
 * - `version`: the version the operation was about (the new one; for a rollback, the one left).
 * - `previous`: where `rollback` goes, or `-` when there is nowhere to go.
 * - Versions are version numbers (`live` may also be `$LATEST`, where a new stack's alias starts);
 *   a description that breaks this is not a record.
 * - `reason` (failed only, last, to the end of the line): why.
 */

export const RECORD_TAG = "rollout/1";
/** Lambda's limit on an alias description. */
export const MAX_DESCRIPTION_LENGTH = 256;

export type RecordState = "deploying" | "promoted" | "failed" | "rolled-back";
const STATES: readonly string[] = ["deploying", "promoted", "failed", "rolled-back"];

export interface DeploymentRecord {
  state: RecordState;
  live: string;
  /** The version the operation was about; `-` while a deploy has not published yet. */
  version: string;
  previous: string | null;
  /** ISO 8601, UTC, whole seconds. */
  at: string;
  by: string;
  /** Identifies one run of the deploy command. */
  id: string;
  /** `deploying` only: until when the deploy holds the alias (ISO 8601). */
  expires?: string;
  /** `failed` only: a short reason. */
  reason?: string;
}

const TOKEN = /^[A-Za-z0-9@._:/+$-]+$/;
/** A published version: what `previous` and `version` may name, so a hand edit cannot aim a rollback at $LATEST or an alias. */
const VERSION = /^[1-9][0-9]*$/;

/** A value as it may appear in the record: no spaces, at most `max` characters. */
export function recordToken(value: string, max = 64): string {
  const cleaned = value.replace(/[^A-Za-z0-9@._:/+$-]+/g, "_").slice(0, max);
  return cleaned === "" ? "-" : cleaned;
}

/** The record as an alias description (at most 256 characters: the reason is shortened to fit). */
export function encodeRecord(record: DeploymentRecord): string {
  const fields: [string, string | undefined][] = [
    ["state", record.state],
    ["live", record.live],
    ["version", record.version],
    ["previous", record.previous ?? "-"],
    ["at", record.at],
    ["expires", record.expires],
    ["by", record.by],
    ["id", record.id],
  ];
  const head = [
    RECORD_TAG,
    ...fields.filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${recordToken(v!)}`),
  ].join(" ");
  if (record.reason === undefined) return head.slice(0, MAX_DESCRIPTION_LENGTH);
  const room = MAX_DESCRIPTION_LENGTH - head.length - " reason=".length;
  const reason = record.reason.replace(/\s+/g, " ").trim();
  const shortened = reason.length <= room ? reason : `${reason.slice(0, Math.max(0, room - 3))}...`;
  return `${head} reason=${shortened}`;
}

/** Reads a record from an alias description; null when the description is not one (empty, or someone else's). */
export function decodeRecord(description: string | undefined | null): DeploymentRecord | null {
  if (!description?.startsWith(`${RECORD_TAG} `)) return null;
  let rest = description.slice(RECORD_TAG.length + 1);
  let reason: string | undefined;
  const reasonAt = rest.indexOf(" reason=");
  if (reasonAt >= 0) {
    reason = rest.slice(reasonAt + " reason=".length);
    rest = rest.slice(0, reasonAt);
  }
  const fields = new Map<string, string>();
  for (const token of rest.split(" ")) {
    const eq = token.indexOf("=");
    if (eq <= 0) return null;
    const value = token.slice(eq + 1);
    if (!TOKEN.test(value)) return null;
    fields.set(token.slice(0, eq), value);
  }
  const state = fields.get("state");
  const live = fields.get("live");
  const version = fields.get("version");
  const previous = fields.get("previous");
  const at = fields.get("at");
  const by = fields.get("by");
  const id = fields.get("id");
  if (!state || !STATES.includes(state) || !live || !version || !previous || !at || !by || !id) return null;
  // live: a version, or $LATEST (where a new stack's alias starts); version: a version, or - before
  // one is published; previous: a version, or - for none.
  if (!VERSION.test(live) && live !== "$LATEST") return null;
  if (!VERSION.test(version) && version !== "-") return null;
  if (!VERSION.test(previous) && previous !== "-") return null;
  if (Number.isNaN(Date.parse(at))) return null;
  const expires = fields.get("expires");
  if (state === "deploying" && (expires === undefined || Number.isNaN(Date.parse(expires)))) return null;
  return {
    state: state as RecordState,
    live,
    version,
    previous: previous === "-" ? null : previous,
    at,
    by,
    id,
    ...(expires !== undefined ? { expires } : {}),
    ...(reason !== undefined ? { reason } : {}),
  };
}

/** Epoch ms as the record writes times: ISO 8601, UTC, whole seconds. */
export function recordTime(epochMs: number): string {
  return new Date(Math.floor(epochMs / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

/** Whether a `deploying` record's hold has expired at `now` (epoch ms): its deploy is gone, and the next deploy or rollback takes over. */
export function holdExpired(record: DeploymentRecord, now: number): boolean {
  return record.state === "deploying" && !(Date.parse(record.expires!) > now);
}

/** One line for people: what the record says (`now`, epoch ms, tells whether a hold has expired). */
export function describeRecord(record: DeploymentRecord, now = Date.now()): string {
  switch (record.state) {
    case "deploying": {
      const started = `a deploy by ${record.by} (run ${record.id}) started at ${record.at}${record.version === "-" ? "" : ` (version ${record.version})`}`;
      return holdExpired(record, now)
        ? `${started}, held the alias until ${record.expires} (expired: the next deploy or rollback takes over)`
        : `${started}, holding the alias until ${record.expires}`;
    }
    case "promoted":
      return `version ${record.version} promoted at ${record.at} by ${record.by}${record.previous ? ` (previous: ${record.previous})` : ""}`;
    case "failed":
      return `version ${record.version} was not promoted (deploy by ${record.by} at ${record.at}); the alias stayed on ${record.live}${record.reason ? `: ${record.reason}` : ""}`;
    case "rolled-back":
      return record.version === "-"
        ? `an unfinished deploy rolled back, the alias on ${record.live}, at ${record.at} by ${record.by}`
        : `rolled back from ${record.version} to ${record.live} at ${record.at} by ${record.by}`;
  }
}

/** A job's workspace seed, artifacts and warm caches, as its record says (shown when it has any). */
import { formatBytes } from "../describe.ts";
import type { JobView } from "./phases.ts";

export function Transfers(props: { record: JobView }) {
  const { record } = props;
  const seed = record.transfers?.workspace;
  const artifacts = record.artifacts;
  const caches = record.caches;
  if (
    record.workspace === undefined &&
    artifacts === undefined &&
    caches === undefined &&
    record.transfers === undefined
  ) {
    return null;
  }
  const href = `/api/v1/jobs/${encodeURIComponent(record.id)}/artifacts`;
  return (
    <div class="transfers">
      {record.workspace !== undefined ? (
        <p class="sub">
          Workspace: {record.workspace.entries} entries, {formatBytes(record.workspace.bytes)}
          {seed?.status === "failed" ? (
            <span class="error">
              {" "}
              · refused ({seed.code}
              {seed.entry !== null ? `, entry ${seed.entry}` : ""}): {seed.message}
            </span>
          ) : seed?.status === "done" ? (
            " · seeded, SHA-256 checked"
          ) : null}
        </p>
      ) : null}
      {artifacts?.status === "stored" ? (
        <p class="sub">
          Artifacts{record.attempts.length > 1 ? ` of attempt ${artifacts.attempt}` : ""}: {artifacts.entries}{" "}
          entries, {formatBytes(artifacts.bytes)}
          {artifacts.bytes > 0 ? (
            <>
              {" · "}
              <a href={href} download>
                download (tar)
              </a>
            </>
          ) : null}
          {artifacts.unmatched.length > 0 ? ` · matched nothing: ${artifacts.unmatched.join(", ")}` : ""}
          {artifacts.skippedCount > 0
            ? ` · ${artifacts.skippedCount} left out (links out of the workspace, special files)`
            : ""}
        </p>
      ) : artifacts?.status === "failed" ? (
        <p class="sub error">
          Artifacts refused ({artifacts.code}
          {artifacts.entry !== null ? `, entry ${artifacts.entry}` : ""}): {artifacts.message}
        </p>
      ) : record.transfers?.artifacts?.status === "skipped" ? (
        <p class="sub">Artifacts: {record.transfers.artifacts.message}</p>
      ) : null}
      {caches !== undefined ? (
        <p class="sub">
          Caches ({record.cacheTrust ?? caches.scope}):{" "}
          {caches.hits.length > 0 ? `hits ${caches.hits.join(", ")}` : "no hits"}
          {caches.misses.length > 0 ? ` · misses ${caches.misses.join(", ")}` : ""}
          {caches.evictions.length > 0
            ? ` · evicted ${caches.evictions.map((e) => `${e.name} (${e.reason}, ${formatBytes(e.freedBytes)})`).join(", ")}`
            : ""}
        </p>
      ) : null}
    </div>
  );
}

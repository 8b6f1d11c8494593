/** One job: its state, timeline, and log following live, with cancel and retry. */
import { useEffect, useRef, useState } from "preact/hooks";
import { describeFailure, describeStepEnd, formatBytes, formatMs } from "../describe.ts";
import { api, followEvents } from "./api.ts";
import { formatDateTime } from "./format.ts";
import { LogModel, safeUrl } from "./log-model.ts";
import { LogView } from "./log-view.tsx";
import { type JobView, runMs, waitMs } from "./phases.ts";
import { Timeline } from "./timeline.tsx";
import { Transfers } from "./transfers.tsx";
import { Link, navigate, reportError, StatusBadge, useNow } from "./ui.tsx";

const TERMINAL = new Set(["succeeded", "failed", "cancelled", "error"]);
/** Statuses and step boundaries change the record: it is fetched again this long after the last. */
const RECORD_REFRESH_MS = 250;

export function JobPage(props: { id: string }) {
  const { id } = props;
  const [record, setRecord] = useState<JobView | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [version, setVersion] = useState(0);
  const [follow, setFollow] = useState(true);
  const [showTimes, setShowTimes] = useState(() => localStorage.getItem("log.timestamps") === "1");
  const [streaming, setStreaming] = useState(false);
  const [busy, setBusy] = useState(false);
  const modelRef = useRef(new LogModel());
  const running = record !== undefined && !TERMINAL.has(record.status);
  const now = useNow(500, running);

  useEffect(() => {
    const controller = new AbortController();
    const model = new LogModel();
    modelRef.current = model;
    setRecord(undefined);
    setError(undefined);
    setVersion(0);
    setFollow(true);
    let frame = 0;
    const render = () => {
      if (frame !== 0) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        setVersion(model.version);
      });
    };
    let refreshTimer: ReturnType<typeof setTimeout> | undefined;
    const refresh = () =>
      api.job(id, controller.signal).then(
        (fresh) => setRecord(fresh),
        (caught: unknown) => controller.signal.aborted || setError(reportError(caught)),
      );
    const refreshSoon = () => {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(refresh, RECORD_REFRESH_MS);
    };
    (async () => {
      try {
        const first = await api.job(id, controller.signal);
        setRecord(first);
        model.setSteps(first.steps);
        render();
        setStreaming(true);
        await followEvents(
          id,
          (events) => {
            for (const event of events) model.ingest(event);
            if (events.some((event) => event.type !== "output")) refreshSoon();
            render();
          },
          controller.signal,
        );
        if (!controller.signal.aborted) await refresh();
      } catch (caught) {
        if (!controller.signal.aborted) setError(reportError(caught));
      } finally {
        if (!controller.signal.aborted) setStreaming(false);
      }
    })();
    return () => {
      controller.abort();
      clearTimeout(refreshTimer);
      cancelAnimationFrame(frame);
    };
  }, [id]);

  const model = modelRef.current;
  const act = async (action: () => Promise<void>) => {
    setBusy(true);
    try {
      await action();
    } catch (caught) {
      setError(reportError(caught));
    } finally {
      setBusy(false);
    }
  };

  if (record === undefined)
    return <section>{error ? <p class="error">{error}</p> : <p class="empty">Loading job {id}…</p>}</section>;

  const failed = record.status !== "succeeded" && TERMINAL.has(record.status);
  const skipped = record.steps.filter((step) => step.status === "skipped");
  const failedSteps = record.steps.filter((step) => step.status === "failed");
  const cloudWatch = safeUrl(record.agent?.logs?.url);
  const wait = waitMs(record, now);
  const run = runMs(record, now);
  return (
    <section class="job" data-status={record.status}>
      <header class="job-header">
        <div>
          <h1>
            {record.name ?? record.id} <StatusBadge status={record.status} />
          </h1>
          <p class="sub">
            {record.id} · submitted {formatDateTime(Date.parse(record.submittedAt))}
            {wait !== undefined ? ` · waited ${formatMs(wait)}` : ""}
            {run !== undefined ? ` · ran ${formatMs(run)}` : ""}
            {record.labels.length > 0 ? ` · labels ${record.labels.join(", ")}` : ""}
            {record.retryOf ? (
              <>
                {" · runs again "}
                <Link href={`/jobs/${encodeURIComponent(record.retryOf)}`}>{record.retryOf}</Link>
              </>
            ) : null}
          </p>
          <p class="sub">
            {record.agent
              ? `agent ${record.agent.name} (${record.agent.runtime}, ${record.agent.version})`
              : "no agent yet"}
            {record.reconnects ? ` · reconnected ${record.reconnects}×` : ""}
            {cloudWatch ? (
              <>
                {" · "}
                <a class="cloudwatch" href={cloudWatch} target="_blank" rel="noopener noreferrer">
                  CloudWatch Logs copy
                </a>
              </>
            ) : null}
          </p>
        </div>
        <div class="actions">
          {running ? (
            <button
              type="button"
              class="danger"
              disabled={busy}
              onClick={() => act(async () => setRecord(await api.cancel(id)))}
            >
              Cancel
            </button>
          ) : null}
          {TERMINAL.has(record.status) ? (
            <button
              type="button"
              disabled={busy}
              onClick={() =>
                act(async () => {
                  const next = await api.retry(id);
                  navigate(`/jobs/${encodeURIComponent(next.id)}`);
                })
              }
            >
              Retry
            </button>
          ) : null}
        </div>
      </header>
      {error ? <p class="error">{error}</p> : null}
      {failed ? (
        <div class="failure" role="alert">
          <strong>Job {record.status}:</strong> {describeFailure(record.reason, record.cause)}.
          {record.message ? <div class="message">{record.message}</div> : null}
          {failedSteps.length > 0 ? (
            <div class="failed-steps">
              Failed:{" "}
              {failedSteps
                .map((step) => `${step.name ?? `step ${step.id}`} (${describeStepEnd(step)})`)
                .join(", ")}
            </div>
          ) : null}
          {skipped.length > 0 ? (
            <div class="skipped">
              Skipped: {skipped.map((step) => step.name ?? `step ${step.id}`).join(", ")}
            </div>
          ) : null}
        </div>
      ) : null}
      <Transfers record={record} />
      <Timeline record={record} now={now} />
      <div class="toolbar">
        <label>
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.currentTarget.checked)} />{" "}
          Follow
        </label>
        <label>
          <input
            type="checkbox"
            checked={showTimes}
            onChange={(e) => {
              const on = e.currentTarget.checked;
              localStorage.setItem("log.timestamps", on ? "1" : "0");
              setShowTimes(on);
            }}
          />{" "}
          Timestamps
        </label>
        <button
          type="button"
          onClick={() => {
            model.setAllCollapsed(false);
            setVersion(model.version);
          }}
        >
          Expand all
        </button>
        <button
          type="button"
          onClick={() => {
            model.setAllCollapsed(true);
            setVersion(model.version);
          }}
        >
          Collapse all
        </button>
        <a href={`/api/v1/jobs/${encodeURIComponent(id)}/log`} target="_blank" rel="noopener">
          Raw log
        </a>
        <span class="sub" data-testid="log-state">
          {streaming ? "live" : "complete"} · {model.lineCount} lines · {formatBytes(record.logBytes)}
        </span>
      </div>
      <LogView
        model={model}
        version={version}
        showTimes={showTimes}
        follow={follow}
        onFollowChange={setFollow}
        onToggle={(section) => {
          model.toggle(section);
          setVersion(model.version);
        }}
        rawLogHref={`/api/v1/jobs/${encodeURIComponent(id)}/log`}
      />
    </section>
  );
}

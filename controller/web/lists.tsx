/** The jobs list and the agents list. */

import { formatMs } from "../describe.ts";
import type { AgentInfo } from "../http-api.ts";
import { api } from "./api.ts";
import { formatAgo, formatDateTime } from "./format.ts";
import { firstOutputMs, type JobView, jobPhases, runMs, waitMs } from "./phases.ts";
import { Link, StatusBadge, useNow, usePoll } from "./ui.tsx";

const POLL_MS = 2_000;

export function JobsPage() {
  const { data, error } = usePoll((signal) => api.jobs(signal), POLL_MS, []);
  const now = useNow(1_000, true);
  const jobs = [...((data?.jobs ?? []) as JobView[])].sort((a, b) =>
    b.submittedAt.localeCompare(a.submittedAt),
  );
  return (
    <section>
      <h1>Jobs</h1>
      {error ? <p class="error">{error}</p> : null}
      {data !== undefined && jobs.length === 0 ? (
        <p class="empty">
          No jobs yet. Submit one with <code>controller submit FILE</code> or <code>POST /api/v1/jobs</code>.
        </p>
      ) : null}
      {jobs.length > 0 ? (
        <table class="jobs">
          <thead>
            <tr>
              <th>Job</th>
              <th>Status</th>
              <th>Labels</th>
              <th>Agent</th>
              <th title="launches of an agent for this job">Attempts</th>
              <th>Queued → launched → connected → first output → end</th>
              <th>Wait</th>
              <th>Run</th>
              <th>Submitted</th>
            </tr>
          </thead>
          <tbody>
            {jobs.map((job) => (
              <JobRow key={job.id} job={job} now={now} />
            ))}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}

function JobRow(props: { job: JobView; now: number }) {
  const { job, now } = props;
  const wait = waitMs(job, now);
  const run = runMs(job, now);
  const submitted = Date.parse(job.submittedAt);
  const attempts = job.attempts?.length ?? (job.agent ? 1 : 0);
  return (
    <tr data-job={job.id}>
      <td>
        <Link href={`/jobs/${encodeURIComponent(job.id)}`}>{job.name ?? job.id}</Link>
        {job.name ? <div class="sub">{job.id}</div> : null}
      </td>
      <td>
        <StatusBadge status={job.status} />
      </td>
      <td>
        {job.labels.map((label) => (
          <span key={label} class="label">
            {label}
          </span>
        ))}
      </td>
      <td>
        {job.agent ? (
          <>
            {job.agent.name}
            <div class="sub">{job.agent.runtime}</div>
          </>
        ) : (
          <span class="sub">none yet</span>
        )}
      </td>
      <td class="num">{attempts}</td>
      <td>
        <PhaseStrip job={job} now={now} />
      </td>
      <td class="num">{wait === undefined ? "" : formatMs(wait)}</td>
      <td class="num">{run === undefined ? "" : formatMs(run)}</td>
      <td title={formatDateTime(submitted)}>{formatAgo(submitted, now)}</td>
    </tr>
  );
}

/** A thin bar: the job's phases in proportion, the steps coloured by status. */
function PhaseStrip(props: { job: JobView; now: number }) {
  const phases = jobPhases(props.job, props.now);
  if (phases.length === 0) return null;
  const start = phases[0]!.from;
  const span = Math.max(1, Math.max(...phases.map((p) => p.to)) - start);
  const first = firstOutputMs(props.job);
  const title = [
    ...phases.map((p) => `${p.label}: ${formatMs(p.to - p.from)}`),
    ...(first !== undefined ? [`first output after ${formatMs(first - start)}`] : []),
  ].join("\n");
  return (
    <svg class="strip" viewBox="0 0 200 10" preserveAspectRatio="none" role="img" aria-label={title}>
      <title>{title}</title>
      {phases.map((phase, i) => (
        <rect
          key={i}
          class={`bar ${phase.kind}${phase.status ? ` status-${phase.status}` : ""}`}
          x={((phase.from - start) / span) * 200}
          width={Math.max(1, ((phase.to - phase.from) / span) * 200)}
          y={0}
          height={10}
        />
      ))}
      {first !== undefined ? (
        <rect class="first-output" x={((first - start) / span) * 200} width={1.5} y={0} height={10} />
      ) : null}
    </svg>
  );
}

export function AgentsPage() {
  const { data, error } = usePoll((signal) => api.agents(signal), POLL_MS, []);
  const agents: AgentInfo[] = data?.agents ?? [];
  return (
    <section>
      <h1>Agents</h1>
      {error ? <p class="error">{error}</p> : null}
      {data !== undefined && agents.length === 0 ? (
        <p class="empty">
          No agent is connected. Agents are launched for jobs as they are queued, or connect on their own.
        </p>
      ) : null}
      {agents.length > 0 ? (
        <table class="agents">
          <thead>
            <tr>
              <th>Name</th>
              <th>Labels</th>
              <th>Runtime</th>
              <th>Version</th>
              <th>State</th>
              <th>Job</th>
            </tr>
          </thead>
          <tbody>
            {agents.map((agent) => (
              <tr key={agent.name} data-agent={agent.name}>
                <td>{agent.name}</td>
                <td>
                  {agent.labels.map((label) => (
                    <span key={label} class="label">
                      {label}
                    </span>
                  ))}
                </td>
                <td>{agent.runtime ?? ""}</td>
                <td>{agent.version ?? ""}</td>
                <td>
                  <StatusBadge status={agent.state} />
                </td>
                <td>
                  {agent.jobId ? (
                    <Link href={`/jobs/${encodeURIComponent(agent.jobId)}`}>{agent.jobId}</Link>
                  ) : (
                    ""
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}

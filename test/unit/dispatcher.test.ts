import { describe, expect, it } from "vitest";
import type { AgentConnection } from "../../controller/agent-connection.ts";
import { Dispatcher } from "../../controller/dispatcher.ts";
import type { JobRun } from "../../controller/job-run.ts";

const agent = (name: string, labels: string[], state = "idle") =>
  ({ name, labels, state }) as unknown as AgentConnection;
const run = (id: string, labels: string[], launch?: string) =>
  ({
    id,
    labels,
    recorder: { record: { status: "queued" } },
    ...(launch ? { launch: { agentName: launch, connected: false } } : {}),
  }) as unknown as JobRun;

function dispatcherWith(agents: AgentConnection[], leases: [string, string][] = []) {
  const assigned: [string, string][] = [];
  const launched: string[] = [];
  const dispatcher = new Dispatcher({
    assign: (r, a) => assigned.push([r.id, a.name]),
    launch: (r) => launched.push(r.id),
  });
  for (const a of agents) dispatcher.agents.set(a.name, a);
  for (const [name, job] of leases) dispatcher.leases.set(name, job);
  return { dispatcher, assigned, launched };
}

describe("Dispatcher: matching jobs and agents", () => {
  it("gives a leased agent only the job it was launched for, even when another job is first", () => {
    const { dispatcher, assigned, launched } = dispatcherWith(
      [agent("launched-for-b", ["linux"])],
      [["launched-for-b", "b"]],
    );
    dispatcher.enqueue(run("a", ["linux"]));
    dispatcher.enqueue(run("b", ["linux"], "launched-for-b"));
    dispatcher.dispatch();
    expect(assigned).toEqual([["b", "launched-for-b"]]);
    expect(launched).toEqual(["a"]);
    expect(dispatcher.queued.map((r) => r.id)).toEqual(["a"]);
  });

  it("gives an unleased idle agent the first job whose labels it all carries", () => {
    const { dispatcher, assigned } = dispatcherWith([
      agent("gpu", ["gpu", "linux"]),
      agent("busy", [], "busy"),
    ]);
    dispatcher.enqueue(run("needs-arm", ["arm"]));
    dispatcher.enqueue(run("needs-gpu", ["gpu"]));
    dispatcher.dispatch();
    expect(assigned).toEqual([["needs-gpu", "gpu"]]);
  });

  it("puts a retried job at the front of the queue", () => {
    const { dispatcher } = dispatcherWith([]);
    dispatcher.enqueue(run("new", []));
    dispatcher.enqueue(run("retried", []), true);
    expect(dispatcher.queued.map((r) => r.id)).toEqual(["retried", "new"]);
  });
});

import type { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import * as ws from "ws";
import {
  type ChannelEffect,
  type ChannelState,
  ChannelStateMachine,
  CloseCode,
  type ControllerInput,
  type ControllerMessage,
  decodeControllerMessage,
  encodeMessage,
  type Job,
} from "../../agent-core/index.ts";

/** ws's own frame parser and builder (the ones its sockets use; @types/ws does not declare them). */
const { Receiver, Sender } = ws as unknown as {
  Receiver: new (options: { isServer: boolean; allowSynchronousEvents: boolean }) => Writable;
  Sender: {
    frame(
      data: Buffer,
      options: { fin: boolean; rsv1: boolean; opcode: number; mask: boolean; readOnly: boolean },
    ): Buffer[];
  };
};

const job = (id = "j1"): Job => ({
  id,
  env: {},
  mask: [],
  steps: [{ id: "s1", run: "true", env: {}, continueOnError: false }],
});
const jobMsg = (id = "j1"): ControllerMessage => ({ v: 1, type: "job", job: job(id) });
const cancel = (jobId = "j1"): ControllerMessage => ({ v: 1, type: "cancel", jobId, reason: "test" });
const ack = (seq: number): ControllerMessage => ({ v: 1, type: "ack", seq });
const resume = (seq: number, jobId = "j1", ended?: boolean): ControllerMessage => ({
  v: 1,
  type: "resume",
  jobId,
  seq,
  ...(ended !== undefined ? { ended } : {}),
});

const seeded = (): Job => ({ ...job(), workspace: { bytes: 4096, sha256: "a".repeat(64) } });
const seed = (offset = 0): ControllerInput => ({ type: "workspace-data", offset, data: Buffer.alloc(512) });

/** A machine brought to `state` the way the channel brings it there (job-end queued at seq 5). */
function machineIn(state: ChannelState): ChannelStateMachine {
  const machine = new ChannelStateMachine();
  if (state === "awaiting-job") return machine;
  machine.receive({ v: 1, type: "job", job: seeded() });
  if (state === "running") return machine;
  if (state === "resuming") {
    machine.connectionLost(true);
    return machine;
  }
  if (state === "awaiting-ack") {
    machine.jobEndQueued(5, 2);
    return machine;
  }
  machine.close();
  return machine;
}

const types = (effects: ChannelEffect[]) => effects.map((e) => e.type);
const refusedWith = (effects: ChannelEffect[]) =>
  effects.flatMap((e) => (e.type === "refuse" ? [e.error.closeCode] : []));

/**
 * Frames as they come off one TCP read: the controller's frames, concatenated, through ws's own
 * frame parser (the one the agent's socket uses), each decoded and fed to the machine at once.
 */
function deliverInOneRead(machine: ChannelStateMachine, messages: ControllerMessage[]): ChannelEffect[][] {
  const bytes = Buffer.concat(
    messages.flatMap((m) =>
      Sender.frame(Buffer.from(encodeMessage(m)), {
        fin: true,
        rsv1: false,
        opcode: 1,
        mask: false,
        readOnly: false,
      }),
    ),
  );
  const receiver = new Receiver({ isServer: false, allowSynchronousEvents: true });
  const effects: ChannelEffect[][] = [];
  receiver.on("message", (data: Buffer) => {
    effects.push(machine.receive(decodeControllerMessage(data.toString("utf8"))));
  });
  receiver.write(bytes);
  return effects;
}

describe("the job channel's state machine: every message type in every state", () => {
  const cases: [ChannelState, string, ControllerInput, string[], ChannelState][] = [
    // awaiting-job
    ["awaiting-job", "job", jobMsg(), ["take-job"], "running"],
    ["awaiting-job", "ack 0", ack(0), ["none"], "awaiting-job"],
    ["awaiting-job", "cancel", cancel(), ["refuse"], "awaiting-job"],
    ["awaiting-job", "resume", resume(0), ["refuse"], "awaiting-job"],
    ["awaiting-job", "a workspace frame", seed(), ["refuse"], "awaiting-job"],
    // running
    ["running", "job (a second one)", jobMsg("j2"), ["refuse"], "running"],
    ["running", "ack", ack(1), ["flow"], "running"],
    ["running", "cancel of its job", cancel(), ["cancel-job"], "running"],
    ["running", "cancel of another job", cancel("other"), ["refuse"], "running"],
    ["running", "resume (not asked for)", resume(1), ["refuse"], "running"],
    ["running", "a workspace frame of its seed", seed(512), ["workspace-data"], "running"],
    // resuming
    ["resuming", "job", jobMsg("j2"), ["refuse"], "resuming"],
    ["resuming", "ack", ack(1), ["refuse"], "resuming"],
    ["resuming", "cancel", cancel(), ["refuse"], "resuming"],
    ["resuming", "resume of its job", resume(3), ["resume-from"], "running"],
    ["resuming", "resume of another job", resume(3, "other"), ["refuse"], "resuming"],
    ["resuming", "resume saying ended, before any job-end", resume(3, "j1", true), ["refuse"], "resuming"],
    ["resuming", "a workspace frame before resume", seed(), ["refuse"], "resuming"],
    // awaiting-ack (job-end is seq 5)
    ["awaiting-ack", "job", jobMsg("j2"), ["refuse"], "awaiting-ack"],
    ["awaiting-ack", "ack short of job-end", ack(4), ["flow"], "awaiting-ack"],
    ["awaiting-ack", "ack covering job-end", ack(5), ["flow", "job-end-acked"], "closed"],
    ["awaiting-ack", "cancel of its job (too late)", cancel(), ["none"], "awaiting-ack"],
    ["awaiting-ack", "cancel of another job", cancel("other"), ["refuse"], "awaiting-ack"],
    ["awaiting-ack", "resume (not asked for)", resume(5), ["refuse"], "awaiting-ack"],
    ["awaiting-ack", "a workspace frame after job-end", seed(), ["refuse"], "awaiting-ack"],
    // closed
    ["closed", "job", jobMsg("j2"), ["none"], "closed"],
    ["closed", "ack", ack(5), ["none"], "closed"],
    ["closed", "cancel", cancel(), ["none"], "closed"],
    ["closed", "resume", resume(5), ["none"], "closed"],
    ["closed", "a workspace frame", seed(), ["none"], "closed"],
  ];

  it.each(cases)("%s + %s", (state, _what, message, expected, next) => {
    const machine = machineIn(state);
    expect(machine.state).toBe(state);
    const effects = machine.receive(message);
    expect(types(effects)).toEqual(expected);
    for (const code of refusedWith(effects)) expect(code).toBe(CloseCode.outOfOrder);
    expect(machine.state).toBe(next);
  });

  it("covers every message type in every state", () => {
    const seen = new Set(cases.map(([state, , message]) => `${state}/${message.type}`));
    for (const state of ["awaiting-job", "running", "resuming", "awaiting-ack", "closed"]) {
      for (const type of ["job", "ack", "cancel", "resume", "workspace-data"])
        expect(seen.has(`${state}/${type}`)).toBe(true);
    }
  });

  it("a workspace frame for a job without a seed is refused with 4003", () => {
    const machine = new ChannelStateMachine();
    machine.receive(jobMsg());
    const effects = machine.receive(seed());
    expect(types(effects)).toEqual(["refuse"]);
    expect(refusedWith(effects)).toEqual([CloseCode.outOfOrder]);
  });

  it("resuming after job-end: a resume that covers it ends the wait (the ack was lost)", () => {
    const machine = machineIn("awaiting-ack");
    expect(machine.connectionLost(true)).toBe("resume");
    const effects = machine.receive(resume(5, "j1", true));
    expect(types(effects)).toEqual(["resume-from", "job-end-acked"]);
    expect(effects[0]).toMatchObject({ seq: 5, ended: true });
    expect(machine.state).toBe("closed");
  });

  it("resuming after job-end: a resume short of it goes back to waiting for the ack", () => {
    const machine = machineIn("awaiting-ack");
    machine.connectionLost(true);
    expect(types(machine.receive(resume(4)))).toEqual(["resume-from"]);
    expect(machine.state).toBe("awaiting-ack");
  });

  it("a job-end queued while resuming is waited for once resumed", () => {
    const machine = machineIn("resuming");
    expect(types(machine.jobEndQueued(7, 3))).toEqual([]);
    expect(machine.state).toBe("resuming");
    expect(types(machine.receive(resume(7)))).toEqual(["resume-from", "job-end-acked"]);
    expect(machine.state).toBe("closed");
  });

  it.each([
    ["awaiting-job", true, "nothing", "closed"],
    ["awaiting-job", false, "nothing", "closed"],
    ["running", true, "resume", "resuming"],
    ["running", false, "give-up", "closed"],
    ["awaiting-ack", true, "resume", "resuming"],
    ["awaiting-ack", false, "give-up", "closed"],
    ["resuming", true, "nothing", "resuming"],
    ["closed", true, "nothing", "closed"],
  ] as const)("a lost connection in %s (resumable: %s) -> %s", (state, resumable, action, next) => {
    const machine = machineIn(state);
    expect(machine.connectionLost(resumable)).toBe(action);
    expect(machine.state).toBe(next);
  });
});

describe("frames delivered in one read meet the state the previous frame left", () => {
  it("job + job: the first is taken, the second is refused with 4003", () => {
    const machine = new ChannelStateMachine();
    const effects = deliverInOneRead(machine, [jobMsg("j1"), jobMsg("j2")]);
    expect(effects.map(types)).toEqual([["take-job"], ["refuse"]]);
    expect(refusedWith(effects[1]!)).toEqual([CloseCode.outOfOrder]);
    expect(machine.job?.id).toBe("j1");
  });

  it("job + cancel: the job is taken and then cancelled (it never runs a step)", () => {
    const machine = new ChannelStateMachine();
    const effects = deliverInOneRead(machine, [jobMsg(), cancel()]);
    expect(effects.map(types)).toEqual([["take-job"], ["cancel-job"]]);
  });

  it("resume + cancel: the session is resumed, then the job is cancelled (no protocol error)", () => {
    const machine = machineIn("resuming");
    const effects = deliverInOneRead(machine, [resume(2), cancel()]);
    expect(effects.map(types)).toEqual([["resume-from"], ["cancel-job"]]);
    expect(machine.state).toBe("running");
  });

  it("resume + ack + cancel after job-end: resumed, acknowledged, the late cancel has no effect", () => {
    const machine = machineIn("awaiting-ack");
    machine.connectionLost(true);
    const effects = deliverInOneRead(machine, [resume(4), ack(5), cancel()]);
    expect(effects.map(types)).toEqual([["resume-from"], ["flow", "job-end-acked"], ["none"]]);
    expect(machine.state).toBe("closed");
  });

  it("cancel + resume while resuming: the cancel is refused first (resume must come first)", () => {
    const machine = machineIn("resuming");
    const effects = deliverInOneRead(machine, [cancel(), resume(2)]);
    expect(effects[0]!.map((e) => e.type)).toEqual(["refuse"]);
  });

  it("ack + job before any job: the ack does nothing, the job is taken", () => {
    const machine = new ChannelStateMachine();
    const effects = deliverInOneRead(machine, [ack(0), jobMsg()]);
    expect(effects.map(types)).toEqual([["none"], ["take-job"]]);
    expect(machine.state).toBe("running");
  });
});

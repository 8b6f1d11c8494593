import { existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AgentIoError, FlowControl, Outbox, type OutboxOptions } from "../../agent-core/index.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "outbox-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function outbox(overrides: Partial<OutboxOptions> = {}): Outbox {
  return new Outbox({
    maxMemoryBytes: 1_000,
    maxSpoolBytes: 10_000,
    spoolDir: dir,
    spoolName: "spool-test",
    spoolSegmentBytes: 2_000,
    ...overrides,
  });
}

/** Pushes `count` messages of `size` bytes, each filled with its seq, and returns them. */
function pushMany(box: Outbox, count: number, size: number): Buffer[] {
  const sent: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const seq = box.nextSeq();
    const payload = Buffer.alloc(size, seq % 256);
    box.push(seq, payload, true);
    sent.push(payload);
  }
  return sent;
}

/** Every message after `from`, as `after` gives them back. */
function readAll(box: Outbox, from: number): Buffer[] {
  const out: Buffer[] = [];
  for (let next = box.after(from); next !== undefined; next = box.after(next.seq)) out.push(next.payload);
  return out;
}

const spoolFiles = () => readdirSync(dir).filter((name) => name.startsWith("spool-test."));

describe("the outbox's spool", () => {
  it("keeps what does not fit in memory in spool files and gives it back in order, byte for byte", () => {
    const box = outbox();
    const sent = pushMany(box, 30, 300);
    expect(box.memoryBytes).toBeLessThanOrEqual(1_000);
    expect(box.spoolBytes).toBe(30 * 300 - box.memoryBytes);
    expect(readAll(box, 0)).toEqual(sent);
    expect(spoolFiles().length).toBeGreaterThan(1);
    box.close();
    expect(spoolFiles()).toEqual([]);
  });

  it("removes a spool file once all of its messages are acknowledged, so acknowledged bytes leave the disk", () => {
    const box = outbox();
    pushMany(box, 30, 300);
    const before = box.spoolDiskBytes;
    const filesBefore = spoolFiles().length;
    expect(before).toBeGreaterThanOrEqual(box.spoolBytes);
    // Acknowledge two thirds: the oldest files go, the disk use follows the unacknowledged bytes.
    box.ack(20);
    expect(spoolFiles().length).toBeLessThan(filesBefore);
    expect(box.spoolDiskBytes).toBeLessThan(before);
    // At most the unacknowledged bytes plus one file (rounded to the filesystem's blocks).
    expect(box.spoolDiskBytes).toBeLessThanOrEqual(box.spoolBytes + 2_000 + 4 * 4096);
    box.ack(30);
    expect(box.spoolBytes).toBe(0);
    expect(box.spoolDiskBytes).toBe(0);
    box.close();
  });

  it("does not grow without bound while acks keep the backlog from ever emptying", () => {
    const box = outbox();
    let acked = 0;
    let peakDisk = 0;
    for (let round = 0; round < 200; round++) {
      pushMany(box, 4, 300);
      // The controller acknowledges a little less than what arrives, then catches up now and then.
      acked = round % 10 === 9 ? box.seq - 1 : Math.max(acked, box.seq - 20);
      box.ack(acked);
      peakDisk = Math.max(peakDisk, box.spoolDiskBytes);
    }
    expect(box.spoolBytes).toBeGreaterThan(0);
    expect(peakDisk).toBeLessThanOrEqual(10_000 + 2_000 + 8 * 4096);
    box.close();
  });

  it("on ENOSPC: a typed error once, nothing lost (kept in memory), the room shrinks to the memory window", () => {
    // The first spool file is /dev/full: every write fails with ENOSPC, as on a full filesystem.
    symlinkSync("/dev/full", join(dir, "spool-test.1.bin"));
    const errors: AgentIoError[] = [];
    const box = outbox({ onSpoolError: (error) => errors.push(error) });
    const flow = new FlowControl(box);
    const sent = pushMany(box, 10, 300);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(AgentIoError);
    expect(errors[0]).toMatchObject({ code: "AGENT_ERR_IO", errno: "ENOSPC", diskFull: true });
    expect(errors[0]!.message).toMatch(/spool-test\.1\.bin.*no space left/i);
    expect(box.spoolError).toBe(errors[0]);
    expect(box.spoolBytes).toBe(0);
    expect(box.memoryBytes).toBe(3_000);
    expect(readAll(box, 0)).toEqual(sent);
    expect(box.hasRoom).toBe(false);
    expect(flow.hasRoom()).toBe(false);
    box.ack(9);
    expect(box.hasRoom).toBe(true);
    box.close();
    expect(existsSync(join(dir, "spool-test.1.bin"))).toBe(false);
  });

  it("a spilled message that cannot be read back is a typed error, not a crash", () => {
    const box = outbox();
    pushMany(box, 10, 300);
    // The spool files lose their content under the outbox's feet.
    for (const name of spoolFiles()) truncateSync(join(dir, name), 0);
    const firstSpilled = box.memoryBytes / 300;
    expect(() => box.after(firstSpilled)).toThrow(AgentIoError);
    expect(box.spoolError).toMatchObject({ code: "AGENT_ERR_IO" });
    box.close();
  });

  it("a spool that cannot be created (its directory is gone) is a typed error; output stays in memory", () => {
    const errors: AgentIoError[] = [];
    const box = outbox({ spoolDir: join(dir, "missing"), onSpoolError: (error) => errors.push(error) });
    const sent = pushMany(box, 10, 300);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: "AGENT_ERR_IO", errno: "ENOENT", diskFull: false });
    expect(readAll(box, 0)).toEqual(sent);
    box.close();
  });
});

describe("flow control over the outbox", () => {
  it("pauses at memory + spool and resumes at half, through acks", async () => {
    const box = outbox({ maxMemoryBytes: 1_000, maxSpoolBytes: 1_000 });
    const flow = new FlowControl(box);
    pushMany(box, 7, 300);
    expect(flow.hasRoom()).toBe(false);
    let resumed = false;
    const waiting = flow.waitForRoom().then(() => {
      resumed = true;
    });
    box.ack(2);
    flow.update();
    await Promise.resolve();
    expect(resumed).toBe(false); // 1500 of 2000 used: more than half
    box.ack(4);
    flow.update();
    await waiting;
    expect(resumed).toBe(true);
    box.close();
  });

  it("never blocks once released (the job goes on without its controller)", async () => {
    const box = outbox({ maxMemoryBytes: 1_000, maxSpoolBytes: 0 });
    const flow = new FlowControl(box);
    pushMany(box, 5, 300);
    const waiting = flow.waitForRoom();
    flow.release();
    await waiting;
    expect(flow.hasRoom()).toBe(true);
    box.close();
  });
});

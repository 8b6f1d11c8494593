import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { arch, availableParallelism, cpus, loadavg, release, totalmem, type } from "node:os";

export interface MachineInfo {
  cpuModel: string;
  /** CPUs this process may use (`os.availableParallelism()`). */
  cores: number;
  memoryBytes: number;
  node: string;
  os: string;
  /** PRETTY_NAME from /etc/os-release, when there is one. */
  distribution: string | null;
  /** 1-minute load average when the run started: a busy machine skews every figure. */
  loadAverage1m: number;
  /** 1-minute load average when the run ended (the run's own load included). */
  loadAverage1mEnd: number | null;
}

export function machineInfo(): MachineInfo {
  return {
    cpuModel: cpus()[0]?.model.trim() ?? "unknown",
    cores: availableParallelism(),
    memoryBytes: totalmem(),
    node: process.version,
    os: `${type()} ${release()} ${arch()}`,
    distribution: distribution(),
    loadAverage1m: loadAverage1m(),
    loadAverage1mEnd: null,
  };
}

export function loadAverage1m(): number {
  return Math.round((loadavg()[0] ?? 0) * 100) / 100;
}

/** A warning when the machine was already busy as the run started, else null. */
export function busyWarning(m: MachineInfo): string | null {
  if (m.loadAverage1m <= m.cores / 4) return null;
  return `the machine was busy when the run started (1-minute load ${m.loadAverage1m} on ${m.cores} cores): expect slower, noisier figures`;
}

function distribution(): string | null {
  try {
    const text = readFileSync("/etc/os-release", "utf8");
    const match = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(text);
    return match?.[1] ?? null;
  } catch {
    return null;
  }
}

/** One line describing the machine, for the table's header and the docs. */
export function describeMachine(m: MachineInfo): string {
  const gib = (m.memoryBytes / 1024 ** 3).toFixed(1);
  return `${m.cpuModel}, ${m.cores} cores, ${gib} GiB, ${m.distribution ?? m.os} (${m.os}), Node ${m.node}`;
}

/** What was measured: the commit, and whether the work tree differed from it. */
export interface Revision {
  commit: string | null;
  /** True when tracked files differ from the commit (uncommitted changes were measured). */
  dirty: boolean | null;
}

/**
 * The git revision of `root`; outside a git work tree (an exported copy), the commit named by
 * BENCH_REVISION, if any.
 */
export function revision(root: string): Revision {
  const git = (...args: string[]) =>
    execFileSync("git", args, { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  try {
    const commit = git("rev-parse", "HEAD");
    return { commit, dirty: git("status", "--porcelain", "--untracked-files=no") !== "" };
  } catch {
    const named = process.env.BENCH_REVISION?.trim();
    return { commit: named ? named : null, dirty: null };
  }
}

import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { AgentJar } from "./agent-jar.ts";
import type { JavaRuntime } from "./java.ts";
import type { JenkinsSettings } from "./settings.ts";

/**
 * JVM flags for a short-lived JVM that serves one build, chosen by measurement (docs/performance.md,
 * Jenkins start): C1 only (compiles sooner; remoting itself is I/O-bound while the build runs in
 * child processes) and no hsperfdata file in /tmp. The collector stays the JVM's default (G1):
 * on JDK 17 only G1 maps the heap objects of the class-data archives, and with the archive G1
 * started sooner than the serial collector. The user's JENKINS_JAVA_OPTS come after these, so
 * they win.
 */
export const FAST_START_FLAGS = ["-XX:TieredStopAtLevel=1", "-XX:-UsePerfData"] as const;

/** Heap sizing: a quarter of the platform's memory (the JVM's own default share), within these bounds. */
export const HEAP_SHARE = 0.25;
export const MIN_HEAP_MB = 32;
export const MAX_HEAP_MB = 4096;

/** The class-data sharing archive for this jar on this Java runtime, and what to do with it. */
export interface CdsPlan {
  /** `use`: the archive exists; `create`: this run writes it at exit (kept for the next run). */
  action: "use" | "create";
  archive: string;
  /** JDK 17/18 write a dynamic archive here at exit; it is renamed to `archive` after a clean exit. */
  pendingArchive: string | null;
  flags: string[];
}

/**
 * Decides class-data sharing for a jar: a baked jar uses the archive built into the image next to
 * it (`agent.jsa` beside `agent.jar`) when there is one; otherwise the archive lives in the cache
 * dir, keyed by the jar's content and the Java runtime, and is created by the first run (JDK 19+
 * with `-XX:+AutoCreateSharedArchive`, older with `-XX:ArchiveClassesAtExit` to a temporary name).
 */
export function planClassDataSharing(
  jar: AgentJar,
  java: JavaRuntime,
  cacheDir: string,
  runId: string,
): CdsPlan {
  if (jar.source === "image") {
    const baked = join(dirname(jar.path), `${basename(jar.path, ".jar")}.jsa`);
    if (existsSync(baked))
      return {
        action: "use",
        archive: baked,
        pendingArchive: null,
        flags: [`-XX:SharedArchiveFile=${baked}`],
      };
  }
  const dir = jar.source === "image" ? cacheDir : dirname(jar.path);
  const archive = join(dir, `agent-${jar.sha256.slice(0, 16)}.${java.key}.jsa`);
  if (java.major !== null && java.major >= 19) {
    return {
      action: existsSync(archive) ? "use" : "create",
      archive,
      pendingArchive: null,
      flags: ["-XX:+AutoCreateSharedArchive", `-XX:SharedArchiveFile=${archive}`],
    };
  }
  if (existsSync(archive))
    return { action: "use", archive, pendingArchive: null, flags: [`-XX:SharedArchiveFile=${archive}`] };
  const pendingArchive = `${archive}.${runId}.tmp`;
  return {
    action: "create",
    archive,
    pendingArchive,
    // Dumping logs a warning per class it skips (lambda forms, proxies): noise, not news.
    flags: [`-XX:ArchiveClassesAtExit=${pendingArchive}`, "-Xlog:cds=off", "-Xlog:cds+dynamic=off"],
  };
}

export interface RemotingCommandInput {
  java: JavaRuntime;
  jar: AgentJar;
  settings: JenkinsSettings;
  url: string;
  name: string;
  /** The file holding the secret (remoting reads it through args4j's `@file`). */
  secretFile: string;
  /** remoting's `-workDir` (its jar cache and logs go to `<workDir>/remoting`). */
  workDir: string;
  /** The platform's memory in MB; null leaves the heap to the JVM. */
  memoryMb: number | null;
  cds: CdsPlan | null;
  /** HOME and TMPDIR the build gets: the JVM's user.home and java.io.tmpdir follow them. */
  home?: string;
  tmpDir?: string;
}

/** Remoting options whose value is a credential: they go into the 0600 arguments file, never argv. */
export const CREDENTIAL_OPTIONS = ["-proxyCredentials", "-credentials"] as const;

/**
 * The java command line for remoting and the heap it was given. Neither the secret nor a
 * credential is ever in it: remoting reads them from the arguments file (`-secret @FILE`, whose
 * lines are the secret and then `secretFileLines`).
 */
export function remotingCommand(input: RemotingCommandInput): {
  argv: string[];
  heapMb: number | null;
  secretFileLines: string[];
} {
  const { settings } = input;
  const user = settings.javaOpts;
  const jvm: string[] = [];
  jvm.push(...FAST_START_FLAGS);
  const setsHeap = user.some((opt) =>
    /^-Xmx|^-XX:(MaxRAM|MaxRAMPercentage|MaxRAMFraction|MaxHeapSize)=/.test(opt),
  );
  const heapMb = input.memoryMb === null || setsHeap ? null : heapFor(input.memoryMb);
  if (heapMb !== null) jvm.push(`-Xmx${heapMb}m`);
  if (input.cds) jvm.push(...input.cds.flags);
  jvm.push("-Djava.awt.headless=true");
  if (input.home) jvm.push(`-Duser.home=${input.home}`);
  if (input.tmpDir) jvm.push(`-Djava.io.tmpdir=${input.tmpDir}`);
  jvm.push(...user);

  const remoting: string[] = [];
  if (settings.direct !== null) {
    // -direct forbids -url: the connection parameters come from the arguments, not from HTTP.
    remoting.push("-direct", settings.direct);
    if (settings.instanceIdentity !== null) remoting.push("-instanceIdentity", settings.instanceIdentity);
    for (const protocol of settings.protocols) remoting.push("-protocols", protocol);
  } else {
    remoting.push("-url", input.url);
  }
  remoting.push("-name", input.name, "-secret", `@${input.secretFile}`, "-workDir", input.workDir);
  if (settings.webSocket) remoting.push("-webSocket");
  if (settings.tunnel !== null) remoting.push("-tunnel", settings.tunnel);
  // Never loop: exit when the channel ends. (WebSocket retries of a refused handshake go on even
  // so; the supervisor ends those itself.)
  remoting.push("-noreconnect");
  const secretFileLines: string[] = [];
  const opts = settings.remotingOpts;
  for (let i = 0; i < opts.length; i++) {
    const opt = opts[i]!;
    if ((CREDENTIAL_OPTIONS as readonly string[]).includes(opt) && i + 1 < opts.length) {
      secretFileLines.push(opt, opts[++i]!);
    } else remoting.push(opt);
  }
  return { argv: [input.java.bin, ...jvm, "-jar", input.jar.path, ...remoting], heapMb, secretFileLines };
}

/** The heap for `memoryMb` of platform memory: a quarter of it, at least 32 MB, at most 4 GB. */
export function heapFor(memoryMb: number): number {
  return Math.max(MIN_HEAP_MB, Math.min(MAX_HEAP_MB, Math.floor(memoryMb * HEAP_SHARE)));
}

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { chownSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

/**
 * Runs the built images without a Docker engine, for the image tests (`npm run image:test`).
 *
 * `buildah from` + `buildah mount` give the image's file system; `unshare` runs its ENTRYPOINT
 * (read from the image's config, with its Env, User and WorkingDir) in new mount and PID
 * namespaces: the entrypoint's first process (tini) is PID 1, as in an ECS task, with /dev, a
 * fresh /proc and the host's resolver mounted, on the host's network (the controller and the
 * loopback Runtime API listen on 127.0.0.1). `lambda` mode adds what Lambda imposes: a read-only
 * root file system with a writable /tmp, and a user of its own (not the image's USER).
 *
 * A new scenario is a new `*.test.ts` file beside the others: `startContainer(IMAGES.default, ...)`
 * (or `IMAGES.jenkins`), then await `exited`.
 */
const exec = promisify(execFile);

/** The images `test/image/run.ts` built for this run (from its environment). */
export const IMAGES = {
  default: process.env.IMAGE_TEST_DEFAULT ?? "localhost/ephemeral-agent:image-test",
  jenkins: process.env.IMAGE_TEST_JENKINS ?? "localhost/ephemeral-agent:image-test-jenkins",
};

/** The parts of an image's OCI config that decide how it runs. */
export interface ImageConfig {
  Entrypoint?: string[];
  Cmd?: string[];
  Env?: string[];
  User?: string;
  WorkingDir?: string;
  Labels?: Record<string, string>;
}

export async function imageConfig(tag: string): Promise<ImageConfig> {
  const { stdout } = await exec("buildah", ["inspect", "--type", "image", tag], {
    maxBuffer: 64 * 1024 * 1024,
  });
  const config = (JSON.parse(stdout) as { OCIv1: { config?: ImageConfig } }).OCIv1.config;
  if (config === undefined) throw new Error(`${tag} has no OCI config`);
  return config;
}

export interface StartOptions {
  /** Arguments appended to the ENTRYPOINT (the ECS command override). */
  args?: string[];
  /** Run this instead of the ENTRYPOINT (`docker run --entrypoint`). */
  command?: string[];
  /** Added to the image's Env. */
  env?: Record<string, string>;
  /** Lambda's conditions: read-only root, writable /tmp, uid 993. */
  lambda?: boolean;
  /** Run as this `uid:gid` instead of the image's USER (`docker run --user`). */
  user?: string;
  /**
   * Files written into the container before it starts (path in the image: content, mode), owned
   * by uid 1000 with the directories made for them.
   */
  files?: Record<string, { content: string | Uint8Array; mode: number }>;
}

export interface Container {
  /** The image's file system on the host (mounted). */
  root: string;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
  /** Output so far. */
  stderr(): string;
  /**
   * Sends `signal` to the container's PID 1 (tini), as `docker kill -s` or an ECS stop does.
   * SIGKILL ends the whole PID namespace.
   */
  signal(signal: NodeJS.Signals): boolean;
  /** Kills what still runs and removes the container. */
  remove(): Promise<void>;
}

/**
 * The shell that sets up the namespaces' mounts, then execs the image's process through
 * `chroot --userspec` (so that the process is PID 1 of the new PID namespace).
 */
const SETUP = `set -e
root=$1; user=$2; lambda=$3; shift 3
if [ "$lambda" = 1 ]; then mount --rbind "$root" "$root"; mount -o remount,bind,ro "$root"; fi
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
if [ -f /etc/resolv.conf ]; then mount --bind /etc/resolv.conf "$root/etc/resolv.conf"; fi
if [ "$lambda" = 1 ]; then mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"; fi
exec chroot --userspec="$user" "$root" "$@"`;

export async function startContainer(tag: string, options: StartOptions = {}): Promise<Container> {
  const config = await imageConfig(tag);
  const id = (await exec("buildah", ["from", "--pull-never", tag])).stdout.trim();
  const root = (await exec("buildah", ["mount", id])).stdout.trim();
  for (const [path, file] of Object.entries(options.files ?? {})) {
    const target = join(root, path);
    // The directories it creates belong to the image's user too (as a volume mounted for it would).
    const created = mkdirSync(dirname(target), { recursive: true });
    for (let dir = dirname(target); created !== undefined && dir.startsWith(created); dir = dirname(dir)) {
      chownSync(dir, 1000, 1000);
    }
    writeFileSync(target, file.content, { mode: file.mode });
    chownSync(target, 1000, 1000);
  }
  const env = [...(config.Env ?? [])];
  for (const [key, value] of Object.entries(options.env ?? {})) {
    const at = env.findIndex((entry) => entry.startsWith(`${key}=`));
    if (at >= 0) env.splice(at, 1);
    env.push(`${key}=${value}`);
  }
  const argv = options.command ?? [...(config.Entrypoint ?? []), ...(options.args ?? config.Cmd ?? [])];
  const user = options.user ?? (options.lambda ? "993:990" : numericUser(config.User));
  const workDir = options.lambda ? "/tmp" : config.WorkingDir || "/";
  const child = spawn(
    "unshare",
    [
      "--mount",
      "--pid",
      "--fork",
      "--kill-child",
      "--",
      "/bin/sh",
      "-c",
      SETUP,
      "sh",
      root,
      user,
      options.lambda ? "1" : "0",
      "/usr/bin/env",
      "-i",
      "-C",
      workDir,
      ...env,
      ...argv,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = once(child, "close").then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
    stdout,
    stderr,
  }));
  const running = () => child.exitCode === null && child.signalCode === null;
  const signal = (sig: NodeJS.Signals) => {
    // unshare's own child is the namespace's PID 1 (chroot and env exec into it). Killing unshare
    // would not reach it: the parent-death signal is dropped when chroot changes the user.
    const init = childPidOf(child.pid);
    if (init === undefined) return false;
    process.kill(init, sig);
    return true;
  };
  return {
    root,
    child,
    exited,
    stderr: () => stderr,
    signal,
    async remove() {
      if (running()) {
        if (!signal("SIGKILL")) child.kill("SIGKILL");
        await exited;
      }
      await exec("buildah", ["umount", id]).catch(() => {});
      await exec("buildah", ["rm", id]);
    },
  };
}

/** The pid of a process's (only) child, from /proc. */
function childPidOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Fields after the command (which may hold spaces) start after the last ')'.
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) return Number(entry);
    } catch (error) {
      // A process that ended during the scan has no stat any more.
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
  return undefined;
}

/** `USER` as `uid:gid`; a name would need the image's /etc/passwd, which chroot reads itself. */
function numericUser(user: string | undefined): string {
  if (user === undefined || user === "") return "0:0";
  return user.includes(":") ? user : `${user}:${user}`;
}

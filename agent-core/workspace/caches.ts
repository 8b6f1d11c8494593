import { createHash } from "node:crypto";
import { lstat, mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { WorkspaceError } from "../errors.ts";
import { filesystemSpace } from "../limits/disk-budget.ts";
import { processRunning, processStartTicks } from "../runner/process-identity.ts";
import { CACHE_NAME, cacheVariable } from "./cache-names.ts";

/** What a job asks of the warm caches, from its `caches` and the controller's trust value. */
export interface CacheRequest {
  /**
   * The trust value the controller gives the job (for example `github.com/acme/app@protected`):
   * caches are only ever shared between jobs with the same value.
   */
  trust: string;
  /** The caches the job uses (`npm`, `git`, or keys of its own): each is a directory. */
  names: readonly string[];
  /**
   * Free bytes the job needs on the work dir's filesystem (its declared need plus the agent's
   * headroom): least recently used caches are removed until that much is free, or none is left.
   */
  needBytes: number;
}

export type EvictionReason =
  /** Free space was below the job's need. */
  | "space"
  /** The job has another trust value than the jobs that wrote the caches. */
  | "trust"
  /** Found on disk without this process having written it: its origin cannot be vouched for. */
  | "unknown-origin";

export interface CacheEviction {
  /** The cache's name (for `trust` and `unknown-origin`, what was found on disk). */
  name: string;
  reason: EvictionReason;
  /** Free bytes the removal gave back on the filesystem. */
  freedBytes: number;
}

/** What the caches did for one job: in the job's result. */
export interface CacheReport {
  /** Short hash of the trust value: the directory the job's caches live in. */
  scope: string;
  hits: string[];
  misses: string[];
  /**
   * The evictions, at most {@link EVICTIONS_LISTED} (`space` first, then `trust`, then
   * `unknown-origin`): a job can leave any number of entries beside its caches.
   */
  evictions: CacheEviction[];
  /** Every eviction, listed or not. */
  evictionCount: number;
  /** Free bytes on the work dir's filesystem before and after the evictions. */
  freeBytesBefore: number;
  freeBytesAfter: number;
}

/** The caches made ready for a job: where they are, and the variables that tell its steps. */
export interface PreparedCaches {
  report: CacheReport;
  /** Cache name -> absolute directory. */
  dirs: Record<string, string>;
  /** Variables for every step (see {@link cacheEnv}). */
  env: Record<string, string>;
}

/** Most evictions a report lists (the protocol's bound on `job-end.caches.evictions`). */
export const EVICTIONS_LISTED = 100;

const REASON_ORDER: Record<EvictionReason, number> = { space: 0, trust: 1, "unknown-origin": 2 };

/** The evictions a report lists: the caches' own (`space`, `trust`) before what was found on disk. */
function listed(evictions: CacheEviction[]): CacheEviction[] {
  return [...evictions]
    .sort((a, b) => REASON_ORDER[a.reason] - REASON_ORDER[b.reason])
    .slice(0, EVICTIONS_LISTED);
}

/** Tools whose own variable is set to a cache of the same name, unless the job sets it. */
const TOOL_VARIABLES: Record<string, string> = {
  npm: "npm_config_cache",
  pip: "PIP_CACHE_DIR",
  yarn: "YARN_CACHE_FOLDER",
};

export interface CacheStoreOptions {
  /** The caches' root directory (`<workDir>/caches`). */
  root: string;
  /** Free space of the filesystem holding a path (default: statfs). Tests give a fake. */
  space?: (path: string) => { freeBytes: number };
  now?: () => number;
  /**
   * The name of this store's own directory under the root (default: this process's,
   * {@link processOwner}), and whether the owner a directory is named after still runs (default:
   * {@link ownerAlive}). Tests give two stores of one process distinct owners.
   */
  owner?: { name: string; alive: (name: string) => boolean };
}

/**
 * Named warm caches under the work dir that outlive a job, for the next jobs of the same process
 * (a warm Lambda runs invocation after invocation in one process). Layout:
 * `<root>/<owner>/<scope>/<name>/`, where `owner` names the agent process
 * (`proc-<pid>-<start time>`) and `scope` is a hash of the controller's trust value.
 *
 * Owners: agents that share a work dir (local agents on one machine) each keep their own caches
 * and never touch another live process's: what a running job uses is not removed under it. The
 * directory of an owner that no longer runs is removed (reason `unknown-origin`), as is anything
 * under the root that names no owner.
 *
 * Trust: a job's steps run as the agent's user and can write anywhere the agent can, so a cache
 * written while a job of another trust value ran cannot be vouched for. The store therefore holds
 * the caches of one trust value at a time: a job with another value first removes every cache
 * (reason `trust`). What this process finds on disk without having written it (left by an earlier
 * process, whose jobs are unknown) is removed before the first job (reason `unknown-origin`).
 * Which trust the caches belong to and when each was last used are kept in this object, not on
 * disk, where a job could forge them.
 *
 * Space: before a job, while the filesystem's free space is below the job's need, the least
 * recently used caches are removed (reason `space`): the job's own caches last.
 *
 * One store per work dir and process; one job at a time.
 */
export class CacheStore {
  readonly #root: string;
  readonly #space: (path: string) => { freeBytes: number };
  readonly #now: () => number;
  /** The scope whose caches are on disk, as far as this process knows (undefined before the first job). */
  #scope: string | undefined;
  /** Cache name -> when a job last used it (epoch ms). */
  readonly #lastUsed = new Map<string, number>();
  #busy: PreparedCaches | undefined;
  readonly #owner: { name: string; alive: (name: string) => boolean };

  constructor(options: CacheStoreOptions) {
    this.#root = options.root;
    this.#space = options.space ?? filesystemSpace;
    this.#now = options.now ?? Date.now;
    this.#owner = options.owner ?? { name: processOwner(), alive: ownerAlive };
  }

  /** This store's own directory: `<root>/<owner>`, which holds one scope's caches at a time. */
  get ownDir(): string {
    return join(this.#root, this.#owner.name);
  }

  get root(): string {
    return this.#root;
  }

  /**
   * Makes the job's caches ready before its first step: removes caches of another trust value or
   * of unknown origin, evicts least recently used ones until `needBytes` are free, creates the
   * missing ones. Throws WorkspaceError for an invalid name or when the root cannot be prepared.
   */
  async prepare(request: CacheRequest): Promise<PreparedCaches> {
    if (this.#busy !== undefined) throw new WorkspaceError("the cache store is already in use by a job");
    for (const name of request.names) {
      if (!CACHE_NAME.test(name)) {
        throw new WorkspaceError(
          `cache name ${JSON.stringify(name)} must be 1-64 letters, digits, '_', '.', '-' (starting with a letter or digit)`,
        );
      }
    }
    const variables = new Map<string, string>();
    for (const name of new Set(request.names)) {
      const other = variables.get(cacheVariable(name));
      if (other !== undefined) {
        throw new WorkspaceError(
          `cache names ${JSON.stringify(other)} and ${JSON.stringify(name)} would share the variable ${cacheVariable(name)}`,
        );
      }
      variables.set(cacheVariable(name), name);
    }
    const scope = scopeOf(request.trust);
    const ownDir = this.ownDir;
    const scopeDir = join(ownDir, scope);
    const evictions: CacheEviction[] = [];
    try {
      await this.#ensureRealDir(this.#root);
      const freeBytesBefore = this.#free();
      // Other owners' caches are theirs while they run; a stopped owner's, or a stray, go.
      for (const entry of await readdir(this.#root)) {
        if (entry === this.#owner.name || this.#owner.alive(entry)) continue;
        evictions.push(await this.#remove(join(this.#root, entry), entry, "unknown-origin"));
      }
      await this.#ensureRealDir(ownDir);
      // Everything of this owner that is not this scope's, as this store knows it, goes.
      const reason: EvictionReason = this.#scope === undefined ? "unknown-origin" : "trust";
      if (this.#scope !== scope) this.#lastUsed.clear();
      for (const entry of await readdir(ownDir)) {
        if (entry === scope && this.#scope === scope) continue;
        evictions.push(await this.#remove(join(ownDir, entry), entry, reason));
      }
      this.#scope = scope;
      await this.#ensureRealDir(scopeDir);
      for (const entry of await readdir(scopeDir)) {
        if (!this.#lastUsed.has(entry))
          evictions.push(await this.#remove(join(scopeDir, entry), entry, "unknown-origin"));
      }
      // Least recently used first; the job's own caches only when nothing else is left.
      const wanted = new Set(request.names);
      const order = [...this.#lastUsed]
        .sort((a, b) => Number(wanted.has(a[0])) - Number(wanted.has(b[0])) || a[1] - b[1])
        .map(([name]) => name);
      for (const name of order) {
        if (this.#free() >= request.needBytes) break;
        this.#lastUsed.delete(name);
        evictions.push(await this.#remove(join(scopeDir, name), name, "space"));
      }
      const hits: string[] = [];
      const misses: string[] = [];
      const dirs: Record<string, string> = {};
      for (const name of new Set(request.names)) {
        const dir = join(scopeDir, name);
        const present =
          this.#lastUsed.has(name) && (await lstat(dir).catch(() => undefined))?.isDirectory() === true;
        if (present) hits.push(name);
        else {
          await rm(dir, { recursive: true, force: true });
          await mkdir(dir, { mode: 0o700 });
          misses.push(name);
        }
        dirs[name] = dir;
      }
      const prepared: PreparedCaches = {
        report: {
          scope,
          hits,
          misses,
          evictions: listed(evictions),
          evictionCount: evictions.length,
          freeBytesBefore,
          freeBytesAfter: this.#free(),
        },
        dirs,
        env: cacheEnv(scopeDir, dirs),
      };
      this.#busy = prepared;
      return prepared;
    } catch (error) {
      if (error instanceof WorkspaceError) throw error;
      throw new WorkspaceError(`cannot prepare the caches under ${this.#root}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  /** After the job: its caches count as used now (for the least-recently-used order). */
  release(prepared: PreparedCaches): void {
    if (this.#busy !== prepared) return;
    this.#busy = undefined;
    const now = this.#now();
    for (const name of Object.keys(prepared.dirs)) this.#lastUsed.set(name, now);
  }

  #free(): number {
    return this.#space(this.#root).freeBytes;
  }

  async #remove(path: string, name: string, reason: EvictionReason): Promise<CacheEviction> {
    const before = this.#free();
    // rm does not follow a symbolic link: a cache a job replaced by a link loses only the link.
    await rm(path, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
    return { name, reason, freedBytes: Math.max(0, this.#free() - before) };
  }

  /** A real directory at `path`: anything else there (a link a job left, a file) is removed first. */
  async #ensureRealDir(path: string): Promise<void> {
    const stats = await lstat(path).catch(() => undefined);
    if (stats?.isDirectory()) return;
    if (stats !== undefined) await rm(path, { force: true });
    await mkdir(path, { recursive: true, mode: 0o700 });
  }
}

const OWNER_NAME = /^proc-([1-9][0-9]*)-([0-9]+)$/;

/**
 * This process's owner name, `proc-<pid>-<start time>`: the start time (in clock ticks since
 * boot, from `/proc/<pid>/stat`; 0 where there is no `/proc`) tells a process from a later one
 * that got the same pid.
 */
export function processOwner(): string {
  return `proc-${process.pid}-${processStartTicks(process.pid) ?? 0}`;
}

/**
 * Whether the process an owner directory is named after still runs: its pid exists and (where
 * `/proc` tells) started at the same time. Anything not named like an owner has none.
 */
export function ownerAlive(name: string): boolean {
  const match = OWNER_NAME.exec(name);
  return match !== null && processRunning(Number(match[1]), Number(match[2]));
}

/** The directory name of a trust value's caches: 16 hex characters of its SHA-256. */
export function scopeOf(trust: string): string {
  return createHash("sha256").update(trust, "utf8").digest("hex").slice(0, 16);
}

/**
 * The variables that tell steps where the caches are: `AGENT_CACHE_DIR` (the job's scope
 * directory), `AGENT_CACHE_<NAME>` per cache (upper case, other characters as `_`: `node-modules`
 * -> `AGENT_CACHE_NODE_MODULES`), and the tool's own variable for `npm` (`npm_config_cache`), `pip`
 * (`PIP_CACHE_DIR`) and `yarn` (`YARN_CACHE_FOLDER`). The job's and step's `env` come after, so
 * they can override any of them.
 */
export function cacheEnv(scopeDir: string, dirs: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { AGENT_CACHE_DIR: scopeDir };
  for (const [name, dir] of Object.entries(dirs)) {
    env[cacheVariable(name)] = dir;
    const tool = TOOL_VARIABLES[name];
    if (tool !== undefined) env[tool] = dir;
  }
  return env;
}

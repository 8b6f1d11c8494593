import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CacheStore, cacheEnv, cacheVariable, scopeOf } from "../../agent-core/index.ts";
import { tempDir } from "../support/harness.ts";

let dir: ReturnType<typeof tempDir>;
let root: string;
beforeEach(() => {
  dir = tempDir("caches-");
  root = join(dir.path, "caches");
});
afterEach(() => dir.remove());

const MiB = 1024 * 1024;

/** Bytes of the regular files under `path` (links not followed). */
function treeBytes(path: string): number {
  if (!existsSync(path)) return 0;
  let total = 0;
  for (const entry of readdirSync(path, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += lstatSync(join(entry.parentPath, entry.name)).size;
  }
  return total;
}

/** A store on a disk of `capacity` bytes: free space is the capacity less what the caches hold, measured for real. */
function storeOnDisk(capacity: number, clock = { now: 1_000 }) {
  return new CacheStore({
    root,
    space: () => ({ freeBytes: capacity - treeBytes(root) }),
    now: () => clock.now,
  });
}

const TRUSTED = "github.com/acme/app@protected";
const UNTRUSTED = "github.com/acme/app@untrusted";

describe("warm caches across jobs of one process", () => {
  it("the second job with the same trust finds what the first wrote (a hit), under documented variables", async () => {
    const store = new CacheStore({ root });
    const first = await store.prepare({ trust: TRUSTED, names: ["npm", "git"], needBytes: 0 });
    expect(first.report).toMatchObject({ hits: [], misses: ["npm", "git"], evictions: [] });
    writeFileSync(join(first.dirs.npm!, "index.json"), "warm");
    store.release(first);

    const second = await store.prepare({ trust: TRUSTED, names: ["npm", "git"], needBytes: 0 });
    expect(second.report).toMatchObject({
      scope: scopeOf(TRUSTED),
      hits: ["npm", "git"],
      misses: [],
      evictions: [],
    });
    expect(readFileSync(join(second.dirs.npm!, "index.json"), "utf8")).toBe("warm");
    expect(second.dirs.npm).toBe(join(root, scopeOf(TRUSTED), "npm"));
    expect(second.env).toEqual({
      AGENT_CACHE_DIR: join(root, scopeOf(TRUSTED)),
      AGENT_CACHE_NPM: second.dirs.npm,
      npm_config_cache: second.dirs.npm,
      AGENT_CACHE_GIT: second.dirs.git,
    });
    store.release(second);
  });

  it("a job with another trust value never sees them: they are removed first", async () => {
    const store = new CacheStore({ root });
    const trusted = await store.prepare({ trust: TRUSTED, names: ["npm"], needBytes: 0 });
    writeFileSync(join(trusted.dirs.npm!, "token"), "secret of the protected branch");
    store.release(trusted);

    const untrusted = await store.prepare({ trust: UNTRUSTED, names: ["npm"], needBytes: 0 });
    expect(untrusted.report.misses).toEqual(["npm"]);
    expect(untrusted.report.evictions).toEqual([
      { name: scopeOf(TRUSTED), reason: "trust", freedBytes: expect.any(Number) },
    ]);
    expect(readdirSync(untrusted.dirs.npm!)).toEqual([]);
    expect(readdirSync(root)).toEqual([scopeOf(UNTRUSTED)]);
    // What the untrusted job leaves (a poisoned cache) does not reach the next trusted job either.
    writeFileSync(join(untrusted.dirs.npm!, "poison"), "x");
    mkdirSync(join(root, scopeOf(TRUSTED), "npm"), { recursive: true });
    writeFileSync(join(root, scopeOf(TRUSTED), "npm", "poison"), "planted");
    store.release(untrusted);

    const again = await store.prepare({ trust: TRUSTED, names: ["npm"], needBytes: 0 });
    expect(again.report.misses).toEqual(["npm"]);
    expect(readdirSync(again.dirs.npm!)).toEqual([]);
    expect(again.report.evictions.map((e) => e.reason).sort()).toEqual(["trust", "trust"]);
  });

  it("caches found on disk by a new process are of unknown origin and removed", async () => {
    mkdirSync(join(root, scopeOf(TRUSTED), "npm"), { recursive: true });
    writeFileSync(join(root, scopeOf(TRUSTED), "npm", "left-by-an-earlier-process"), "x");
    const store = new CacheStore({ root });
    const prepared = await store.prepare({ trust: TRUSTED, names: ["npm"], needBytes: 0 });
    expect(prepared.report.evictions).toEqual([
      { name: scopeOf(TRUSTED), reason: "unknown-origin", freedBytes: expect.any(Number) },
    ]);
    expect(prepared.report.misses).toEqual(["npm"]);
    expect(readdirSync(prepared.dirs.npm!)).toEqual([]);
  });

  it("directories a job adds beside its named caches do not survive", async () => {
    const store = new CacheStore({ root });
    const first = await store.prepare({ trust: TRUSTED, names: ["npm"], needBytes: 0 });
    mkdirSync(join(root, scopeOf(TRUSTED), "stray"));
    store.release(first);
    const second = await store.prepare({ trust: TRUSTED, names: ["npm"], needBytes: 0 });
    expect(second.report.evictions).toEqual([
      { name: "stray", reason: "unknown-origin", freedBytes: expect.any(Number) },
    ]);
  });
});

describe("eviction under a small disk", () => {
  it("removes least recently used caches until the job's need is free, the job's own last", async () => {
    const clock = { now: 1_000 };
    const store = storeOnDisk(10 * MiB, clock);
    for (const [name, at] of [
      ["old", 1_000],
      ["mid", 2_000],
      ["new", 3_000],
    ] as const) {
      clock.now = at;
      const prepared = await store.prepare({ trust: TRUSTED, names: [name], needBytes: 0 });
      writeFileSync(join(prepared.dirs[name]!, "blob"), Buffer.alloc(3 * MiB));
      store.release(prepared);
    }
    // 9 MiB used, 1 MiB free. The job wants `old` and needs 4 MiB free: `mid` goes (LRU among the others).
    const first = await store.prepare({ trust: TRUSTED, names: ["old"], needBytes: 4 * MiB });
    expect(first.report.evictions).toEqual([{ name: "mid", reason: "space", freedBytes: 3 * MiB }]);
    expect(first.report).toMatchObject({ hits: ["old"], freeBytesBefore: 1 * MiB, freeBytesAfter: 4 * MiB });
    store.release(first);

    // Now it needs 9 MiB: `new` goes, then its own `old` (a miss, recreated empty).
    const second = await store.prepare({ trust: TRUSTED, names: ["old"], needBytes: 9 * MiB });
    expect(second.report.evictions.map((e) => [e.name, e.reason])).toEqual([
      ["new", "space"],
      ["old", "space"],
    ]);
    expect(second.report).toMatchObject({ hits: [], misses: ["old"], freeBytesAfter: 10 * MiB });
    store.release(second);
  });

  it("stops at what there is: a need larger than the disk leaves nothing cached, and says so", async () => {
    const store = storeOnDisk(4 * MiB);
    const prepared = await store.prepare({ trust: TRUSTED, names: ["npm"], needBytes: 0 });
    writeFileSync(join(prepared.dirs.npm!, "blob"), Buffer.alloc(2 * MiB));
    store.release(prepared);
    const next = await store.prepare({ trust: TRUSTED, names: ["git"], needBytes: 100 * MiB });
    expect(next.report.evictions).toEqual([{ name: "npm", reason: "space", freedBytes: 2 * MiB }]);
    expect(next.report.freeBytesAfter).toBe(4 * MiB);
  });
});

describe("what a job may have left in place of a cache", () => {
  it("a cache replaced by a link loses the link only; a root replaced by a link is recreated", async () => {
    const outside = join(dir.path, "outside");
    mkdirSync(outside);
    writeFileSync(join(outside, "keep"), "keep");
    const store = new CacheStore({ root });
    const first = await store.prepare({ trust: TRUSTED, names: ["npm"], needBytes: 0 });
    store.release(first);
    const npm = join(root, scopeOf(TRUSTED), "npm");
    rmSync(npm, { recursive: true });
    symlinkSync(outside, npm);
    const second = await store.prepare({ trust: TRUSTED, names: ["npm"], needBytes: 0 });
    expect(second.report.misses).toEqual(["npm"]);
    expect(lstatSync(npm).isDirectory()).toBe(true);
    expect(readFileSync(join(outside, "keep"), "utf8")).toBe("keep");
    store.release(second);

    rmSync(root, { recursive: true });
    symlinkSync(outside, root);
    const other = await store.prepare({ trust: UNTRUSTED, names: ["npm"], needBytes: 0 });
    expect(lstatSync(root).isDirectory()).toBe(true);
    expect(readdirSync(outside)).toEqual(["keep"]);
    store.release(other);
  });

  it("refuses names that are not plain, and names that would share a variable", async () => {
    const store = new CacheStore({ root });
    for (const names of [["../x"], [".hidden"], [""], ["a/b"], ["node-modules", "node.modules"]]) {
      await expect(store.prepare({ trust: TRUSTED, names, needBytes: 0 })).rejects.toMatchObject({
        code: "AGENT_ERR_WORKSPACE",
      });
    }
    expect(existsSync(join(dir.path, "x"))).toBe(false);
  });
});

describe("cacheEnv", () => {
  it("names each cache's variable, and sets the tool's own for npm, pip and yarn", () => {
    expect(cacheVariable("node-modules.v2")).toBe("AGENT_CACHE_NODE_MODULES_V2");
    expect(cacheEnv("/c/s", { pip: "/c/s/pip", yarn: "/c/s/yarn", gradle: "/c/s/gradle" })).toEqual({
      AGENT_CACHE_DIR: "/c/s",
      AGENT_CACHE_PIP: "/c/s/pip",
      PIP_CACHE_DIR: "/c/s/pip",
      AGENT_CACHE_YARN: "/c/s/yarn",
      YARN_CACHE_FOLDER: "/c/s/yarn",
      AGENT_CACHE_GRADLE: "/c/s/gradle",
    });
  });
});

import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import yauzl from "yauzl";
import { AgentError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { describeFetchError, getUrl, underController } from "./discovery.ts";

/** The agent.jar remoting runs from, and where it came from. */
export interface AgentJar {
  path: string;
  /** `controller`: downloaded now; `cache`: kept from an earlier run (revalidated or not); `image`: JENKINS_AGENT_FILE. */
  source: "controller" | "cache" | "image";
  sha256: string;
  bytes: number;
  /** The remoting version in the jar's manifest, when it says. */
  version: string | null;
  /** The controller confirmed the cached jar is current (HTTP 304). */
  revalidated: boolean;
  /** Why the controller's jar was not used, when it was not. */
  fallbackReason?: string;
}

export interface ObtainJarOptions {
  controllerUrl: string;
  /** Root of the cache: one directory per controller below it. */
  cacheDir: string;
  /** A jar baked into the image (JENKINS_AGENT_FILE), used when the controller cannot serve one. */
  agentFile: string | null;
  maxBytes: number;
  timeoutMs: number;
  signal?: AbortSignal;
  logger: Logger;
}

interface CacheMeta {
  url: string;
  file: string;
  sha256: string;
  bytes: number;
  version: string | null;
  etag: string | null;
  lastModified: string | null;
  fetchedAt: string;
}

/** Thrown when no agent.jar can be had: the controller cannot serve one and none is baked in. */
export class AgentJarError extends AgentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("AGENT_ERR_AGENT_JAR", message, options);
    this.name = "AgentJarError";
  }
}

/**
 * Gets the controller's own agent.jar (`<url>jnlpJars/agent.jar`), so that remoting always matches
 * the controller. The jar is cached under `cacheDir/<controller key>/agent-<sha256>.jar`; the next
 * run (a warm Lambda) revalidates it with `If-None-Match` / `If-Modified-Since` and downloads it
 * again only when it changed. A download is bounded in bytes and time and must be a jar (a zip
 * with a manifest naming a `Main-Class`). When the controller cannot serve one, the cached jar of
 * that controller is used, else the image's `agentFile`; with neither, throws {@link AgentJarError}.
 */
export async function obtainAgentJar(options: ObtainJarOptions): Promise<AgentJar> {
  const url = underController(options.controllerUrl, "jnlpJars/agent.jar");
  const dir = join(options.cacheDir, controllerKey(options.controllerUrl));
  const cached = await readCache(dir);
  let failure: string;
  try {
    const fetched = await download(url, dir, cached, options);
    if (fetched === "not-modified") {
      return { ...jarOf(dir, cached!), source: "cache", revalidated: true };
    }
    await removeOtherJars(dir, fetched.file);
    return { ...jarOf(dir, fetched), source: "controller", revalidated: false };
  } catch (error) {
    if (options.signal?.aborted) throw error;
    failure = error instanceof AgentJarError ? error.message : `${url}: ${describeFetchError(error)}`;
  }
  if (cached !== undefined) {
    options.logger.warn("the controller did not serve agent.jar; using the cached copy", { reason: failure });
    return { ...jarOf(dir, cached), source: "cache", revalidated: false, fallbackReason: failure };
  }
  if (options.agentFile !== null) {
    const baked = await inspectJar(options.agentFile).catch((error: unknown) => {
      throw new AgentJarError(
        `no agent.jar: the controller did not serve one (${failure}), and JENKINS_AGENT_FILE ${options.agentFile} is not a usable jar: ${(error as Error).message}`,
      );
    });
    options.logger.warn("the controller did not serve agent.jar; using the image's", {
      reason: failure,
      path: options.agentFile,
    });
    return {
      path: options.agentFile,
      source: "image",
      revalidated: false,
      fallbackReason: failure,
      ...baked,
    };
  }
  throw new AgentJarError(
    `no agent.jar: the controller did not serve one (${failure}) and no JENKINS_AGENT_FILE is baked into this image`,
  );
}

/** A short, path-safe key for a controller URL (its origin and path, normalised). */
export function controllerKey(controllerUrl: string): string {
  const url = new URL(controllerUrl);
  const path = url.pathname.endsWith("/") ? url.pathname : `${url.pathname}/`;
  return `${url.hostname.replace(/[^A-Za-z0-9.-]/g, "_")}-${createHash("sha256")
    .update(`${url.protocol}//${url.host}${path}`)
    .digest("hex")
    .slice(0, 12)}`;
}

function jarOf(dir: string, meta: CacheMeta): Omit<AgentJar, "source" | "revalidated"> {
  return { path: join(dir, meta.file), sha256: meta.sha256, bytes: meta.bytes, version: meta.version };
}

async function readCache(dir: string): Promise<CacheMeta | undefined> {
  try {
    const meta = JSON.parse(await readFile(join(dir, "meta.json"), "utf8")) as CacheMeta;
    const info = await stat(join(dir, meta.file));
    return info.size === meta.bytes ? meta : undefined;
  } catch {
    return undefined; // no cache yet, or a broken one: it is simply refetched
  }
}

async function download(
  url: string,
  dir: string,
  cached: CacheMeta | undefined,
  options: ObtainJarOptions,
): Promise<CacheMeta | "not-modified"> {
  const headers: Record<string, string> = {};
  if (cached?.etag) headers["if-none-match"] = cached.etag;
  if (cached?.lastModified) headers["if-modified-since"] = cached.lastModified;
  const res = await getUrl(url, {
    headers,
    timeoutMs: options.timeoutMs,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (res.statusCode === 304 && cached !== undefined) {
    res.resume();
    return "not-modified";
  }
  if (res.statusCode !== 200) {
    res.resume();
    throw new AgentJarError(`${url} answered HTTP ${res.statusCode}`);
  }
  const declared = Number(res.headers["content-length"] ?? Number.NaN);
  if (declared > options.maxBytes) {
    res.destroy();
    throw new AgentJarError(`${url} is ${declared} bytes, over the ${options.maxBytes}-byte limit`);
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const temp = join(dir, `download-${randomBytes(4).toString("hex")}.tmp`);
  const hash = createHash("sha256");
  let bytes = 0;
  try {
    await pipeline(
      res,
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          bytes += chunk.length;
          if (bytes > options.maxBytes) {
            throw new AgentJarError(`${url} sent more than the ${options.maxBytes}-byte limit`);
          }
          hash.update(chunk);
          yield chunk;
        }
      },
      createWriteStream(temp, { mode: 0o600 }),
    );
    const sha256 = hash.digest("hex");
    const inspected = await inspectJar(temp).catch((error: unknown) => {
      throw new AgentJarError(`${url} did not send a jar: ${(error as Error).message}`);
    });
    const file = `agent-${sha256.slice(0, 16)}.jar`;
    await rename(temp, join(dir, file));
    const meta: CacheMeta = {
      url,
      file,
      sha256,
      bytes,
      version: inspected.version,
      etag: res.headers.etag ?? null,
      lastModified: res.headers["last-modified"] ?? null,
      fetchedAt: new Date().toISOString(),
    };
    const metaTemp = join(dir, `meta-${randomBytes(4).toString("hex")}.tmp`);
    await writeFile(metaTemp, JSON.stringify(meta, null, 2));
    await rename(metaTemp, join(dir, "meta.json"));
    return meta;
  } finally {
    await rm(temp, { force: true });
  }
}

/** Removes the jars (and their class-data archives) a controller served before this one. */
async function removeOtherJars(dir: string, keep: string): Promise<void> {
  const stem = keep.replace(/\.jar$/, "");
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (name.startsWith("agent-") && !name.startsWith(stem)) await rm(join(dir, name), { force: true });
  }
}

/**
 * Checks that `path` is a jar (a zip whose `META-INF/MANIFEST.MF` names a `Main-Class`) and reads
 * the remoting version from the manifest (`Version`, else `Implementation-Version`).
 */
export async function inspectJar(
  path: string,
): Promise<{ sha256: string; bytes: number; version: string | null }> {
  const data = await readFile(path);
  const manifest = await readManifest(path);
  const mainClass = manifestValue(manifest, "Main-Class");
  if (mainClass === null) throw new Error("its manifest names no Main-Class");
  return {
    sha256: createHash("sha256").update(data).digest("hex"),
    bytes: data.length,
    version: manifestValue(manifest, "Version") ?? manifestValue(manifest, "Implementation-Version"),
  };
}

function readManifest(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    yauzl.open(path, { lazyEntries: true, autoClose: true }, (openError, zip) => {
      if (openError || !zip)
        return reject(new Error(`not a zip file (${openError?.message ?? "unreadable"})`));
      let found = false;
      zip.on("error", (error: Error) => reject(new Error(`a broken zip file (${error.message})`)));
      zip.on("end", () => {
        if (!found) reject(new Error("no META-INF/MANIFEST.MF"));
      });
      zip.on("entry", (entry: yauzl.Entry) => {
        if (entry.fileName !== "META-INF/MANIFEST.MF") return zip.readEntry();
        found = true;
        if (entry.uncompressedSize > 1_048_576) {
          zip.close();
          return reject(new Error("a manifest over 1 MiB"));
        }
        zip.openReadStream(entry, (streamError, stream) => {
          if (streamError || !stream) return reject(streamError ?? new Error("unreadable manifest"));
          const chunks: Buffer[] = [];
          stream.on("data", (chunk: Buffer) => chunks.push(chunk));
          stream.on("error", reject);
          stream.on("end", () => {
            zip.close();
            resolve(Buffer.concat(chunks).toString("utf8"));
          });
        });
      });
      zip.readEntry();
    });
  });
}

/** One main attribute of a manifest (continuation lines joined). */
function manifestValue(manifest: string, name: string): string | null {
  const lines = manifest.replace(/\r\n?/g, "\n").replace(/\n /g, "").split("\n");
  const line = lines.find((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`));
  const value = line?.slice(name.length + 1).trim();
  return value === undefined || value === "" ? null : value;
}

import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Entry, ZipFile } from "yauzl";
import { AgentError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { getUrl, underController } from "./discovery.ts";

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

/** The jar cache of one controller: `cacheDir/<controller key>/`, and the jar kept there, if any. */
export interface JarCache {
  dir: string;
  /** The cached jar (not yet revalidated), or undefined. */
  jar: AgentJar | undefined;
  meta: CacheMeta | undefined;
}

/** What the controller answered to `GET <url>jnlpJars/agent.jar` (conditional when a jar is cached). */
export interface JarAnswer {
  /** The answer's `X-Jenkins`; null when it had none (then it is not a Jenkins controller). */
  jenkinsVersion: string | null;
  status: number;
  /** The jar to run when the answer gave one: the cached jar (304) or the one just downloaded and verified (200). */
  jar: AgentJar | null;
  /** Why the answer gave no jar. */
  failure: string | null;
}

export interface AskJarOptions {
  controllerUrl: string;
  cache: JarCache;
  maxBytes: number;
  /** Bounds the wait for the answer (status and headers). */
  timeoutMs: number;
  /** Bounds the download of the jar once the answer came (a body that trickles is cut off). */
  downloadTimeoutMs: number;
  signal?: AbortSignal;
  /** Auto mode: an answer without `X-Jenkins` is not read (it is not a jar of ours). */
  jenkinsOnly: boolean;
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

/** The jar cached for `controllerUrl` under `cacheDir` (a broken or missing cache is none). */
export async function readJarCache(cacheDir: string, controllerUrl: string): Promise<JarCache> {
  const dir = join(cacheDir, controllerKey(controllerUrl));
  const meta = await readCache(dir);
  return {
    dir,
    meta,
    jar: meta === undefined ? undefined : { ...jarOf(dir, meta), source: "cache", revalidated: false },
  };
}

/**
 * Asks the controller for its own agent.jar, `GET <url>jnlpJars/agent.jar`, so that remoting
 * always matches the controller. One request both tells what the controller is (Jenkins answers
 * every request with `X-Jenkins`) and gets the jar: with a cached jar it is conditional
 * (`If-None-Match` / `If-Modified-Since`) and a 304 confirms the cache; a 200 is downloaded,
 * bounded in bytes and time, must be a jar (a zip with a manifest naming a `Main-Class`), and
 * replaces the cached one (`cache.dir/agent-<sha256>.jar`). Any other answer, and a download that
 * breaks off, is too big or too slow, gives no jar and says why. Throws what the request threw
 * when the controller did not answer (within `timeoutMs`), or when `signal` was aborted.
 */
export async function askForAgentJar(options: AskJarOptions): Promise<JarAnswer> {
  const url = underController(options.controllerUrl, "jnlpJars/agent.jar");
  const { cache } = options;
  const headers: Record<string, string> = {};
  if (cache.meta?.etag) headers["if-none-match"] = cache.meta.etag;
  if (cache.meta?.lastModified) headers["if-modified-since"] = cache.meta.lastModified;
  const res = await getUrl(url, {
    headers,
    timeoutMs: options.timeoutMs,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const header = res.headers["x-jenkins"];
  const jenkinsVersion = typeof header === "string" ? header : null;
  const status = res.statusCode ?? 0;
  const answer = (jar: AgentJar | null, failure: string | null): JarAnswer => ({
    jenkinsVersion,
    status,
    jar,
    failure,
  });
  if (jenkinsVersion === null && options.jenkinsOnly) {
    res.destroy();
    return answer(null, `${url} answered HTTP ${status} without X-Jenkins`);
  }
  if (status === 304 && cache.jar !== undefined) {
    res.destroy();
    return answer({ ...cache.jar, revalidated: true }, null);
  }
  if (status !== 200) {
    res.destroy(); // its body is not needed (and may never end)
    return answer(null, `${url} answered HTTP ${status}`);
  }
  try {
    const meta = await download(url, res, cache.dir, options);
    await removeOtherJars(cache.dir, meta.file);
    return answer({ ...jarOf(cache.dir, meta), source: "controller", revalidated: false }, null);
  } catch (error) {
    if (error instanceof AgentJarError) return answer(null, error.message);
    throw error;
  }
}

/**
 * The jar to run when the controller gave none (`failure` says why): the cached jar of that
 * controller, else the image's `agentFile` (JENKINS_AGENT_FILE); with neither, throws
 * {@link AgentJarError}.
 */
export async function fallbackJar(
  cache: JarCache,
  agentFile: string | null,
  failure: string,
  logger: Logger,
): Promise<AgentJar> {
  if (cache.jar !== undefined) {
    logger.warn("the controller did not serve agent.jar; using the cached copy", { reason: failure });
    return { ...cache.jar, fallbackReason: failure };
  }
  if (agentFile !== null) {
    const baked = await inspectJar(agentFile).catch((error: unknown) => {
      throw new AgentJarError(
        `no agent.jar: the controller did not serve one (${failure}), and JENKINS_AGENT_FILE ${agentFile} is not a usable jar: ${(error as Error).message}`,
      );
    });
    logger.warn("the controller did not serve agent.jar; using the image's", {
      reason: failure,
      path: agentFile,
    });
    return { path: agentFile, source: "image", revalidated: false, fallbackReason: failure, ...baked };
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

/**
 * The cache's record, when the jar it names is still the one that was downloaded (same size and
 * SHA-256: hashing a 1.5 MB jar costs a few ms). A jar changed on disk since is no cache at all:
 * a conditional request would have the controller confirm it, and every warm start would then
 * run a broken jar.
 */
async function readCache(dir: string): Promise<CacheMeta | undefined> {
  try {
    const meta = JSON.parse(await readFile(join(dir, "meta.json"), "utf8")) as CacheMeta;
    const path = join(dir, meta.file);
    if ((await stat(path)).size !== meta.bytes) return undefined;
    const sha256 = createHash("sha256")
      .update(await readFile(path))
      .digest("hex");
    return sha256 === meta.sha256 ? meta : undefined;
  } catch {
    return undefined; // no cache yet, or a broken one: it is simply refetched
  }
}

/**
 * Downloads the jar of a 200 answer into `dir`, within `options.maxBytes` and
 * `options.downloadTimeoutMs`. Every way the download can fail but an interruption (`signal`) is
 * an {@link AgentJarError}: the controller answered, so it is reachable, but it gave no jar.
 */
async function download(
  url: string,
  res: IncomingMessage,
  dir: string,
  options: Pick<AskJarOptions, "maxBytes" | "downloadTimeoutMs" | "signal">,
): Promise<CacheMeta> {
  const { maxBytes } = options;
  const declared = Number(res.headers["content-length"] ?? Number.NaN);
  if (declared > maxBytes) {
    res.destroy();
    throw new AgentJarError(`${url} is ${declared} bytes, over the ${maxBytes}-byte limit`);
  }
  const temp = join(dir, `download-${randomBytes(4).toString("hex")}.tmp`);
  const hash = createHash("sha256");
  let bytes = 0;
  const timer = setTimeout(
    () =>
      res.destroy(
        new AgentJarError(
          `${url} did not send the whole jar within ${options.downloadTimeoutMs} ms (${bytes} bytes came)`,
        ),
      ),
    options.downloadTimeoutMs,
  );
  let download: ReturnType<typeof createWriteStream> | undefined;
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    download = createWriteStream(temp, { mode: 0o600 });
    await pipeline(
      res,
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          bytes += chunk.length;
          if (bytes > maxBytes) {
            throw new AgentJarError(`${url} sent more than the ${maxBytes}-byte limit`);
          }
          hash.update(chunk);
          yield chunk;
        }
      },
      download,
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
  } catch (error) {
    if (error instanceof AgentJarError || options.signal?.aborted) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ECONNRESET" || code === "ERR_STREAM_PREMATURE_CLOSE") {
      throw new AgentJarError(`${url} broke off the download after ${bytes} bytes (${code})`, {
        cause: error,
      });
    }
    throw error; // the work dir failed us (EACCES, ENOSPC): not the controller's doing
  } finally {
    clearTimeout(timer);
    // pipeline rejects at the first error, possibly before the file's open(2) is done: closed
    // first (so created, if it ever will be), or the temp file appears after its removal.
    const open = download;
    if (open !== undefined && !open.closed)
      await new Promise<void>((resolve) => open.destroy().once("close", () => resolve()));
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
 * The jar baked into the image at `path` (JENKINS_AGENT_FILE), or undefined when there is none
 * there (nothing was baked in) or it is not a jar (then the fallback says so, if it is needed).
 */
export async function bakedJar(path: string | null): Promise<AgentJar | undefined> {
  if (path === null) return undefined;
  const inspected = await inspectJar(path).catch(() => undefined);
  return inspected === undefined ? undefined : { path, source: "image", revalidated: false, ...inspected };
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

async function readManifest(path: string): Promise<string> {
  // Loaded on demand: only a downloaded or baked jar is inspected, never a cached one.
  const { default: yauzl } = await import("yauzl");
  return new Promise((resolve, reject) => {
    yauzl.open(path, { lazyEntries: true, autoClose: true }, (openError: Error | null, zip: ZipFile) => {
      if (openError || !zip)
        return reject(new Error(`not a zip file (${openError?.message ?? "unreadable"})`));
      let found = false;
      zip.on("error", (error: Error) => reject(new Error(`a broken zip file (${error.message})`)));
      zip.on("end", () => {
        if (!found) reject(new Error("no META-INF/MANIFEST.MF"));
      });
      zip.on("entry", (entry: Entry) => {
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

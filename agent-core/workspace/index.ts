/** Workspaces: creating and removing them, tar in (safe extraction) and out (artifacts), warm caches. */

export { CACHE_NAME, cacheVariable } from "./cache-names.ts";
export {
  type CacheEviction,
  type CacheReport,
  type CacheRequest,
  CacheStore,
  type CacheStoreOptions,
  cacheEnv,
  type EvictionReason,
  type PreparedCaches,
  scopeOf,
} from "./caches.ts";
export { Digester, DigestStream, type StreamDigest } from "./digest.ts";
export { WorkspaceDownload, type WorkspaceDownloadOptions } from "./download.ts";
export {
  linkTargetRefusal,
  MAX_NAME_BYTES,
  MAX_PATH_BYTES,
  MAX_PATH_DEPTH,
  normalizeEntryPath,
  type PathRefusal,
  patternRefusal,
} from "./entry-rules.ts";
export { type ExtractOptions, type ExtractSummary, extractArchive } from "./extract.ts";
export { type PackedArchive, packSelection } from "./pack.ts";
export {
  type SelectedKind,
  type Selection,
  type SelectOptions,
  type SkipReason,
  selectPaths,
} from "./select.ts";
export { type ArtifactSink, sendArchive } from "./upload.ts";
export { createWorkspace, removeWorkspace, resolveInWorkspace } from "./workspace.ts";

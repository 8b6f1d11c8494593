import picomatch from "picomatch";
import * as z from "zod/mini";
import { ARTIFACT_WHEN, cacheNameSchema, cacheVariable, patternSchema } from "../agent-core/index.ts";

/**
 * The job file's transfer fields: what seeds the workspace, which artifacts come back, which warm
 * caches the job uses and the repository and branch its trust follows from, and the disk it needs.
 */

/**
 * `workspace`: a directory (relative to the job file, or to the CLI's working directory for
 * `submit --workspace`), with patterns to leave out; or `{ upload: ID }`, an archive already
 * uploaded (`POST /api/v1/workspaces`). The HTTP API takes only the upload form: a directory is
 * the CLI's to pack.
 */
export const workspaceSubmissionSchema = z.union(
  [
    z.string().check(z.minLength(1)),
    z.strictObject({
      path: z.string().check(z.minLength(1)),
      exclude: z._default(z.array(patternSchema).check(z.maxLength(100)), []),
    }),
    z.strictObject({
      upload: z.string().check(z.regex(/^[0-9a-f]{24}$/, "must be an upload id (24 hex digits)")),
    }),
  ],
  { error: "must be a directory, {path, exclude} or {upload}" },
);

/** `artifacts`: a list of patterns (kept after a success), or the full form. */
export const artifactsSubmissionSchema = z.union(
  [
    z.array(patternSchema).check(z.minLength(1), z.maxLength(100)),
    z.strictObject({
      paths: z.array(patternSchema).check(z.minLength(1), z.maxLength(100)),
      exclude: z._default(z.array(patternSchema).check(z.maxLength(100)), []),
      when: z._default(z.enum(ARTIFACT_WHEN), "on-success"),
    }),
  ],
  { error: "must be a list of patterns or {paths, exclude, when}" },
);

export const cachesSubmissionSchema = z.array(cacheNameSchema).check(
  z.minLength(1),
  z.maxLength(32),
  z.refine((names) => new Set(names.map(cacheVariable)).size === names.length, {
    message: "cache names must be unique and map to distinct AGENT_CACHE_* variables",
  }),
);

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?$/;
const FACTORS: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
};

/** A size: a number of bytes, or a string such as `512MiB`, `2 GiB`, `1.5GB`. */
export const sizeSchema = z.pipe(
  z.union(
    [z.int().check(z.gte(0)), z.string().check(z.regex(SIZE, "must look like 1048576, 512MiB or 2GB"))],
    { error: "must be a whole number of bytes or look like 1048576, 512MiB or 2GB" },
  ),
  z.transform((value) => sizeBytes(value)),
);

export function sizeBytes(value: number | string): number {
  if (typeof value === "number") return value;
  const match = SIZE.exec(value)!;
  return Math.round(Number(match[1]) * FACTORS[match[2] ?? "B"]!);
}

/** The transfer fields of a job submission, to spread into its schema. */
export const transferSubmissionFields = {
  workspace: z.optional(workspaceSubmissionSchema),
  artifacts: z.optional(artifactsSubmissionSchema),
  caches: z.optional(cachesSubmissionSchema),
  /** Where the job's sources come from, e.g. `github.com/acme/app`: with `branch`, its caches' trust. */
  repository: z.optional(z.string().check(z.minLength(1), z.maxLength(300))),
  branch: z.optional(z.string().check(z.minLength(1), z.maxLength(300))),
  /** Free disk the job needs on its agent; warm caches are evicted to make room. */
  diskNeed: z.optional(sizeSchema),
};

/**
 * The trust value of a job's caches: `<repository>@protected` when its branch matches one of
 * `protectedBranches` (globs, e.g. `main`, `release/*`), `<repository>@unprotected` otherwise
 * (no branch given included). A job without a repository is `(none)@...`.
 *
 * The reference controller takes the repository and branch as submitted: it trusts its
 * submitters. A controller fed by a forge derives them from the event instead, so that a pull
 * request can never claim a protected branch.
 */
export function cacheTrust(
  repository: string | undefined,
  branch: string | undefined,
  protectedBranches: readonly string[],
): string {
  const isProtected =
    branch !== undefined && protectedBranches.length > 0 && picomatch(protectedBranches as string[])(branch);
  return `${repository ?? "(none)"}@${isProtected ? "protected" : "unprotected"}`;
}

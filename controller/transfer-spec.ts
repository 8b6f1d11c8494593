import picomatch from "picomatch";
import * as z from "zod";
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
export const workspaceSubmissionSchema = z.union([
  z.string().min(1),
  z.object({ path: z.string().min(1), exclude: z.array(patternSchema).max(100).default([]) }).strict(),
  z.object({ upload: z.string().regex(/^[0-9a-f]{24}$/, "must be an upload id (24 hex digits)") }).strict(),
]);

/** `artifacts`: a list of patterns (kept after a success), or the full form. */
export const artifactsSubmissionSchema = z.union([
  z.array(patternSchema).min(1).max(100),
  z
    .object({
      paths: z.array(patternSchema).min(1).max(100),
      exclude: z.array(patternSchema).max(100).default([]),
      when: z.enum(ARTIFACT_WHEN).default("on-success"),
    })
    .strict(),
]);

export const cachesSubmissionSchema = z
  .array(cacheNameSchema)
  .min(1)
  .max(32)
  .refine((names) => new Set(names.map(cacheVariable)).size === names.length, {
    message: "cache names must be unique and map to distinct AGENT_CACHE_* variables",
  });

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
export const sizeSchema = z
  .union([z.number().int().min(0), z.string().regex(SIZE, "must look like 1048576, 512MiB or 2GB")])
  .transform((value) => sizeBytes(value));

export function sizeBytes(value: number | string): number {
  if (typeof value === "number") return value;
  const match = SIZE.exec(value)!;
  return Math.round(Number(match[1]) * FACTORS[match[2] ?? "B"]!);
}

/** The transfer fields of a job submission, to spread into its schema. */
export const transferSubmissionFields = {
  workspace: workspaceSubmissionSchema.optional(),
  artifacts: artifactsSubmissionSchema.optional(),
  caches: cachesSubmissionSchema.optional(),
  /** Where the job's sources come from, e.g. `github.com/acme/app`: with `branch`, its caches' trust. */
  repository: z.string().min(1).max(300).optional(),
  branch: z.string().min(1).max(300).optional(),
  /** Free disk the job needs on its agent; warm caches are evicted to make room. */
  diskNeed: sizeSchema.optional(),
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

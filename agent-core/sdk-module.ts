/**
 * The named exports of a CommonJS package (an AWS SDK v3 client) loaded with `import()`. Node
 * exposes a CommonJS package's named exports on the namespace; an esbuild bundle split into
 * chunks exposes only `default` (the package's `module.exports`). `probe` is an export the
 * package must have (`ECSClient`); throws TypeError naming the package when neither form has it.
 *
 * @example
 * const { ECSClient } = sdkExports(await import("@aws-sdk/client-ecs"), "ECSClient", "@aws-sdk/client-ecs");
 */
export function sdkExports<T extends object>(
  loaded: T | { default?: T },
  probe: keyof T & string,
  name: string,
): T {
  const has = (candidate: unknown): candidate is T =>
    typeof candidate === "object" &&
    candidate !== null &&
    typeof (candidate as Record<string, unknown>)[probe] === "function";
  if (has(loaded)) return loaded;
  const fallback = (loaded as { default?: unknown }).default;
  if (has(fallback)) return fallback;
  throw new TypeError(`the module ${name} has no ${probe} export`);
}

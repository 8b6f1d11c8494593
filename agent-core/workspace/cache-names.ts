/** The rules of cache names, shared by the job schema and the cache store. */

/** A cache's name: 1-64 letters, digits, `_`, `.`, `-`, starting with a letter or digit. */
export const CACHE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** `AGENT_CACHE_<NAME>`: the name upper-cased, every character other than A-Z and 0-9 as `_`. */
export function cacheVariable(name: string): string {
  return `AGENT_CACHE_${name.toUpperCase().replace(/[^A-Z0-9]/g, "_")}`;
}

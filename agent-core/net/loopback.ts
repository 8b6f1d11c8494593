import { isIP } from "node:net";

/**
 * Whether `host` (a host name or address, IPv6 with or without brackets) names this machine
 * only: 127.0.0.0/8, ::1, an IPv4-mapped 127.x address, `localhost`. Anything else, `0.0.0.0`
 * and `::` included, counts as reachable from elsewhere.
 *
 * @example
 * isLoopbackHost("127.0.0.1"); // true
 * isLoopbackHost("[::1]"); // true
 * isLoopbackHost("0.0.0.0"); // false
 */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (bare === "localhost") return true;
  if (isIP(bare) === 4) return bare.startsWith("127.");
  if (bare === "::1") return true;
  // IPv4-mapped, as written (::ffff:127.0.0.1) or as URL parsers normalize it (::ffff:7f00:1).
  return /^::ffff:(127\.|7f[0-9a-f]{2}:)/.test(bare);
}

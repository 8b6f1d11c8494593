import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * The secret an agent named `name` presents: HMAC-SHA256(key, name) in lower-case hex.
 * The controller keeps only `key`, so it can verify any agent without per-agent state.
 *
 * @example
 * const secret = deriveAgentSecret(controllerKey, "build.lambda-abcdef");
 */
export function deriveAgentSecret(key: string | Buffer, name: string): string {
  return createHmac("sha256", key).update(name, "utf8").digest("hex");
}

/** Constant-time check of a presented secret against the one derived for `name`. */
export function verifyAgentSecret(key: string | Buffer, name: string, presented: string): boolean {
  const expected = Buffer.from(deriveAgentSecret(key, name), "utf8");
  const actual = Buffer.from(presented, "utf8");
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

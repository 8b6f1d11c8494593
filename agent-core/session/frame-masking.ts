import { isLoopbackHost } from "../net/loopback.ts";

/**
 * How the agent masks the WebSocket frames it sends (RFC 6455 section 5.3: every frame from a
 * client carries a 4-byte masking key, and its payload is XORed with it).
 *
 * - `random`: a fresh key from the CSPRNG for every frame (ws's default), and every payload
 *   byte XORed with it, on both sides (the controller unmasks).
 * - `zero-key`: the key 0x00000000. The frame is still a masked frame as the RFC describes it
 *   (mask bit set, key present), and any server reads it; XOR with zero leaves the payload as
 *   it is, so ws skips the XOR on both sides.
 *
 * Masking does not protect the payload (the key travels in the frame). It exists for one attack
 * (RFC 6455 section 10.3): script in a browser choosing bytes that an intermediary which does
 * not understand WebSocket takes for an HTTP request of its own, poisoning its cache. A random
 * key that the sender of the data cannot predict makes those bytes unpredictable on the wire.
 * A job's output is chosen by the job, which may be untrusted code, so the same reasoning
 * applies to this agent wherever such an intermediary can read the bytes. Where none can, the
 * key buys nothing and costs the XOR of every byte in JavaScript on both sides (ws has no native
 * mask without the optional `bufferutil` addon, which the bundles leave out): about a quarter of
 * the agent's CPU when streaming bulk output, and as much again at the controller.
 *
 * So the zero key is used only where no intermediary can read the frames:
 * - over TLS (`wss:`/`https:`): the bytes on the path are ciphertext; a proxy on the way (HTTP
 *   CONNECT) sees only that. The first thing that reads the frames in clear is the TLS endpoint,
 *   which is a WebSocket peer (the controller, or a reverse proxy or load balancer in front of
 *   it that passes WebSocket frames on). Masking does not defend the hops behind that endpoint
 *   in any case: an endpoint that unmasks forwards the data as it is.
 * - to a loopback address (127.0.0.0/8, ::1, `localhost`) reached directly (no proxy applies):
 *   the bytes never leave the machine.
 *
 * Anything else (plain `ws:`/`http:` to another host, or through a proxy) keeps random keys.
 *
 * @example
 * frameMaskingFor("wss://ci.example.com/agents/v1", false); // "zero-key"
 * frameMaskingFor("ws://10.0.0.5:8080/agents/v1", true); // "random"
 */
export function frameMaskingFor(url: string, direct: boolean): "random" | "zero-key" {
  const target = new URL(url);
  if (target.protocol === "wss:" || target.protocol === "https:") return "zero-key";
  return direct && isLoopbackHost(target.hostname) ? "zero-key" : "random";
}

/** ws's `generateMask` for the zero key: fills the key buffer ws hands it (4 bytes, reused) with zeros. */
export function zeroMaskingKey(mask: Buffer): void {
  mask.fill(0);
}

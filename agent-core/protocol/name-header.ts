/**
 * The agent's name in the `Node-Name` upgrade header. HTTP header values are bytes that Node
 * only accepts as Latin-1, and parsers strip leading and trailing spaces, so the name travels as
 * its UTF-8 bytes with every byte that is not printable ASCII, and `%` itself, written `%XX`
 * (RFC 3986 percent-encoding). A name of printable ASCII without `%` is sent unchanged; spaces
 * become `%20`. Both sides use these two functions.
 *
 * @example
 * encodeNameHeader("linux && docker.lambda-abcdef"); // "linux%20&&%20docker.lambda-abcdef"
 * decodeNameHeader("%E6%9E%84%E5%BB%BA-1"); // "构建-1"
 */
export function encodeNameHeader(name: string): string {
  let out = "";
  for (const byte of Buffer.from(name, "utf8")) {
    out +=
      byte > 0x20 && byte < 0x7f && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

const fatalUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The name carried by a `Node-Name` header value, or undefined when the value is not valid
 * percent-encoded UTF-8 (a `%` not followed by two hex digits, or bytes that are not UTF-8).
 */
export function decodeNameHeader(value: string): string | undefined {
  if (!value.includes("%")) return value;
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code !== 0x25) {
      if (code > 0xff) return undefined;
      bytes.push(code);
      continue;
    }
    const hex = value.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
    bytes.push(Number.parseInt(hex, 16));
    i += 2;
  }
  try {
    return fatalUtf8.decode(Uint8Array.from(bytes));
  } catch {
    return undefined;
  }
}

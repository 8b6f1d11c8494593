/**
 * UTF-8 boundary helpers. Frames are cut only between characters, so that any consumer that
 * decodes one frame at a time sees whole characters; invalid bytes pass through unchanged.
 */

/** Length of the trailing bytes of `buf` that start a multibyte character but do not finish it. */
export function incompleteTailLength(buf: Buffer): number {
  const end = buf.length;
  for (let back = 1; back <= Math.min(3, end); back++) {
    const byte = buf[end - back]!;
    if ((byte & 0xc0) === 0x80) continue; // continuation byte: keep looking for the lead
    const need = byte >= 0xf0 && byte <= 0xf7 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

/** The largest cut point <= `limit` that does not fall inside a multibyte character. */
export function safeCut(buf: Buffer, limit: number): number {
  if (limit >= buf.length) {
    const cut = buf.length - incompleteTailLength(buf);
    return cut === 0 ? buf.length : cut;
  }
  let cut = limit;
  for (let i = 0; i < 3 && cut > 0 && (buf[cut]! & 0xc0) === 0x80; i++) cut--;
  // If three continuation bytes in a row were found, the bytes are not valid UTF-8: cut at the limit.
  return cut === 0 || (buf[cut]! & 0xc0) === 0x80 ? limit : cut;
}

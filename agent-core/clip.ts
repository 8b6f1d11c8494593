/** The most characters of one outside value that an error or a diagnostic shows. */
export const CLIP_CHARS = 60;

/**
 * `text` as it may be echoed into an error, a close reason or a diagnostic: at most `maxChars`
 * characters (never cutting a surrogate pair), and when cut, `...` and the whole length. Every
 * value that came from outside (a field name, an option, a variable's value, a peer's frame) is
 * clipped with this before it is shown, so a 1 MB input never becomes a 1 MB log line.
 *
 * @example
 * clip("x".repeat(1_048_576)); // "xxx...x... (1048576 characters)" (60 x's)
 */
export function clip(text: string, maxChars = CLIP_CHARS): string {
  if (text.length <= maxChars) return text;
  let end = maxChars;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}... (${text.length} characters)`;
}

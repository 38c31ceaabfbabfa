/**
 * Most UTF-8 bytes of a caller's value the server repeats back (status
 * messages, log lines, span attributes). Status messages travel
 * percent-encoded in a trailer (up to 3 bytes per byte): a kilobyte stays
 * a few kilobytes, within the header limits of gRPC clients (16 KB names
 * used to break them), and a log line stays a line.
 */
export const ECHO_MAX_BYTES = 1024;

/**
 * `text` cut to at most ECHO_MAX_BYTES of UTF-8 (whole characters), saying
 * how long it was: an error that quotes caller input can neither grow the
 * reply past what a client accepts nor flood the logs.
 */
export function echo(text: string): string {
  // A UTF-16 unit is at most 3 bytes of UTF-8: short strings need no counting.
  if (text.length * 3 <= ECHO_MAX_BYTES) return text;
  const total = Buffer.byteLength(text);
  if (total <= ECHO_MAX_BYTES) return text;
  const note = `… (${total} bytes in all)`;
  let kept = 0;
  let end = 0;
  for (const char of text) {
    const size = Buffer.byteLength(char);
    if (kept + size > ECHO_MAX_BYTES - Buffer.byteLength(note)) break;
    kept += size;
    end += char.length;
  }
  return text.slice(0, end) + note;
}

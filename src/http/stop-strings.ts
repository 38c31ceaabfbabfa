/**
 * OpenAI's `stop` strings over a stream of text pieces: text is released as
 * soon as it cannot be the start of a stop string, and generation ends at the
 * first stop string, which is not part of the output.
 */
export class StopStrings {
  private held = "";

  constructor(private readonly stops: readonly string[]) {}

  /** What may be sent of `piece` now, and whether a stop string ended the output. */
  push(piece: string): { text: string; stopped: boolean } {
    const text = this.held + piece;
    let first = -1;
    for (const stop of this.stops) {
      const at = text.indexOf(stop);
      if (at !== -1 && (first === -1 || at < first)) first = at;
    }
    if (first !== -1) {
      this.held = "";
      return { text: text.slice(0, first), stopped: true };
    }
    const keep = this.partialStopLength(text);
    this.held = text.slice(text.length - keep);
    return { text: text.slice(0, text.length - keep), stopped: false };
  }

  /** The text held back at the end of the output (it never completed a stop string). */
  flush(): string {
    const rest = this.held;
    this.held = "";
    return rest;
  }

  /** Length of the longest end of `text` that begins some stop string. */
  private partialStopLength(text: string): number {
    let longest = 0;
    for (const stop of this.stops) {
      for (let length = Math.min(stop.length - 1, text.length); length > longest; length--) {
        if (text.endsWith(stop.slice(0, length))) {
          longest = length;
          break;
        }
      }
    }
    return longest;
  }
}

/**
 * Where a text can be cut without changing its BPE ids.
 *
 * A merge joins two tokens into the piece their texts make together, so every
 * token's text is the concatenation of the texts of the tokens it was merged
 * from. Two adjacent tokens, one whose text ends in code unit `a` and one whose
 * text starts with `b`, can only ever end up in one token if `a` followed by
 * `b` occurs inside some piece that can form. Where that pair occurs in no
 * such piece, no merge crosses the boundary, ever: the merges on either side
 * are the same as those of each side merged on its own (each side's best pair
 * is still chosen in the same order, ties included, since the other side's
 * merges never change its candidates). So the text can be cut there.
 *
 * The pairs are UTF-16 code units, not code points: concatenating two texts
 * can join two lone surrogates into one code point, and units see that join.
 */
export class MergeBoundaries {
  /** Adjacent code units inside a piece that can form, as `left * 65536 + right`. */
  private readonly pairs = new Set<number>();

  constructor(formablePieces: Iterable<string>) {
    for (const piece of formablePieces) {
      for (let i = 0; i + 1 < piece.length; i++) this.pairs.add(piece.charCodeAt(i) * 65536 + piece.charCodeAt(i + 1));
    }
  }

  /**
   * Whether a token whose text ends in code unit `left` may ever merge with a
   * following one whose text starts with `right`; -1 for either (an empty or
   * missing piece) answers yes, since nothing is known.
   */
  mayJoin(left: number, right: number): boolean {
    return left < 0 || right < 0 || this.pairs.has(left * 65536 + right);
  }
}

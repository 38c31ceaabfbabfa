/**
 * llama2.c's encoder written straight from its description (docs/models.md,
 * "The llama2.c format"), independent of src/model: prepend a space,
 * map each character to its piece (else its UTF-8 bytes to ids byte + 3),
 * then rescan the whole list for the adjacent pair whose concatenated piece
 * scores highest (the leftmost among equals, better than -Infinity) and
 * merge it, until none merges. Quadratic, and the oracle for the fast one.
 */
export function rescanningEncode(pieces: readonly string[], scores: ArrayLike<number>, text: string): number[] {
  if (text.length === 0) return [];
  const idOf = new Map<string, number>();
  pieces.forEach((piece, id) => {
    if (!idOf.has(piece)) idOf.set(piece, id);
  });
  const ids: number[] = [];
  for (const char of " " + text) {
    const id = idOf.get(char);
    if (id !== undefined) ids.push(id);
    else for (const byte of new TextEncoder().encode(char)) ids.push(byte + 3);
  }
  for (;;) {
    let best = -1;
    let bestScore = -Infinity;
    let bestId = -1;
    for (let i = 0; i + 1 < ids.length; i++) {
      const merged = idOf.get(pieces[ids[i]] + pieces[ids[i + 1]]);
      if (merged !== undefined && scores[merged] > bestScore) {
        [best, bestScore, bestId] = [i, scores[merged], merged];
      }
    }
    if (best < 0) return ids;
    ids.splice(best, 2, bestId);
  }
}

/** A tok*.bin file's pieces and scores, read on their own (int32 max length, then per piece: float32 score, int32 length, bytes). */
export function readTokFile(bytes: Buffer, vocabSize: number): { pieces: string[]; scores: Float32Array } {
  const pieces: string[] = [];
  const scores = new Float32Array(vocabSize);
  let offset = 4;
  for (let id = 0; id < vocabSize; id++) {
    scores[id] = bytes.readFloatLE(offset);
    const length = bytes.readInt32LE(offset + 4);
    pieces.push(bytes.subarray(offset + 8, offset + 8 + length).toString("utf8"));
    offset += 8 + length;
  }
  return { pieces, scores };
}

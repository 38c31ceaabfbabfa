import { readFileSync } from "node:fs";

/** One turn of a chat, as chat templates read it. */
export interface ChatMessage {
  role: string;
  content: string;
}

/** What the engine needs from any tokenizer. */
export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  /** A text prompt that starts a sequence begins with BOS (false for e.g. Qwen2). */
  readonly addsBos: boolean;
  /** Token ids for `text`, without BOS. */
  encode(text: string): number[];
  /** UTF-8 bytes of `token` when it follows `previous` (-1: none); a character may span several tokens. */
  tokenBytes(token: number, previous: number): Uint8Array;
  /** Token ids of `messages` rendered with the model's chat template, ready to generate the reply
   * (special tokens such as BOS included as the template writes them); absent without a template. */
  encodeChat?(messages: readonly ChatMessage[]): number[];
}

/** Decodes a whole list of token ids to text. */
export function decodeTokens(tokenizer: Tokenizer, ids: readonly number[], previous = -1): string {
  const decoder = new TextDecoder("utf-8");
  let text = "";
  for (const id of ids) {
    text += decoder.decode(tokenizer.tokenBytes(id, previous), { stream: true });
    previous = id;
  }
  return text + decoder.decode();
}

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

/**
 * The llama2.c tokenizer format (tok*.bin): scored pieces merged greedily, with
 * byte fallback. No maintained npm library reads this format, so it is written
 * here from the format's description in shared/models/README.md.
 */
export class Llama2cTokenizer implements Tokenizer {
  readonly bosId = 1;
  readonly eosId = 2;
  readonly addsBos = true;
  private readonly pieces: string[];
  private readonly encodedPieces: Uint8Array[];
  private readonly scores: Float32Array;
  private readonly idByPiece = new Map<string, number>();
  /** Raw byte values of `<0xNN>` pieces, by id. */
  private readonly pieceBytes = new Map<number, number>();

  constructor(pieces: string[], scores: Float32Array) {
    this.pieces = pieces;
    this.scores = scores;
    const encoder = new TextEncoder();
    this.encodedPieces = pieces.map((piece) => encoder.encode(piece));
    pieces.forEach((piece, id) => {
      if (!this.idByPiece.has(piece)) this.idByPiece.set(piece, id);
      const byte = BYTE_PIECE.exec(piece);
      if (byte) this.pieceBytes.set(id, parseInt(byte[1], 16));
    });
  }

  static load(path: string, vocabSize: number): Llama2cTokenizer {
    const bytes = readFileSync(path);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let offset = 4; // max_token_length: not needed
    const pieces: string[] = [];
    const scores = new Float32Array(vocabSize);
    const decoder = new TextDecoder("utf-8");
    for (let id = 0; id < vocabSize; id++) {
      if (offset + 8 > bytes.byteLength) throw new Error(`${path}: truncated tokenizer (expected ${vocabSize} pieces)`);
      scores[id] = view.getFloat32(offset, true);
      const length = view.getInt32(offset + 4, true);
      offset += 8;
      pieces.push(decoder.decode(bytes.subarray(offset, offset + length)));
      offset += length;
    }
    return new Llama2cTokenizer(pieces, scores);
  }

  get vocabSize(): number {
    return this.pieces.length;
  }

  encode(text: string): number[] {
    if (text.length === 0) return [];
    const ids: number[] = [];
    // llama2.c (like sentencepiece) adds a dummy-prefix space.
    for (const char of " " + text) {
      const id = this.idByPiece.get(char);
      if (id !== undefined) {
        ids.push(id);
      } else {
        // Byte fallback: ids 3..258 are the 256 byte pieces.
        for (const byte of Buffer.from(char, "utf-8")) ids.push(byte + 3);
      }
    }
    // Merge the best-scoring adjacent pair until no pair forms a known piece.
    for (;;) {
      let bestScore = -Infinity;
      let bestId = -1;
      let bestIndex = -1;
      for (let i = 0; i + 1 < ids.length; i++) {
        const merged = this.idByPiece.get(this.pieces[ids[i]] + this.pieces[ids[i + 1]]);
        if (merged !== undefined && this.scores[merged] > bestScore) {
          bestScore = this.scores[merged];
          bestId = merged;
          bestIndex = i;
        }
      }
      if (bestIndex < 0) return ids;
      ids.splice(bestIndex, 2, bestId);
    }
  }

  tokenBytes(token: number, previous: number): Uint8Array {
    const byte = this.pieceBytes.get(token);
    if (byte !== undefined) return Uint8Array.of(byte);
    const piece = this.encodedPieces[token] ?? new Uint8Array();
    const space = 0x20;
    return previous === this.bosId && piece[0] === space ? piece.subarray(1) : piece;
  }
}

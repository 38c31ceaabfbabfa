import { readFileSync } from "node:fs";
import { mergeBestPairs, type MergeTable } from "./best-pair-merging.js";
import { runInSlices, runToEnd } from "./sliced-work.js";
import type { Tokenizer } from "./tokenizer.js";

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

/** Steps of encoding between two turns of the event loop (about a millisecond of work). */
const ENCODING_SLICE = 4096;

/**
 * The llama2.c tokenizer format (tok*.bin): scored pieces merged greedily, with
 * byte fallback. No maintained npm library reads this format, so it is written
 * here from the format's description in docs/models.md ("The llama2.c format").
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
  /** By id, the order in which a piece forms: 0 for the best score; equal scores share a rank; -1 never
   * forms (a score not above -Infinity, NaN included: llama2.c only merges pairs that beat -Infinity). */
  private readonly mergeRanks: Int32Array;

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
    const ranked = [...new Set(Array.from(scores).filter((score) => score > -Infinity))].sort((a, b) => b - a);
    const rankOf = new Map(ranked.map((score, rank) => [score, rank]));
    this.mergeRanks = Int32Array.from(pieces, (_, id) => rankOf.get(scores[id]) ?? -1);
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
    return runToEnd(this.encoding(text));
  }

  encodeInSlices(text: string, signal?: AbortSignal): Promise<number[]> {
    return runInSlices(this.encoding(text), signal);
  }

  /** Encoding as a generator that yields between slices of ENCODING_SLICE steps. */
  private *encoding(text: string): Generator<void, number[]> {
    if (text.length === 0) return [];
    const ids: number[] = [];
    let chars = 0;
    // llama2.c (like sentencepiece) adds a dummy-prefix space.
    for (const char of " " + text) {
      const id = this.idByPiece.get(char);
      if (id !== undefined) {
        ids.push(id);
      } else {
        // Byte fallback: ids 3..258 are the 256 byte pieces.
        for (const byte of Buffer.from(char, "utf-8")) ids.push(byte + 3);
      }
      if (++chars % ENCODING_SLICE === 0) yield;
    }
    return yield* mergeBestPairs(ids, this.mergeTable(), ENCODING_SLICE);
  }

  /**
   * Pairs merge as llama2.c merges them: into the piece their texts make
   * together, best score first. Pairs looked up are remembered for one
   * encoding only, so that no caller's text grows memory that outlives its call.
   */
  private mergeTable(): MergeTable {
    const known = new Map<number, number>();
    const vocab = this.pieces.length;
    return {
      merged: (left, right) => {
        const key = left * vocab + right;
        let merged = known.get(key);
        if (merged === undefined) {
          const id = this.idByPiece.get(this.pieces[left] + this.pieces[right]);
          merged = id === undefined || this.mergeRanks[id] < 0 ? -1 : id;
          known.set(key, merged);
        }
        return merged;
      },
      rank: (token) => this.mergeRanks[token],
    };
  }

  tokenBytes(token: number, previous: number): Uint8Array {
    const byte = this.pieceBytes.get(token);
    if (byte !== undefined) return Uint8Array.of(byte);
    const piece = this.encodedPieces[token] ?? new Uint8Array();
    const space = 0x20;
    return previous === this.bosId && piece[0] === space ? piece.subarray(1) : piece;
  }
}

import { LRUCache } from "lru-cache";
import { readFileSync } from "node:fs";
import { mergeBestPairs, type MergeTable } from "./best-pair-merging.js";
import { MergeBoundaries } from "./merge-boundaries.js";
import { TokenIdList } from "./token-id-list.js";
import { runInSlices, runToEnd } from "../../numerics/sliced-work.js";
import type { Tokenizer } from "./tokenizer.js";

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

/** Characters or merge steps of encoding between two turns of the event loop (well under a millisecond of work). */
const ENCODING_SLICE = 4096;
/** Segments (words, mostly) up to this many code units have their ids remembered across calls... */
const CACHED_SEGMENT_UNITS = 64;
/** ...this many of them, the least recently used forgotten first: under 20 MiB even if each were 64 units of
 * byte fallback (192 ids), about 3 MiB of words. */
const CACHED_SEGMENTS = 16_384;

/** The first byte of `codePoint` in UTF-8 (a lone surrogate is written as U+FFFD, as Buffer.from writes it). */
function firstUtf8Byte(codePoint: number): number {
  if (codePoint >= 0xd800 && codePoint <= 0xdfff) return 0xef;
  if (codePoint < 0x80) return codePoint;
  if (codePoint < 0x800) return 0xc0 | (codePoint >> 6);
  return codePoint < 0x10000 ? 0xe0 | (codePoint >> 12) : 0xf0 | (codePoint >> 18);
}

/** The last byte of `codePoint` in UTF-8, likewise. */
function lastUtf8Byte(codePoint: number): number {
  if (codePoint >= 0xd800 && codePoint <= 0xdfff) return 0xbd;
  return codePoint < 0x80 ? codePoint : 0x80 | (codePoint & 0x3f);
}

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
  /** The id of the piece that is one BMP code unit (the first such id, as `idByPiece`), by unit; -1: none. */
  private readonly unitPieceIds = new Int32Array(65536).fill(-1);
  /** The id of the piece that is one astral code point, by code point. */
  private readonly astralPieceIds = new Map<number, number>();
  /** The first and the last code unit of each byte piece's text (ids 3..258), by byte; -1: empty or missing. */
  private readonly byteFirstUnits = new Int32Array(256);
  private readonly byteLastUnits = new Int32Array(256);
  /** Where a text can be cut into segments merged on their own (see merge-boundaries.ts). */
  private readonly boundaries: MergeBoundaries;
  /** Merged ids of short segments: prose repeats its words, and a word's ids never change. */
  private readonly segmentIds = new LRUCache<string, Int32Array>({ max: CACHED_SEGMENTS });

  constructor(pieces: string[], scores: Float32Array) {
    this.pieces = pieces;
    this.scores = scores;
    const encoder = new TextEncoder();
    this.encodedPieces = pieces.map((piece) => encoder.encode(piece));
    pieces.forEach((piece, id) => {
      if (!this.idByPiece.has(piece)) {
        this.idByPiece.set(piece, id);
        if (piece.length === 1) this.unitPieceIds[piece.charCodeAt(0)] = id;
        else if (piece.length === 2 && piece.codePointAt(0)! > 0xffff) this.astralPieceIds.set(piece.codePointAt(0)!, id);
      }
      const byte = BYTE_PIECE.exec(piece);
      if (byte) this.pieceBytes.set(id, parseInt(byte[1], 16));
    });
    for (let byte = 0; byte < 256; byte++) {
      const piece = pieces[byte + 3] ?? "";
      this.byteFirstUnits[byte] = piece.length > 0 ? piece.charCodeAt(0) : -1;
      this.byteLastUnits[byte] = piece.length > 0 ? piece.charCodeAt(piece.length - 1) : -1;
    }
    const ranked = [...new Set(Array.from(scores).filter((score) => score > -Infinity))].sort((a, b) => b - a);
    const rankOf = new Map(ranked.map((score, rank) => [score, rank]));
    this.mergeRanks = Int32Array.from(pieces, (_, id) => rankOf.get(scores[id]) ?? -1);
    this.boundaries = new MergeBoundaries(pieces.filter((_, id) => this.mergeRanks[id] >= 0));
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

  /**
   * Encoding as a generator that yields between slices of about ENCODING_SLICE
   * characters or merge steps. The text is cut wherever no merge can cross
   * (merge-boundaries.ts) and each segment merged on its own, which gives the
   * ids of merging the whole text in one list, in time linear in its length
   * for text made of words shorter than some bound.
   */
  private *encoding(text: string): Generator<void, number[]> {
    if (text.length === 0) return [];
    // llama2.c (like sentencepiece) adds a dummy-prefix space.
    const full = " " + text;
    const table = this.mergeTable();
    // Prose makes about half as many tokens as characters; the list grows where a text makes more.
    const ids = new TokenIdList(full.length);
    let start = 0;
    let previousLastUnit = -1;
    for (let at = 0, scanned = 1; at < full.length; scanned++) {
      const codePoint = full.codePointAt(at)!;
      const end = at + (codePoint > 0xffff ? 2 : 1);
      const isPiece = this.pieceIdOf(codePoint) >= 0;
      // The character's initial tokens: its own piece, or its UTF-8 bytes' pieces (byte fallback).
      const firstUnit = isPiece ? full.charCodeAt(at) : this.byteFirstUnits[firstUtf8Byte(codePoint)];
      if (at > start && !this.boundaries.mayJoin(previousLastUnit, firstUnit)) {
        ids.append(yield* this.segmentIdsOf(full.slice(start, at), table));
        start = at;
      }
      previousLastUnit = isPiece ? full.charCodeAt(end - 1) : this.byteLastUnits[lastUtf8Byte(codePoint)];
      at = end;
      if (scanned % ENCODING_SLICE === 0) yield;
    }
    ids.append(yield* this.segmentIdsOf(full.slice(start), table));
    return ids.toArray();
  }

  /** `segment`'s merged ids, remembered for a short segment; a long one yields between slices of merging. */
  private *segmentIdsOf(segment: string, table: MergeTable): Generator<void, ArrayLike<number>> {
    if (segment.length > CACHED_SEGMENT_UNITS) return yield* mergeBestPairs(this.initialIds(segment), table, ENCODING_SLICE);
    const known = this.segmentIds.get(segment);
    if (known !== undefined) return known;
    const merged = Int32Array.from(yield* mergeBestPairs(this.initialIds(segment), table, ENCODING_SLICE));
    // A copy of the key: a slice of the caller's text would keep the whole text alive while remembered.
    this.segmentIds.set(Buffer.from(segment, "utf16le").toString("utf16le"), merged);
    return merged;
  }

  /** Each character's piece, or its UTF-8 bytes' pieces where it has none: the list merging starts from. */
  private initialIds(segment: string): number[] {
    const ids: number[] = [];
    for (let at = 0; at < segment.length; ) {
      const codePoint = segment.codePointAt(at)!;
      const end = at + (codePoint > 0xffff ? 2 : 1);
      const id = this.pieceIdOf(codePoint);
      if (id >= 0) ids.push(id);
      // Byte fallback: ids 3..258 are the 256 byte pieces.
      else for (const byte of Buffer.from(segment.slice(at, end), "utf-8")) ids.push(byte + 3);
      at = end;
    }
    return ids;
  }

  /** The piece that is exactly this one character (a lone surrogate included), or -1. */
  private pieceIdOf(codePoint: number): number {
    return codePoint <= 0xffff ? this.unitPieceIds[codePoint] : (this.astralPieceIds.get(codePoint) ?? -1);
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

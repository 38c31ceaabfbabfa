import fc from "fast-check";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Llama2cTokenizer } from "../../src/model/tokenizers/llama2c-tokenizer.js";
import { readTokFile, rescanningEncode } from "../reference/llama2c-rescanning-encoder.js";
import { MODEL_FILES, REFERENCE_TEXT } from "../support/test-model.js";

/**
 * The encoder (text cut where no merge can cross, segments merged through a
 * priority queue and remembered) against the rescanning one it replaced (the
 * oracle in test/reference): the same ids for every text, on stories260K's
 * tok512 and on made-up vocabularies whose scores tie, are -Infinity or NaN,
 * whose pieces span spaces, and whose characters are surrogates.
 */

const tok512 = readTokFile(readFileSync(MODEL_FILES.tokenizerPath), 512);
const tokenizer = new Llama2cTokenizer(tok512.pieces, tok512.scores);

/** Text from tok512's own pieces, spaces and newlines, and characters it lacks (byte fallback): emoji, CJK, accents, lone surrogates. */
const mixedText = fc
  .array(fc.oneof(fc.constantFrom(...tok512.pieces.slice(259)), fc.constantFrom(" ", "  ", "\n", "é", "😀", "中文", "\ud800", "\udc00x"), fc.string({ unit: "binary" })), {
    maxLength: 60,
  })
  .map((parts) => parts.join(""));

describe("Llama2cTokenizer.encode", () => {
  it("gives the rescanning encoder's ids on stories260K's tokenizer", () => {
    fc.assert(
      fc.property(mixedText, (text) => {
        expect(tokenizer.encode(text)).toEqual(rescanningEncode(tok512.pieces, tok512.scores, text));
      }),
      { numRuns: 500 },
    );
  });

  it("gives the rescanning encoder's ids for words seen before, in a new tokenizer and a used one", () => {
    const words = fc.oneof(fc.constantFrom(...tok512.pieces.slice(259)), fc.constantFrom(" ", "   ", "\n\n", "\t", "😀", "é", "\ud800", "<0x41>"));
    const texts = fc.array(fc.array(words, { maxLength: 30 }).map((parts) => parts.join("")), { minLength: 1, maxLength: 4 });
    fc.assert(
      fc.property(texts, (parts) => {
        const fresh = new Llama2cTokenizer(tok512.pieces, tok512.scores);
        // The same segments again and again: the later ones come from what the encoder remembers.
        for (const text of [...parts, parts.join(""), parts.join(" "), ...parts]) {
          expect(fresh.encode(text)).toEqual(rescanningEncode(tok512.pieces, tok512.scores, text));
        }
      }),
      { numRuns: 200 },
    );
  });

  it("gives the rescanning encoder's ids on a long story, sliced or not", async () => {
    const text = `${REFERENCE_TEXT}\n`.repeat(20);
    const expected = rescanningEncode(tok512.pieces, tok512.scores, text);
    expect(tokenizer.encode(text)).toEqual(expected);
    expect(await tokenizer.encodeInSlices(text)).toEqual(expected);
  });

  it("gives the rescanning encoder's ids on vocabularies with tied, -Infinity and NaN scores", () => {
    // Ids 0..2 special, 3..258 the byte pieces, then pieces over a small alphabet so that merges abound.
    const bytePieces = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    // Surrogates alone and paired: a cut must not fall where two texts join into one character.
    const alphabet = ["a", "b", " ", "é", "\ud83d", "\ude00", "😀"];
    const vocabulary = fc.record({
      pieces: fc.uniqueArray(fc.array(fc.constantFrom(...alphabet), { minLength: 1, maxLength: 4 }).map((chars) => chars.join("")), { minLength: 1, maxLength: 40 }),
      scores: fc.array(fc.constantFrom(0, -1, -2, 3, -Infinity, Infinity, NaN), { minLength: 40, maxLength: 40 }),
    });
    const text = fc.array(fc.constantFrom(...alphabet, "c", "<0x61>", "  "), { maxLength: 40 }).map((chars) => chars.join(""));
    fc.assert(
      fc.property(vocabulary, text, ({ pieces: made, scores: madeScores }, input) => {
        const pieces = ["<unk>", "<s>", "</s>", ...bytePieces, ...made];
        const scores = Float32Array.from(pieces, (_, id) => (id < 259 ? 0 : madeScores[id - 259]));
        const encoder = new Llama2cTokenizer(pieces, scores);
        const expected = rescanningEncode(pieces, scores, input);
        expect(encoder.encode(input)).toEqual(expected);
        expect(encoder.encode(input + input)).toEqual(rescanningEncode(pieces, scores, input + input));
        expect(encoder.encode(input)).toEqual(expected);
      }),
      { numRuns: 1000 },
    );
  });

  it("stops encoding in slices once its signal aborts", async () => {
    const controller = new AbortController();
    controller.abort(new Error("gone"));
    await expect(tokenizer.encodeInSlices("a".repeat(100_000), controller.signal)).rejects.toThrow("gone");
  });
});

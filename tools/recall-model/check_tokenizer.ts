// Loads a recall tokenizer with kvwarden's own Llama2cTokenizer and checks it against samples
// the Python tokenizer encoded (check_tokenizer.py writes them and runs this under `npx tsx`).
// Usage: npx tsx tools/recall-model/check_tokenizer.ts TOK_BIN SAMPLES_JSON
import { readFileSync } from "node:fs";
import { Llama2cTokenizer } from "../../src/model/tokenizers/llama2c-tokenizer.js";
import { decodeTokens } from "../../src/model/tokenizers/tokenizer.js";

const [tokPath, samplesPath] = process.argv.slice(2);
const { vocabSize, samples } = JSON.parse(readFileSync(samplesPath, "utf8")) as { vocabSize: number; samples: { text: string; ids: number[] }[] };
const tokenizer = Llama2cTokenizer.load(tokPath, vocabSize);

let failures = 0;
for (const [i, { text, ids }] of samples.entries()) {
  const encoded = tokenizer.encode(text);
  const decoded = decodeTokens(tokenizer, encoded, tokenizer.bosId);
  if (JSON.stringify(encoded) !== JSON.stringify(ids) || decoded !== text) {
    if (failures++ < 5) console.error(`sample ${i} ${JSON.stringify(text.slice(0, 80))}: ts ${encoded.slice(0, 20)} python ${ids.slice(0, 20)} decoded ${JSON.stringify(decoded.slice(0, 80))}`);
  }
}
console.log(`${samples.length - failures}/${samples.length} samples encode identically and decode back`);
process.exit(failures === 0 ? 0 : 1);

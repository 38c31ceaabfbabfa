#!/usr/bin/python3
"""Checks that the Python tokenizer encodes exactly as kvwarden's TypeScript Llama2cTokenizer.

    /usr/bin/python3 tools/recall-model/check_tokenizer.py [--count 300] [--seed 5]

Writes tok.bin to a temporary directory (or checks --tok, e.g. models/recall/tok.bin), makes
samples: corpus prompts+answers of every task at random lengths (ids from the corpus' own units,
which must also be what tokenizer.encode gives for a subset), and odd texts (uppercase, unknown
words, other punctuation, non-ASCII, leading/double spaces, digits run together) encoded by
tokenizer.encode; then runs check_tokenizer.ts under `npx tsx`, which loads the file with
src/model/tokenizers/llama2c-tokenizer.ts and requires the same ids and a byte-exact decode of each sample.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402
from tokenizer import Tokenizer  # noqa: E402

ODD = ["The Pass Key is 12345.", "what's the value of FOX?", "  two  spaces", "zürich — café ☃ 日本", "fox7 owl9 12 345",
       "the value of foxes is 1 2.", "the\nnext line", "tabs\tand; colons: here!", "the-kite's tail", "<s> </s> <0x41>",
       "applesauce starry moonlight", "thethe isis", " leading space", "emoji 🙂 done", "0 1 2 3 4 5 6 7 8 9 10 99 100"]


def samples(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    tok = corpus.tokenizer()
    out = []
    for i in range(count):
        task = corpus.TASKS[i % 3]
        ex = corpus.make_example(rng, task, rng.randint(60, corpus.MAX_LENGTH))
        text = ex.prompt_text() + ex.answer_text()
        ids = ex.prompt_ids()[1:] + ex.answer_ids()
        if i < 12:  # the slow reference encoder on a few whole examples
            assert tok.encode(text) == ids, f"corpus units differ from encode() on sample {i}"
        out.append({"text": text, "ids": ids})
    words = corpus.WORDS + ["pa", "ke", "va", "x", "q"]
    for i in range(count):
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            parts.append(rng.choice(words) if r < 0.6 else str(rng.randrange(1000)) if r < 0.75 else rng.choice(ODD))
        seps = [rng.choice([" ", " ", " ", "", ". ", "? ", ", ", "  "]) for _ in parts]
        text = "".join(p + s for p, s in zip(parts, seps)).rstrip(" ") or "x"
        out.append({"text": text, "ids": tok.encode(text)})
    for text in ODD:
        out.append({"text": text, "ids": tok.encode(text)})
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--tok", default=None, help="tokenizer file to check (default: write a fresh one)")
    args = p.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with tempfile.TemporaryDirectory() as tmp:
        tok_path = args.tok or os.path.join(tmp, "tok.bin")
        if not args.tok:
            corpus.tokenizer().write(tok_path)
        read = Tokenizer.read(tok_path, corpus.tokenizer().vocab_size)
        assert read.pieces == corpus.tokenizer().pieces, "tokenizer file differs from tokenizer.py's vocabulary"
        sample_path = os.path.join(tmp, "samples.json")
        data = samples(args.count, args.seed)
        with open(sample_path, "w", encoding="utf-8") as f:
            json.dump({"vocabSize": corpus.tokenizer().vocab_size, "samples": data}, f)
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_tokenizer.ts")
        result = subprocess.run(["npx", "tsx", script, os.path.abspath(tok_path), sample_path], cwd=root)
        sys.exit(result.returncode)


if __name__ == "__main__":
    main()

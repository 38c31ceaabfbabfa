#!/usr/bin/python3
"""Exports a trained recall model into models/recall (run from the repository root):

    /usr/bin/python3 tools/recall-model/export.py --run tools/recall-model/runs/main --out models/recall

Writes
- recall.bin   the weights, llama2.c legacy v0 (model.export_llama2c), classifier tied;
- tok.bin      the tokenizer (tokenizer.py), llama2.c tok format;
- heldout.jsonl the held-out evaluation set (corpus.heldout_records: 3 tasks x prompt lengths
               256/512/768/992 x depths 0/0.25/0.5/0.75/1 x 4 examples, seed 20240);
- logits-check.json  one held-out prompt's token ids and the float32 logits this script's PyTorch
               forward gives for its last position, for test/model/recall-model.test.ts to
               compare with kvwarden's step graph.
It reads recall.bin back, checks it reproduces the trained model's logits, and prints the
held-out exact-match accuracy of the PyTorch forward (teacher-forced: every answer token and
EOS is the argmax, i.e. greedy decoding reproduces the answer exactly), by task and length.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402
from model import Config, Llama, export_llama2c, load_llama2c  # noqa: E402
from tokenizer import Tokenizer  # noqa: E402

LOGITS_CHECK_INDEX = 108  # a held-out example (multikey, 512 tokens, depth 0.5) for the logits comparison


@torch.no_grad()
def heldout_accuracy(model: Llama, records: list[dict]) -> dict:
    model.eval()
    table: dict[str, list[int]] = {}
    for r in records:
        prompt = [1] + r["prompt_tokens"]
        target = r["answer_tokens"] + [2]
        tokens = torch.tensor([prompt + target])
        predicted = model(tokens[:, :-1])[0, len(prompt) - 1 :].argmax(-1).tolist()
        ok = int(predicted == target)
        for key in ("all", r["task"], f"{r['task']}@{r['length']}", f"depth {r['depth']}"):
            table.setdefault(key, []).append(ok)
    return {k: (sum(v) / len(v), len(v)) for k, v in table.items()}


def main() -> None:
    p = argparse.ArgumentParser(description="Export the recall model into models/recall.")
    p.add_argument("--run", default="tools/recall-model/runs/main")
    p.add_argument("--out", default="models/recall")
    p.add_argument("--checkpoint", default=None, help="default: RUN/final.pt, else RUN/ckpt.pt")
    args = p.parse_args()
    torch.set_num_threads(1)

    path = args.checkpoint or os.path.join(args.run, "final.pt")
    if not os.path.exists(path):
        path = os.path.join(args.run, "ckpt.pt")
    state = torch.load(path)
    cfg = Config(**state["config"])
    model = Llama(cfg)
    model.load_state_dict(state["model"])
    model.eval()
    print(f"checkpoint {path}: recall step {state['steps'] if 'steps' in state else state['state']['step']}")

    os.makedirs(args.out, exist_ok=True)
    tok = corpus.tokenizer()
    assert tok.vocab_size == cfg.vocab_size
    tok_path = os.path.join(args.out, "tok.bin")
    bin_path = os.path.join(args.out, "recall.bin")
    tok.write(tok_path)
    export_llama2c(model, bin_path)
    reread = Tokenizer.read(tok_path, cfg.vocab_size)
    assert reread.pieces == tok.pieces and reread.scores == tok.scores

    records = corpus.heldout_records()
    with open(os.path.join(args.out, "heldout.jsonl"), "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")

    loaded = load_llama2c(bin_path)
    loaded.eval()
    check = records[LOGITS_CHECK_INDEX]
    ids = [1] + tok.encode(check["prompt"])  # the slow reference encoder, once
    assert ids[1:] == check["prompt_tokens"]
    with torch.no_grad():
        logits = loaded(torch.tensor([ids]))[0, -1]
        original = model(torch.tensor([ids]))[0, -1]
    assert torch.allclose(logits, original, atol=1e-5), "recall.bin does not reproduce the trained model"
    with open(os.path.join(args.out, "logits-check.json"), "w") as f:
        json.dump({"heldout_index": LOGITS_CHECK_INDEX, "prompt_tokens": ids, "logits": [float(f"{x:.6g}") for x in logits.tolist()]}, f, separators=(",", ":"))
        f.write("\n")

    acc = heldout_accuracy(loaded, records)
    for key in sorted(acc, key=lambda k: (k != "all", k)):
        print(f"{key:24s} {acc[key][0]:.3f} ({acc[key][1]})")
    for name in (bin_path, tok_path):
        digest = hashlib.sha256(open(name, "rb").read()).hexdigest()
        print(f"{os.path.basename(name)} {os.path.getsize(name)} bytes sha256 {digest}")


if __name__ == "__main__":
    main()

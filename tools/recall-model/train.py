#!/usr/bin/python3
"""Trains kvwarden's recall model on the synthetic recall tasks of corpus.py (CPU, seeded).

Run from the repository root with Debian's torch (python3-torch 1.13, Python 3.11) and the
pthread OpenBLAS (apt-get install -y python3-torch libopenblas0-pthread; without it matmuls are
~10x slower):

    nohup /usr/bin/python3 tools/recall-model/train.py --out tools/recall-model/runs/main > /dev/null 2>&1 &
    tail -f tools/recall-model/runs/main/train.log

then export (export.py) into models/recall. One thread by default (--threads to raise it). On a
2-core build machine shared with other jobs the default run (--steps 2400) took about an hour;
see models/recall/README.md for the time of the committed run.

What it does:
- Model: model.Config (dim 128, 8 query heads, 2 KV heads, head size 16, hidden 352, 4 layers,
  vocab 509, seq_len 1024), the same forward as kvwarden's step graph.
- Data: a fresh batch every step from corpus.make_example with random.Random(seed): the three
  tasks in equal shares, prompt lengths uniform in [64, max] where max grows from 256 to 992
  over the first half of the run (a length curriculum), 1 + 2..6 facts, random depths. Every
  sequence in a batch has the same prompt length; batch size = tokens-per-step / length
  (at least 4). Each sequence is BOS + prompt + answer + EOS.
- Loss: cross-entropy on the answer tokens and EOS (weight 1) plus --lm-weight (0.1) times the
  next-token loss on every other position.
- AdamW (lr 2e-3, betas 0.9/0.95, weight decay 0.1 on matrices), 100 warm-up steps, cosine
  decay to lr/20. Gradient norm clipped at 1.
- Every --eval-every steps: exact-match accuracy on a fixed validation set (seed + 1000, not the
  held-out set), measured with teacher forcing (all answer tokens and EOS are the argmax, which
  is what greedy decoding would produce); logged to train.log; checkpoint saved to ckpt.pt
  (model, optimiser, data RNG: --resume continues a crashed run exactly where it stopped).
- At the end: final.pt (weights + config) next to the log.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402
from model import Config, Llama  # noqa: E402
from tokenizer import EOS  # noqa: E402


def make_batch(rng: random.Random, length: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens [B, T] and per-position target weights [B, T-1] (1 = answer, 0 = other, -1 = padding)."""
    seqs, starts = [], []
    for _ in range(batch):
        task = rng.choice(corpus.TASKS)
        ex = corpus.make_example(rng, task, length)
        seq, start = corpus.training_sequence(ex)
        seqs.append(seq)
        starts.append(start)
    T = max(len(s) for s in seqs)
    tokens = torch.full((batch, T), EOS, dtype=torch.long)
    kind = torch.full((batch, T - 1), -1, dtype=torch.long)
    for b, (seq, start) in enumerate(zip(seqs, starts)):
        tokens[b, : len(seq)] = torch.tensor(seq)
        kind[b, : len(seq) - 1] = 0
        # Position p predicts token p+1: answer tokens and EOS are seq[start:], predicted from start-1 on.
        kind[b, start - 1 : len(seq) - 1] = 1
    return tokens, kind


def loss_of(model: Llama, tokens: torch.Tensor, kind: torch.Tensor, lm_weight: float) -> tuple[torch.Tensor, float]:
    logits = model(tokens[:, :-1])
    targets = tokens[:, 1:]
    per = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none").view_as(targets)
    answer = kind == 1
    other = kind == 0
    answer_loss = per[answer].mean()
    lm_loss = per[other].mean() if other.any() else per.new_zeros(())
    return answer_loss + lm_weight * lm_loss, answer_loss.item()


def validation_set(seed: int, count: int) -> list[corpus.Example]:
    rng = random.Random(seed + 1000)
    lengths = [256, 512, 768, 992]
    return [corpus.make_example(rng, corpus.TASKS[i % 3], lengths[(i // 3) % len(lengths)]) for i in range(count)]


@torch.no_grad()
def exact_match(model: Llama, examples: list[corpus.Example]) -> dict[str, float]:
    """Teacher-forced exact match (== greedy exact match) per task and overall."""
    model.eval()
    hits: dict[str, list[int]] = {}
    for ex in examples:
        seq, start = corpus.training_sequence(ex)
        tokens = torch.tensor([seq])
        logits = model(tokens[:, :-1])[0]
        predicted = logits[start - 1 :].argmax(-1)
        ok = int(torch.equal(predicted, tokens[0, start:]))
        hits.setdefault(ex.task, []).append(ok)
    model.train()
    result = {task: sum(v) / len(v) for task, v in sorted(hits.items())}
    result["all"] = sum(sum(v) for v in hits.values()) / len(examples)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="tools/recall-model/runs/main")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--tokens-per-step", type=int, default=3072)
    p.add_argument("--min-batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--lm-weight", type=float, default=0.1)
    p.add_argument("--min-length", type=int, default=64)
    p.add_argument("--start-max-length", type=int, default=256)
    p.add_argument("--curriculum", type=float, default=0.5, help="fraction of steps over which the longest prompt grows to 992")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-count", type=int, default=48)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--hidden-dim", type=int, default=352)
    p.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "train.log")
    ckpt_path = os.path.join(args.out, "ckpt.pt")
    log = open(log_path, "a", buffering=1)

    def say(message: str) -> None:
        log.write(message + "\n")

    torch.manual_seed(args.seed)
    cfg = Config(hidden_dim=args.hidden_dim, vocab_size=corpus.tokenizer().vocab_size)
    model = Llama(cfg)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))
    rng = random.Random(args.seed)
    step = 0
    elapsed = 0.0
    if args.resume and os.path.exists(ckpt_path):
        state = torch.load(ckpt_path)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        step, elapsed = state["step"], state["elapsed"]
        say(f"resumed at step {step} ({elapsed:.0f} s)")
    else:
        params = sum(p.numel() for p in model.parameters())
        say(f"config {json.dumps(cfg.to_dict())} params {params} args {json.dumps(vars(args))}")

    val = validation_set(args.seed, args.eval_count)
    top = corpus.MAX_LENGTH
    started = time.time() - elapsed
    window: list[float] = []
    while step < args.steps:
        progress = step / max(1, args.steps * args.curriculum)
        max_len = min(top, int(args.start_max_length + (top - args.start_max_length) * min(1.0, progress)))
        length = rng.randint(args.min_length, max_len)
        batch = max(args.min_batch, round(args.tokens_per_step / length))
        tokens, kind = make_batch(rng, length, batch)

        if step < args.warmup:
            lr = args.lr * (step + 1) / args.warmup
        else:
            t = (step - args.warmup) / max(1, args.steps - args.warmup)
            lr = args.lr / 20 + (args.lr - args.lr / 20) * 0.5 * (1 + math.cos(math.pi * t))
        for group in opt.param_groups:
            group["lr"] = lr
        loss, answer_loss = loss_of(model, tokens, kind, args.lm_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        window.append(answer_loss)
        if step % 10 == 0:
            say(f"step {step} len {length} batch {batch} lr {lr:.2e} loss {loss.item():.4f} answer {sum(window) / len(window):.4f} t {time.time() - started:.0f}s")
            window = []
        if step % args.eval_every == 0 or step == args.steps:
            acc = exact_match(model, val)
            say(f"eval step {step} exact {json.dumps({k: round(v, 3) for k, v in acc.items()})} t {time.time() - started:.0f}s")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "rng": rng.getstate(), "torch_rng": torch.get_rng_state(),
                        "step": step, "elapsed": time.time() - started, "config": cfg.to_dict()}, ckpt_path + ".tmp")
            os.replace(ckpt_path + ".tmp", ckpt_path)
    torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "steps": step, "seconds": time.time() - started, "args": vars(args)},
               os.path.join(args.out, "final.pt"))
    say(f"done {step} steps in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Synthetic recall tasks for the kvwarden recall model: facts in filler text, a question at the end.

Importable (``sys.path.insert(0, "tools/recall-model"); import corpus``) and a CLI that writes
JSONL task sets:

    python3 tools/recall-model/corpus.py --task passkey --length 512 --depth 0.5 --count 20 --seed 1
    python3 tools/recall-model/corpus.py --task multikey --length 992 --count 100 --seed 7 --out set.jsonl

Options: --task passkey|multikey|multiquery, --length N (prompt tokens including BOS, 48..992),
--depth D (0..1, where the asked fact sits in the filler; omitted = uniform at random per
example), --count K, --seed S, --keys (facts per multikey/multiquery example; omitted = random
2..6), --queries (facts asked in a multiquery example; omitted = random 2..3), --out PATH
(default stdout). The same arguments always give the same examples (Python's random.Random(S)).

Text is lowercase words, spaced digits and the punctuation . , ? ; with the recall tokenizer
(tokenizer.py) every word, spaced digit and punctuation mark is exactly one token.

Filler: random sentences from a small grammar ("the old cat sits on the hill." "the boat was
red."), 4..10 tokens each; filler never uses "is" or "what" (only facts and questions do). Facts (needles) are sentences placed between filler sentences:

    passkey     fact:     "the pass key is 7 1 9 3 8."
                question: " what is the pass key? the pass key is"
                answer:   " 7 1 9 3 8."
    multikey    facts:    "the value of fox is 4 2 8 1." for 2..6 distinct keys
                question: " what is the value of owl? the value of owl is"
                answer:   " 0 5 5 3."
    multiquery  facts:    as multikey
                question: " what are the values of owl, fox and elk? the value of owl is"
                answer:   " 0 5 5 3. the value of fox is 4 2 8 1. the value of elk is 9 9 0 6."

The prompt ends with the start of the answer sentence (an answer prefix), so the model's first
generated token is the first digit. The model then writes the answer and EOS. Pass keys have 5
digits, values 4 (leading zeros allowed). Depth D puts the (first) asked fact after
round(D * n) of the n filler sentences; other facts go at uniformly random depths. The fact's
absolute token position is recorded as ``needle_positions`` (token index, BOS = 0).

JSONL record fields: task, length (prompt tokens incl. BOS), depth, prompt (text; kvwarden's
Prefill with `text` prepends BOS), answer (text the model should generate, before EOS),
prompt_tokens, answer_tokens (ids without BOS/EOS; prompt_tokens excludes BOS), keys (asked
keys, in order), facts ({key: value} of every fact in the prompt; passkey uses key "pass key"),
needle_positions (token index of each asked fact's first token, BOS = 0), seed, index.
The question always starts with the word " what", which filler and facts never use, so the last
" what" token of prompt_tokens marks where the question starts.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, field
from typing import Optional

from tokenizer import BOS, EOS, Tokenizer

ADJECTIVES = ["red", "big", "old", "new", "dark", "warm", "cold", "soft", "tall"]
NOUNS = ["cat", "dog", "man", "boy", "tree", "bird", "boat", "road", "hill", "ship", "car", "sun", "cup", "door"]
TRANSITIVE = ["sees", "takes", "wants", "makes", "helps", "holds"]
INTRANSITIVE = ["walks", "runs", "sits", "waits"]
PREPOSITIONS = ["to", "on", "at", "near", "by"]
KEYS = ["fox", "owl", "bee", "elk", "ant", "yak", "emu", "ram", "cod", "eel", "hen", "bat",
        "apple", "lemon", "plum", "pear", "river", "stone", "cloud", "storm", "star", "moon", "wolf", "bear"]
TEMPLATE_WORDS = ["the", "pass", "key", "is", "was", "what", "value", "values", "of", "are", "and", "then"]
WORDS = sorted(set(ADJECTIVES + NOUNS + TRANSITIVE + INTRANSITIVE + PREPOSITIONS + KEYS + TEMPLATE_WORDS))
assert not set(KEYS) & set(ADJECTIVES + NOUNS + TRANSITIVE + INTRANSITIVE + PREPOSITIONS + TEMPLATE_WORDS)

TASKS = ("passkey", "multikey", "multiquery")
PASSKEY_DIGITS = 5
VALUE_DIGITS = 4
MIN_LENGTH = 48
CONTEXT = 1024  # the recall model's seq_len
MAX_LENGTH = 992  # prompt + longest answer + EOS stay within the model's 1024 positions

_TOKENIZER: Optional[Tokenizer] = None


def tokenizer() -> Tokenizer:
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = Tokenizer.for_words(WORDS)
    return _TOKENIZER


# A sentence is a list of units; each unit is one piece (" cat", " 7", ".", "?", ",").
def _w(*words: str) -> list[str]:
    return [" " + w for w in words]


def filler_sentence(rng: random.Random, length: int) -> list[str]:
    """A random filler sentence of exactly `length` (4..10) tokens."""
    a = lambda: rng.choice(ADJECTIVES)
    n = lambda: rng.choice(NOUNS)
    vt = lambda: rng.choice(TRANSITIVE)
    vi = lambda: rng.choice(INTRANSITIVE)
    p = lambda: rng.choice(PREPOSITIONS)
    be = lambda: "was"  # "is" only ever precedes a fact's value
    options = {
        4: [lambda: _w("the", n(), vi())],
        5: [lambda: _w("the", a(), n(), vi()), lambda: _w("the", n(), be(), a())],
        6: [lambda: _w("the", a(), n(), be(), a()), lambda: _w("the", n(), vt(), "the", n()), lambda: _w("then", "the", a(), n(), vi())],
        7: [lambda: _w("the", n(), vi(), p(), "the", n()), lambda: _w("the", a(), n(), vt(), "the", n())],
        8: [lambda: _w("the", a(), n(), vi(), p(), "the", n()), lambda: _w("the", a(), n(), vt(), "the", a(), n())],
        9: [lambda: _w("the", a(), n(), vi(), p(), "the", a(), n()), lambda: _w("then", "the", a(), n(), vt(), "the", a(), n())],
        10: [lambda: _w("then", "the", a(), n(), vi(), p(), "the", a(), n())],
    }
    units = rng.choice(options[length])() + ["."]
    assert len(units) == length
    return units


def filler(rng: random.Random, tokens: int, repeat: float = 0.0) -> list[list[str]]:
    """Filler sentences totalling exactly `tokens` tokens (0 or >= 4).

    With `repeat` > 0 (training only) a sentence starts, with that probability, a passage copied
    from earlier filler, which goes on sentence by sentence with probability 0.6: text the model
    can only predict by copying, so the language-model loss trains the copying that recall uses.
    With repeat = 0 the random stream is the same as if the option did not exist."""
    assert tokens == 0 or tokens >= 4, tokens
    sentences: list[list[str]] = []
    copying = -1
    while tokens > 14:
        if repeat and copying >= 0 and rng.random() < 0.6:
            copying += 1
        elif repeat and len(sentences) >= 2 and rng.random() < repeat:
            copying = rng.randrange(len(sentences) - 1)
        else:
            copying = -1
        if copying >= 0:
            sentences.append(list(sentences[copying]))
            tokens -= len(sentences[-1])
            continue
        length = rng.randint(4, 10)
        sentences.append(filler_sentence(rng, length))
        tokens -= length
    if tokens > 10:
        first = rng.randint(max(4, tokens - 10), min(10, tokens - 4))
        sentences.append(filler_sentence(rng, first))
        tokens -= first
    if tokens:
        sentences.append(filler_sentence(rng, tokens))
    return sentences


def digits(rng: random.Random, count: int) -> list[str]:
    return [str(rng.randrange(10)) for _ in range(count)]


def fact_units(key: str, value: list[str]) -> list[str]:
    lead = _w("the", "pass", "key", "is") if key == "pass key" else _w("the", "value", "of", key, "is")
    return lead + [" " + d for d in value] + ["."]


def answer_sentence_prefix(key: str) -> list[str]:
    return _w("the", "pass", "key", "is") if key == "pass key" else _w("the", "value", "of", key, "is")


def question_units(task: str, asked: list[str]) -> list[str]:
    if task == "passkey":
        return _w("what", "is", "the", "pass", "key") + ["?"]
    if task == "multikey":
        return _w("what", "is", "the", "value", "of", asked[0]) + ["?"]
    units = _w("what", "are", "the", "values", "of")
    for i, key in enumerate(asked):
        if i > 0:
            units += [","] if i < len(asked) - 1 else _w("and")
        units.append(" " + key)
    return units + ["?"]


@dataclass
class Example:
    task: str
    depth: float
    prompt_units: list[str]
    answer_units: list[str]
    keys: list[str]
    facts: dict[str, str]
    needle_positions: list[int] = field(default_factory=list)

    def prompt_ids(self) -> list[int]:
        """Prompt token ids including BOS."""
        ids = tokenizer().id_by_piece
        return [BOS] + [ids[u] for u in self.prompt_units]

    def answer_ids(self) -> list[int]:
        """Answer token ids (without EOS)."""
        ids = tokenizer().id_by_piece
        return [ids[u] for u in self.answer_units]

    def prompt_text(self) -> str:
        return "".join(self.prompt_units)[1:]  # the tokenizer adds the leading space back

    def answer_text(self) -> str:
        return "".join(self.answer_units)

    def record(self, **extra) -> dict:
        return {
            "task": self.task,
            "length": len(self.prompt_units) + 1,
            "depth": round(self.depth, 4),
            "prompt": self.prompt_text(),
            "answer": self.answer_text(),
            "prompt_tokens": self.prompt_ids()[1:],
            "answer_tokens": self.answer_ids(),
            "keys": self.keys,
            "facts": self.facts,
            "needle_positions": self.needle_positions,
            **extra,
        }


def make_example(
    rng: random.Random,
    task: str,
    length: int,
    depth: Optional[float] = None,
    n_keys: Optional[int] = None,
    n_queries: Optional[int] = None,
    repeat: float = 0.0,
) -> Example:
    """One example whose prompt is exactly `length` tokens including BOS (`repeat`: see filler)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (one of {', '.join(TASKS)})")
    if depth is None:
        depth = rng.random()
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    if task == "passkey":
        keys_all = ["pass key"]
        asked = ["pass key"]
        values = {"pass key": digits(rng, PASSKEY_DIGITS)}
    else:
        # Random key counts stay small enough for short prompts: a fact and its share of filler take ~14 tokens.
        n_keys = n_keys if n_keys is not None else rng.randint(2, min(6, max(3, (length - 25) // 14)))
        if task == "multiquery":
            n_queries = n_queries if n_queries is not None else rng.randint(2, 3)
            n_keys = max(n_keys, n_queries)
        else:
            n_queries = 1
        if not 1 <= n_keys <= len(KEYS):
            raise ValueError(f"keys must be in 1..{len(KEYS)}")
        keys_all = rng.sample(KEYS, n_keys)
        asked = rng.sample(keys_all, n_queries)
        values = {k: digits(rng, VALUE_DIGITS) for k in keys_all}

    question = question_units(task, asked) + answer_sentence_prefix(asked[0])
    answer: list[str] = []
    for i, key in enumerate(asked):
        if i > 0:
            answer += answer_sentence_prefix(key)
        answer += [" " + d for d in values[key]] + ["."]
    facts = {k: fact_units(k, values[k]) for k in keys_all}
    fact_tokens = sum(len(f) for f in facts.values())
    filler_tokens = length - 1 - fact_tokens - len(question)
    if filler_tokens < 4 * (len(keys_all) + 1) or length > MAX_LENGTH:
        raise ValueError(f"length {length} is out of range for this {task} example ({MIN_LENGTH}..{MAX_LENGTH})")
    if length + len(answer) + 1 > CONTEXT:
        raise ValueError(f"prompt {length} + answer {len(answer)} + EOS is past the model's {CONTEXT} positions")
    sentences = filler(rng, filler_tokens, repeat)
    # Slots between sentences: slot s = after s filler sentences. The first asked fact goes at depth.
    slots = {asked[0]: round(depth * len(sentences))}
    for key in keys_all:
        if key not in slots:
            slots[key] = rng.randint(0, len(sentences))
    order = sorted(keys_all, key=lambda k: (slots[k], rng.random()))
    units: list[str] = []
    starts: dict[str, int] = {}
    pending = list(order)
    for s in range(len(sentences) + 1):
        while pending and slots[pending[0]] == s:
            key = pending.pop(0)
            starts[key] = len(units) + 1  # +1: BOS
            units += facts[key]
        if s < len(sentences):
            units += sentences[s]
    units += question
    return Example(
        task=task,
        depth=depth,
        prompt_units=units,
        answer_units=answer,
        keys=asked,
        facts={k: "".join(values[k]) for k in keys_all},
        needle_positions=[starts[k] for k in asked],
    )


def generate(task: str, length: int, count: int, seed: int, depth: Optional[float] = None,
             n_keys: Optional[int] = None, n_queries: Optional[int] = None) -> list[dict]:
    rng = random.Random(f"{task}/{length}/{depth}/{n_keys}/{n_queries}/{seed}")
    return [make_example(rng, task, length, depth, n_keys, n_queries).record(seed=seed, index=i) for i in range(count)]


HELDOUT_SEED = 20240
HELDOUT_LENGTHS = (256, 512, 768, 992)
HELDOUT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
HELDOUT_PER_CELL = 4


def heldout_records() -> list[dict]:
    """models/recall/heldout.jsonl: every task x length x depth, 4 examples each (240), as the CLI writes them."""
    out = []
    for task in TASKS:
        for length in HELDOUT_LENGTHS:
            for depth in HELDOUT_DEPTHS:
                for r in generate(task, length, HELDOUT_PER_CELL, HELDOUT_SEED, depth):
                    out.append(r)
    return out


def training_sequence(example: Example) -> tuple[list[int], int]:
    """BOS + prompt + answer + EOS, and the index of the first answer token."""
    prompt = example.prompt_ids()
    return prompt + example.answer_ids() + [EOS], len(prompt)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Emit a JSONL set of synthetic recall tasks (see the module docstring).")
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument("--length", type=int, required=True, help="prompt tokens including BOS")
    parser.add_argument("--depth", type=float, default=None, help="0..1: where the asked fact sits (default: random)")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keys", type=int, default=None, help="facts per multikey/multiquery prompt (default: random 2..6)")
    parser.add_argument("--queries", type=int, default=None, help="facts asked in a multiquery prompt (default: random 2..3)")
    parser.add_argument("--out", default="-", help="output path (default: stdout)")
    args = parser.parse_args(argv)
    try:
        records = generate(args.task, args.length, args.count, args.seed, args.depth, args.keys, args.queries)
    except ValueError as error:
        print(f"corpus.py: {error}", file=sys.stderr)
        return 2
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")
    try:
        for r in records:
            out.write(json.dumps(r, separators=(",", ":")) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The recall model's vocabulary and a llama2.c-format tokenizer that encodes exactly as kvwarden does.

Vocabulary (ids):
  0 <unk>, 1 <s> (BOS), 2 </s> (EOS), 3..258 the byte pieces <0x00>..<0xFF> (byte fallback),
  then single characters (space, a-z, 0-9, punctuation), then multi-character pieces.

Every multi-character piece starts with a space: " 7" for each digit, and for every word of the
corpus vocabulary (corpus.WORDS) the whole chain of its space-prefixed prefixes (" f", " fo",
" fox"), so greedy merging grows each word from its leading space one character at a time. No
piece spans two words (none contains an inner space), so the encoding of a text is, word by
word, the longest piece of that chain, whatever order the merges run in: each corpus word is one
token, each spaced digit (" 7") is one token, and "." "," "?" are tokens of their own.

encode() mirrors src/model/tokenizers/llama2c-tokenizer.ts (Llama2cTokenizer.encode) step for step: dummy-prefix
space, one piece per character (UTF-8 byte fallback to ids 3..258), then repeatedly merge the
adjacent pair whose concatenation is a piece with the highest score (first such pair on ties)
until no pair merges. check_tokenizer.ts compares it with the TypeScript class itself.
"""

from __future__ import annotations

import struct
from typing import Iterable, Sequence

BOS = 1
EOS = 2
SPECIALS = ["<unk>", "<s>", "</s>"]
BYTE_PIECES = [f"<0x{b:02X}>" for b in range(256)]
CHARS = [" "] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)] + list(".,?:;!'-\n")


def build_pieces(words: Iterable[str]) -> list[str]:
    """All pieces in id order for a corpus vocabulary of lowercase words."""
    pieces = SPECIALS + BYTE_PIECES + CHARS
    seen = set(pieces)
    multi: list[str] = [f" {d}" for d in range(10)]
    for word in sorted(set(words)):
        assert word and all("a" <= c <= "z" for c in word), word
        spaced = " " + word
        for end in range(2, len(spaced) + 1):
            multi.append(spaced[:end])
    for piece in multi:
        if piece not in seen:
            seen.add(piece)
            pieces.append(piece)
    return pieces


def piece_scores(pieces: Sequence[str]) -> list[float]:
    """Scores: longer pieces score higher (ties by id); specials, bytes and single chars 0."""
    first_multi = len(SPECIALS) + len(BYTE_PIECES) + len(CHARS)
    return [0.0 if i < first_multi else float(len(p)) - i / 10000.0 for i, p in enumerate(pieces)]


class Tokenizer:
    def __init__(self, pieces: Sequence[str], scores: Sequence[float]):
        self.pieces = list(pieces)
        # Scores round-trip through float32 in the file; compare what kvwarden compares.
        self.scores = [struct.unpack("<f", struct.pack("<f", s))[0] for s in scores]
        self.id_by_piece: dict[str, int] = {}
        for i, p in enumerate(self.pieces):
            self.id_by_piece.setdefault(p, i)

    @classmethod
    def for_words(cls, words: Iterable[str]) -> "Tokenizer":
        pieces = build_pieces(words)
        return cls(pieces, piece_scores(pieces))

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without BOS (as kvwarden's Llama2cTokenizer.encode)."""
        if not text:
            return []
        ids: list[int] = []
        for ch in " " + text:
            i = self.id_by_piece.get(ch)
            if i is not None:
                ids.append(i)
            else:
                ids.extend(b + 3 for b in ch.encode("utf-8"))
        while True:
            best_score = float("-inf")
            best_id = best_index = -1
            for i in range(len(ids) - 1):
                merged = self.id_by_piece.get(self.pieces[ids[i]] + self.pieces[ids[i + 1]])
                if merged is not None and self.scores[merged] > best_score:
                    best_score, best_id, best_index = self.scores[merged], merged, i
            if best_index < 0:
                return ids
            ids[best_index : best_index + 2] = [best_id]

    def decode(self, ids: Sequence[int], previous: int = -1) -> str:
        """Text of `ids` as kvwarden's decodeTokens gives it (leading space dropped after BOS)."""
        out = bytearray()
        for i in ids:
            p = self.pieces[i]
            if len(p) == 6 and p.startswith("<0x") and p.endswith(">"):
                out.append(int(p[3:5], 16))
            else:
                b = p.encode("utf-8")
                out += b[1:] if previous == BOS and b[:1] == b" " else b
            previous = i
        return out.decode("utf-8", errors="replace")

    def write(self, path: str) -> None:
        """llama2.c tok format: int32 max_token_length, then per piece float32 score, int32 length, bytes."""
        encoded = [p.encode("utf-8") for p in self.pieces]
        with open(path, "wb") as f:
            f.write(struct.pack("<i", max(len(b) for b in encoded)))
            for b, s in zip(encoded, self.scores):
                f.write(struct.pack("<fi", s, len(b)))
                f.write(b)

    @classmethod
    def read(cls, path: str, vocab_size: int) -> "Tokenizer":
        with open(path, "rb") as f:
            data = f.read()
        offset = 4
        pieces, scores = [], []
        for _ in range(vocab_size):
            score, length = struct.unpack_from("<fi", data, offset)
            offset += 8
            pieces.append(data[offset : offset + length].decode("utf-8"))
            scores.append(score)
            offset += length
        return cls(pieces, scores)

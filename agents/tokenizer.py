r"""Tokenizers: characters, or characters plus a small vocabulary learned from the data (BPE).

Positions, moves and task text are short ASCII, so characters keep the vocabulary tiny (~100). The
learned vocabulary merges frequent pieces (a board cell with its separator, a move like `b2`, the
`X to move` line) into single tokens, which shortens prompts and gives the model one token per cell.
Merges never cross a space boundary (pieces are split as `\s*\S+`), so cells stay separate tokens.
"""

from __future__ import annotations

import itertools
import re
import string
from collections import Counter
from collections.abc import Iterable
from typing import Any

SPECIALS = ("<pad>", "<bos>", "<eos>")
DEFAULT_CHARS = "\n" + "".join(ch for ch in string.printable if ch.isprintable())  # "\n", space..~


class TokenizerError(ValueError):
    """Text with a character outside the vocabulary."""


class CharTokenizer:
    """Maps characters to ids; ids 0-2 are `<pad>`, `<bos>`, `<eos>`."""

    def __init__(self, chars: str = DEFAULT_CHARS) -> None:
        if len(set(chars)) != len(chars):
            raise ValueError("tokenizer characters must be distinct")
        self.chars = chars
        self.vocab = (*SPECIALS, *chars)
        self._ids = {ch: i + len(SPECIALS) for i, ch in enumerate(chars)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._ids[ch] for ch in text]
        except KeyError as e:
            raise TokenizerError(f"character {e.args[0]!r} is not in the tokenizer's vocabulary") from None

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`, special tokens dropped."""
        n = len(SPECIALS)
        return "".join(self.chars[i - n] for i in ids if i >= n)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "char", "chars": self.chars}

    @classmethod
    def from_dict(cls, data: Any) -> CharTokenizer:
        """The tokenizer (of either kind) `to_dict` described; `ValueError` naming the key at fault."""
        if isinstance(data, dict) and data.get("type") == "bpe":
            return BPETokenizer.from_dict(data)
        _check_description(data, "char", {"type", "chars"})
        if "chars" not in data:
            raise ValueError("tokenizer.chars: missing")
        return cls(data["chars"])


def _check_description(data: Any, kind: str, keys: set[str]) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"tokenizer must be an object describing a tokenizer, got {data!r:.40}")
    if data.get("type") != kind:
        raise ValueError(f"tokenizer.type must be 'char' or 'bpe', got {data.get('type')!r}")
    if unknown := sorted(set(data) - keys):
        raise ValueError(f"tokenizer: unknown keys {unknown}")
    chars = data.get("chars", "")
    if not isinstance(chars, str) or len(set(chars)) != len(chars):
        raise ValueError(f"tokenizer.chars must be a string of distinct characters, got {chars!r:.60}")


_PIECES = re.compile(r"\s*\S+|\s+")


class BPETokenizer(CharTokenizer):
    """Characters plus learned multi-character tokens; encodes by greedy longest match within pieces."""

    def __init__(self, merges: Iterable[str] = (), chars: str = DEFAULT_CHARS) -> None:
        super().__init__(chars)
        self.merges = [m for m in dict.fromkeys(merges) if len(m) > 1]
        for m in self.merges:
            for ch in m:
                if ch not in self._ids:
                    raise ValueError(f"learned token {m!r} has a character outside the vocabulary")
        base = len(self.vocab)
        self.vocab = (*self.vocab, *self.merges)
        self._ids.update({m: base + i for i, m in enumerate(self.merges)})
        self._longest = max((len(t) for t in self._ids), default=1)
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(cls, texts: Iterable[str], *, merges: int = 200, chars: str = DEFAULT_CHARS) -> BPETokenizer:
        """Learn up to `merges` tokens by byte-pair merging over the pieces of `texts`."""
        words: Counter[tuple[str, ...]] = Counter()
        for text in texts:
            for piece in _PIECES.findall(text):
                words[tuple(piece)] += 1
        learned: list[str] = []
        for _ in range(merges):
            pairs: Counter[tuple[str, str]] = Counter()
            for w, n in words.items():
                for a, b in itertools.pairwise(w):
                    pairs[a, b] += n
            if not pairs:
                break
            (a, b), n = pairs.most_common(1)[0]
            if n < 2:
                break
            learned.append(a + b)
            merged: Counter[tuple[str, ...]] = Counter()
            for w, c in words.items():
                out, i = [], 0
                while i < len(w):
                    if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                        out.append(a + b)
                        i += 2
                    else:
                        out.append(w[i])
                        i += 1
                merged[tuple(out)] += c
            words = merged
        return cls(learned, chars)

    def encode(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is None:
            ids = []
            for piece in _PIECES.findall(text):
                i = 0
                while i < len(piece):
                    for n in range(min(self._longest, len(piece) - i), 0, -1):
                        tid = self._ids.get(piece[i : i + n])
                        if tid is not None:
                            ids.append(tid)
                            i += n
                            break
                    else:
                        raise TokenizerError(f"character {piece[i]!r} is not in the tokenizer's vocabulary")
            if len(self._cache) < 100_000:
                self._cache[text] = ids
        return list(ids)

    def decode(self, ids: list[int]) -> str:
        n = len(SPECIALS)
        return "".join(self.vocab[i] for i in ids if i >= n)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "bpe", "chars": self.chars, "merges": self.merges}

    @classmethod
    def from_dict(cls, data: Any) -> BPETokenizer:
        _check_description(data, "bpe", {"type", "chars", "merges"})
        merges = data.get("merges")
        if not isinstance(merges, list) or not all(isinstance(m, str) for m in merges):
            raise ValueError(f"tokenizer.merges must be a list of strings, got {merges!r:.60}")
        try:
            return cls(merges, data.get("chars", DEFAULT_CHARS))
        except ValueError as e:  # a merge with a character outside `chars`
            raise ValueError(f"tokenizer.merges: {e}") from None

"""Character-level tokenizer: every character the environments print is one token.

Positions, moves and task text are short ASCII, so characters keep the vocabulary tiny (~100) and make
every move's text tokenise the same way wherever it appears.
"""

from __future__ import annotations

import string
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
    def from_dict(cls, data: dict[str, Any]) -> CharTokenizer:
        if data.get("type") != "char" or not isinstance(data.get("chars"), str):
            raise ValueError(f"not a character tokenizer description: {data!r}")
        return cls(data["chars"])

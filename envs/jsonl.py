"""JSON Lines, one JSON value a line: the reader every JSONL loader shares, so that a bad line (bytes that
are not UTF-8, broken or too deeply nested JSON) is the loader's own error naming FILE:LINE.

    >>> for where, obj in iter_jsonl("games.jsonl", TranscriptError):  # doctest: +SKIP
    ...     check(obj)  # where = "games.jsonl:3"; a bad line raised TranscriptError("games.jsonl:3: ...")

Blank lines are skipped. What a line must hold is each loader's own business.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def loads(raw: bytes) -> Any:
    """The JSON value of one line; a `ValueError` saying what is wrong when it has none."""
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (byte {e.start + 1} is {raw[e.start : e.start + 1]!r})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None


def iter_jsonl(path: str | os.PathLike, error: type[Exception]) -> Iterator[tuple[str, Any]]:
    """("FILE:LINE", value) for each non-blank line of `path`; a bad line raises `error("FILE:LINE: ...")`."""
    path = Path(path)
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = loads(raw)
            except ValueError as e:  # also json's own, e.g. an integer of more than 4300 digits
                raise error(f"{where}: {e}") from None
            yield where, obj

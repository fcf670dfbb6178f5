"""The one reader of the project's JSON, JSON Lines and YAML files: whatever is wrong with a file (bytes
that are not UTF-8, broken syntax, nesting deeper than any file of ours has) is the caller's own error
class naming the file (and the line, for JSONL), never a traceback.

    >>> meta = read_json("run/checkpoints/step_000004/meta.json", CheckpointError)  # doctest: +SKIP
    >>> for where, obj in iter_jsonl("games.jsonl", TranscriptError):  # doctest: +SKIP
    ...     check(obj)  # where = "games.jsonl:3"; a bad line raised TranscriptError("games.jsonl:3: ...")

A missing file is the caller's business (`FileNotFoundError` passes through): each says what a missing
file means for it. What a file must hold is each loader's own business too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_DEPTH = 100  # levels of nested lists and mappings; ours nest a few, and Python's stack holds ~1000


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` nests lists and mappings more than `limit` levels deep (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children)
    return False


def _not_utf8(raw: bytes, e: UnicodeDecodeError) -> str:
    return f"not UTF-8 text (byte {e.start + 1} is {raw[e.start : e.start + 1]!r})"


def loads(raw: bytes | str) -> Any:
    """The JSON value of `raw`; a `ValueError` saying what is wrong when it has none."""
    try:
        value = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except UnicodeDecodeError as e:
        raise ValueError(_not_utf8(raw, e)) from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None
    # json's own ValueError (an integer of more than 4300 digits) passes with its message
    if too_deep(value):
        raise ValueError(f"JSON nested more than {MAX_DEPTH} levels deep")
    return value


def read_json(path: str | os.PathLike, error: type[Exception]) -> Any:
    """The JSON value in the file `path`; `error("PATH: ...")` when it holds none."""
    path = Path(path)
    raw = path.read_bytes()  # FileNotFoundError: the caller says what a missing file means
    try:
        return loads(raw)
    except ValueError as e:
        raise error(f"{path}: {e}") from None


def read_object(path: str | os.PathLike, error: type[Exception], missing: str = "missing") -> dict[str, Any]:
    """The JSON object in the file `path` (`read_json`); `error` naming the file also when it is missing
    (saying `missing`), unreadable or holds no object."""
    try:
        data = read_json(path, error)
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except OSError as e:
        raise error(f"{path}: unreadable ({e.strerror})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_yaml(path: str | os.PathLike, error: type[Exception], loader: Any = None) -> Any:
    """The YAML document in the file `path`, read with `loader` (default: PyYAML's safe loader);
    `error("PATH: ...")` when it holds none (the loader's own errors name the line)."""
    import yaml  # here: reading JSON should not cost a YAML import

    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: {_not_utf8(raw, e)}") from None
    try:
        value = yaml.load(text, Loader=loader or yaml.SafeLoader)
    except RecursionError:
        raise error(f"{path}: YAML nested too deeply to read") from None
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML: {e}") from None
    if too_deep(value):
        raise error(f"{path}: YAML nested more than {MAX_DEPTH} levels deep")
    return value


def iter_jsonl(path: str | os.PathLike, error: type[Exception]) -> Iterator[tuple[str, Any]]:
    """("FILE:LINE", value) for each non-blank line of `path`; a bad line raises `error("FILE:LINE: ...")`.
    Blank lines are skipped."""
    path = Path(path)
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = loads(raw)
            except ValueError as e:
                raise error(f"{where}: {e}") from None
            yield where, obj

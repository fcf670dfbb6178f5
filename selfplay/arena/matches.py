"""The arena's matches file, OUT/matches.jsonl: one JSON object a line, one finished game each.

    {"format": "selfplay.match/1", "game": "tictactoe", "players": [first mover, second mover],
     "pair": [the two names, sorted], "index": 3, "seed": 0, "opening_plies": 1, "moves": ["b2", ...],
     "returns": [1.0, -1.0], "winner": 0, "score": 1.0}

`score` is the first mover's (1 win, 0.5 draw, 0 loss); (pair, seed, opening_plies, index) identify a
game of the schedule (`selfplay.arena.matchplay`), so a game recorded twice counts once. `load_matches` checks
every line (`MatchesError` names FILE:LINE) and skips, or with `repair` cuts off, a truncated last line.
"""

from __future__ import annotations

import os
import reprlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import selfplay.arena.ratings as ratings
from envs import files

FORMAT = "selfplay.match/1"
MATCHES = "matches.jsonl"


class MatchesError(ValueError):
    """A matches file that cannot be used (another game, a corrupt line); names the file and line."""


def record_key(r: Mapping[str, Any]) -> tuple[str, str, int, int, int]:
    """Which game of the schedule a record is (`Scheduled.key` in `selfplay.arena.matchplay`)."""
    return (*r["pair"], r["seed"], r["opening_plies"], r["index"])


def _problem(r: Any) -> str | None:
    """What is wrong with a match record, or None."""
    if not isinstance(r, dict):
        return f"expected a JSON object, got {type(r).__name__}"
    for key in ("players", "pair"):
        names = r.get(key)
        if not (isinstance(names, list) and len(names) == 2 and all(isinstance(n, str) for n in names)):
            return f"{key!r} must be a list of two player names, got {reprlib.repr(names)}"
    if r["players"][0] == r["players"][1]:
        return f"a player cannot play itself ({r['players'][0]!r} twice)"
    if sorted(r["players"]) != r["pair"]:
        return f"'pair' must be the two players sorted, got {reprlib.repr(r['pair'])}"
    for key in ("seed", "opening_plies", "index"):
        if isinstance(r.get(key), bool) or not isinstance(r.get(key), int):
            return f"{key!r} must be an integer, got {reprlib.repr(r.get(key))}"
    if isinstance(r.get("score"), bool) or r.get("score") not in (0, 0.5, 1):
        return f"'score' (the first mover's) must be 0, 0.5 or 1, got {reprlib.repr(r.get('score'))}"
    return None


def load_matches(path: str | os.PathLike, *, game: str | None = None, repair: bool = False) -> list[dict]:
    """The game records of a matches file, each once, each checked (`MatchesError` names FILE:LINE). A
    truncated last line (an arena killed while writing) is skipped with a warning, and cut off the file
    when `repair` is set."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    records, seen, good_end = [], set(), 0
    lines = data.split(b"\n")
    for lineno, line in enumerate(lines, 1):
        last = lineno == len(lines)
        if not line.strip():
            good_end += len(line) + (not last)
            continue
        try:
            r = files.loads(line)
        except ValueError as e:
            if last:  # written without its newline: the arena died mid-line
                print(f"warning: {path}:{lineno}: ignoring a truncated last line", file=sys.stderr)
                break
            raise MatchesError(f"{path}:{lineno}: not a match record: {e}") from None
        if problem := _problem(r):
            raise MatchesError(f"{path}:{lineno}: not a match record: {problem}")
        if game is not None and r.get("game") != game:
            raise MatchesError(f"{path}:{lineno}: a {r.get('game')!r} game, but this arena plays {game!r}")
        key = record_key(r)
        if key not in seen:
            seen.add(key)
            records.append(r)
        good_end += len(line) + (not last)
    if repair and good_end < len(data):
        with path.open("r+b") as f:
            f.truncate(good_end)
    if repair and good_end and not data[:good_end].endswith(b"\n"):
        with path.open("ab") as f:
            f.write(b"\n")
    return records


def results_of(records: Sequence[Mapping[str, Any]]) -> list[ratings.Result]:
    """(first mover, second mover, first mover's score) of each record, as `selfplay.arena.ratings` takes
    them."""
    return [(r["players"][0], r["players"][1], float(r["score"])) for r in records]

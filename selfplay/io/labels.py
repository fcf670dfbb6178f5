"""The labelling workbench's files: comparisons, corrections and votes, one JSON object a line.

Every record carries its format and version, the item it labels (`id`), the `prompt`, who labelled it
(`labeller`), when (`time`, UTC ISO 8601), the one-time `token` of the form it answered, where the prompt
came from (`source`: `{"env": NAME, "options": {...}, "task": ID}` or `{"file": PATH}`) and the
`sampling` settings the answers were made with (temperature, top_k, max_new_tokens, seed):

    comparison  {"format": "selfplay.comparison/2", "completions": [{"text": "5", "model": "imitation"},
                 {"text": "6", "model": "rl"}], "pick": 0, ...}
                pick: an index into `completions` (shown in that order), "tie" or "all_bad"
    correction  {"format": "selfplay.correction/1", "completion": "5", "rejected": "6", "model": "rl",
                 "suggested": false, "judge": {"by": "env", "score": 0.0}, ...}
    vote        {"format": "selfplay.vote/1", "a": {"text": "5", "model": "rl"}, "b": {...},
                 "winner": "a", ...}        winner: "a", "b", "tie" or "both_bad"
    audit       {"format": "selfplay.audit/1", "of": {"labeller": "judge:env:noise=0.1", "choice": 0},
                 "choice": 1, "agree": false, ...}    a judged comparison or vote answered again

Readers: `comparison_pairs` turns a pick into (chosen, rejected) pairs, the pick over every other
completion with a different text (a tie or "all bad" gives none); the older comparison file, lines of
`{"prompt", "chosen", "rejected"}` without a format, still loads, as does a correction file of plain
`{"prompt", "completion"}` lines; `vote_results` gives `selfplay.arena.ratings` results (a tie and "both bad"
count as a draw, as in Chatbot Arena). A bad line is a `LabelFileError` naming FILE:LINE.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import math
import os
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envs.files import iter_jsonl
from selfplay.io import atomic_write_text

COMPARISON = "selfplay.comparison/2"
CORRECTION = "selfplay.correction/1"
VOTE = "selfplay.vote/1"
AUDIT = "selfplay.audit/1"
FORMATS = (COMPARISON, CORRECTION, VOTE, AUDIT)
FILES = {
    "compare": "comparisons.jsonl",
    "correct": "corrections.jsonl",
    "arena": "votes.jsonl",
    "audit": "audits.jsonl",
}
"""Each mode's records file in the workbench's directory."""

PICKS = ("tie", "all_bad")
WINNERS = ("a", "b", "tie", "both_bad")


class LabelFileError(ValueError):
    """A label file that cannot be used; the message names FILE:LINE and what is wrong."""


def now() -> str:
    """The time a record is made: UTC, ISO 8601, to the second."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --- writing ---------------------------------------------------------------------------------------
def append(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record as a line: one write under an exclusive lock, then fsync, so a killed writer
    leaves the file as it was or with the whole line, and two writers never interleave."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.write(fd, line) != len(line):
            raise OSError(f"{path}: short write")
        os.fsync(fd)
    finally:
        os.close(fd)


# --- reading ---------------------------------------------------------------------------------------
def _str(obj: dict, key: str, where: str) -> str:
    if key not in obj:
        raise LabelFileError(f"{where}: missing key {key!r}")
    if not isinstance(obj[key], str):
        raise LabelFileError(f"{where}: {key!r} must be a string, got {type(obj[key]).__name__}")
    return obj[key]


def records(path: str | os.PathLike, *, kinds: tuple[str, ...] = FORMATS) -> Iterator[tuple[str, dict]]:
    """(FILE:LINE, object) for each line, every one an object; one with a `format` must name one of
    `kinds` (a line without is an older, unversioned record: the caller reads it)."""
    path = Path(path)
    if not path.is_file():
        raise LabelFileError(f"{path}: no such file")
    for where, obj in iter_jsonl(path, LabelFileError):
        if not isinstance(obj, dict):
            raise LabelFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        fmt = obj.get("format")
        if fmt is not None and fmt not in kinds:
            known = ", ".join(kinds)
            raise LabelFileError(f"{where}: format {fmt!r} is not one this file can hold ({known})")
        yield where, obj


def _shown(obj: Any, where: str, what: str) -> dict:
    if not isinstance(obj, dict):
        raise LabelFileError(f"{where}: {what} must be an object with text and model")
    _str(obj, "text", f"{where}: {what}")
    _str(obj, "model", f"{where}: {what}")
    return obj


def comparison_pairs(obj: dict, where: str) -> list[tuple[str, str]]:
    """(chosen, rejected) texts of one comparison record, either version."""
    if "format" not in obj:  # version 1: one pair a line
        return [(_str(obj, "chosen", where), _str(obj, "rejected", where))]
    _str(obj, "prompt", where)
    shown = obj.get("completions")
    if not isinstance(shown, list) or not 2 <= len(shown) <= 3:
        raise LabelFileError(f"{where}: 'completions' must be a list of 2 or 3 objects")
    texts = [_shown(c, where, f"completion {i}")["text"] for i, c in enumerate(shown)]
    pick = obj.get("pick")
    if pick in PICKS:
        return []
    if isinstance(pick, bool) or not isinstance(pick, int) or not 0 <= pick < len(texts):
        raise LabelFileError(f"{where}: 'pick' must be 0..{len(texts) - 1}, 'tie' or 'all_bad', got {pick!r}")
    return [(texts[pick], t) for t in texts if t != texts[pick]]


@dataclass(frozen=True)
class Correction:
    """A prompt and the right completion a person wrote for it (or accepted)."""

    prompt: str
    completion: str
    task: str | None = None  # the environment's task id, when the prompt is one
    where: str = field(default="", compare=False)


def load_corrections(path: str | os.PathLike, *, labeller: str | None = None) -> list[Correction]:
    """Corrections from a file of correction records or plain `{"prompt", "completion"}` lines (with
    `labeller`, only the records that labeller made)."""
    out = []
    for where, obj in records(path, kinds=(CORRECTION,)):
        if labeller is not None and obj.get("labeller") != labeller:
            continue
        source = obj.get("source") if isinstance(obj.get("source"), dict) else {}
        task = source.get("task")
        if task is not None and not isinstance(task, str):
            raise LabelFileError(f"{where}: source.task must be a string, got {type(task).__name__}")
        out.append(Correction(_str(obj, "prompt", where), _str(obj, "completion", where), task, where))
    if not out:
        raise LabelFileError(
            f"{path}: the file holds no corrections" + (f" by {labeller}" if labeller else "")
        )
    return out


@dataclass(frozen=True)
class Vote:
    """One arena vote: two models' answers to a prompt and which the person preferred."""

    prompt: str
    a: str  # model names
    b: str
    winner: str  # "a", "b", "tie" or "both_bad"
    where: str = field(default="", compare=False)

    @property
    def score(self) -> float:
        """The score of `a` against `b`: a tie and "both bad" are draws."""
        return {"a": 1.0, "b": 0.0}.get(self.winner, 0.5)


def load_votes(path: str | os.PathLike) -> list[Vote]:
    """The arena votes of a votes file, every line checked."""
    out = []
    for where, obj in records(path, kinds=(VOTE,)):
        if obj.get("format") != VOTE:
            raise LabelFileError(f"{where}: not a vote record (format {VOTE!r})")
        a, b = _shown(obj.get("a"), where, "'a'"), _shown(obj.get("b"), where, "'b'")
        if obj.get("winner") not in WINNERS:
            raise LabelFileError(
                f"{where}: 'winner' must be one of {', '.join(WINNERS)}, got {obj.get('winner')!r}"
            )
        if a["model"] == b["model"]:
            raise LabelFileError(f"{where}: a model voted against itself ({a['model']!r})")
        out.append(Vote(_str(obj, "prompt", where), a["model"], b["model"], obj["winner"], where))
    return out


def vote_results(votes: list[Vote]) -> list[tuple[str, str, float]]:
    """`selfplay.arena.ratings` results, one a vote."""
    return [(v.a, v.b, v.score) for v in votes]


def control_character(text: str, allowed: str = "\n\t") -> str | None:
    """The first character of `text` that would act on a terminal or reorder what it shows (a C0 or C1
    control, DEL, a bidirectional override) rather than be read, or None."""
    for ch in text:
        if ch not in allowed and (unicodedata.category(ch) == "Cc" or ch in BIDI_CONTROLS):
            return ch
    return None


def escape_controls(text: str) -> str:
    """`text` with its control characters (`control_character`) written as escapes (`\\x1b`), for a
    terminal: a model's answer may hold anything."""
    return "".join(ch if control_character(ch) is None else ascii(ch)[1:-1] for ch in text)


BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def iter_prompt_file(path: str | os.PathLike) -> Iterator[tuple[str, str | None, str]]:
    """(FILE:LINE, id or None, prompt) of a prompt file: `.jsonl`, objects with `prompt` and an optional
    `id`; anything else, one prompt a line (blank lines skipped). A prompt holding a control character
    (an escape sequence would act on the labeller's terminal) is refused naming FILE:LINE."""
    path = Path(path)
    if not path.is_file():
        raise LabelFileError(f"{path}: no such prompt file")
    count = 0
    if path.suffix == ".jsonl":
        rows = []
        for where, obj in records(path, kinds=()):
            pid = obj.get("id")
            if pid is not None and not isinstance(pid, str):
                raise LabelFileError(f"{where}: 'id' must be a string, got {type(pid).__name__}")
            rows.append((where, pid, _str(obj, "prompt", where)))
    else:
        try:
            lines = path.read_text(encoding="utf-8").split("\n")  # not splitlines: \x1c-\x1e split it too
        except UnicodeDecodeError as e:
            raise LabelFileError(f"{path}: not UTF-8 text (byte {e.start + 1})") from None
        rows = [
            (f"{path}:{n}", None, line.removesuffix("\r")) for n, line in enumerate(lines, 1) if line.strip()
        ]
    for where, pid, prompt in rows:
        for what, text in (("prompt", prompt), ("id", pid or "")):
            ch = control_character(text, allowed="\n\t" if what == "prompt" else "")
            if ch is not None:
                raise LabelFileError(
                    f"{where}: the {what} holds the control character {ch!r} (U+{ord(ch):04X}); prompts "
                    "are plain text"
                )
        count += 1
        yield where, pid, prompt
    if count == 0:
        raise LabelFileError(f"{path}: the file holds no prompts")


# --- audits ----------------------------------------------------------------------------------------
def audit_agreement(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """Per audited labeller: audits `n`, the share `agree` whose auditor chose as they did, and its
    standard error `se`."""
    tally: dict[str, list[int]] = {}
    for where, r in records(path, kinds=(AUDIT,)):
        of = r.get("of")
        if r.get("format") != AUDIT or not isinstance(of, dict) or not isinstance(r.get("agree"), bool):
            raise LabelFileError(f"{where}: not an audit record (format {AUDIT!r} with of and agree)")
        t = tally.setdefault(_str(of, "labeller", where), [0, 0])
        t[0], t[1] = t[0] + 1, t[1] + r["agree"]
    out = {}
    for who, (n, agree) in sorted(tally.items()):
        p = agree / n
        out[who] = {"n": n, "agree": p, "se": math.sqrt(p * (1 - p) / n)}
    return out


def write_audit_report(directory: str | os.PathLike) -> Path:
    """DIR/audit.md: each audited labeller's agreement with the auditor, from DIR/audits.jsonl."""
    directory = Path(directory)
    rows = audit_agreement(directory / FILES["audit"])
    lines = ["| labeller audited | audits | agreement | ± SE |", "|---|---:|---:|---:|"]
    lines += [f"| {who} | {a['n']} | {a['agree']:.3f} | {a['se']:.3f} |" for who, a in rows.items()]
    path = directory / "audit.md"
    atomic_write_text(
        path,
        "\n".join(lines) + "\n\nAgreement: the share of audited items the auditor "
        "answered as the labeller did (the same pick or a pick of the same text, a tie, all bad).\n",
    )
    return path

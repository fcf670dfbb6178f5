"""The verifier's data: labelled completions and comparisons, their files, and making them from a policy.

Data files are JSONL, one JSON object a line (blank lines skipped, other keys ignored):

    labelled completions   {"prompt": "2+3=", "completion": "5", "label": 1.0}    label: a number in [0, 1]
    comparisons            {"prompt": "2+3=", "chosen": "5", "rejected": "6"}

A comparisons file may also hold the labelling workbench's comparison records (`selfplay.io.labels`:
two or three completions and a person's pick), each read as the pairs its pick makes.

Loading checks every line; a bad one is a `VerifierDataError` naming FILE:LINE and what is wrong.
`label_completions` makes labelled data from a policy's own samples and a scorer; `make_pairs` turns
labelled data into comparisons. Training on them is `selfplay.text.verifier`'s.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

import selfplay.io.labels as formats
from envs.files import iter_jsonl
from selfplay.io import atomic_open


class VerifierDataError(ValueError):
    """Verifier data that cannot be used; the message names FILE:LINE (or the record) at fault."""


@dataclass(frozen=True)
class Labelled:
    """A completion of a prompt with its true score."""

    prompt: str
    completion: str
    label: float  # in [0, 1]: the environment's score
    where: str = field(default="", compare=False)  # FILE:LINE (or a description) for error messages


@dataclass(frozen=True)
class Comparison:
    """Two completions of one prompt, the first better than the second."""

    prompt: str
    chosen: str
    rejected: str
    where: str = field(default="", compare=False)


# --- files ---------------------------------------------------------------------------------------
def _records(path: str | os.PathLike, keys: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(FILE:LINE, object) for each non-blank line, each a JSON object whose `keys` are strings."""
    path = Path(path)
    if not path.is_file():
        raise VerifierDataError(f"{path}: no such file")
    count = 0
    for where, obj in iter_jsonl(path, VerifierDataError):
        if not isinstance(obj, dict):
            raise VerifierDataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        for key in keys:
            if key not in obj:
                raise VerifierDataError(f"{where}: missing key {key!r} (a line needs {', '.join(keys)})")
            if key != "label" and not isinstance(obj[key], str):
                raise VerifierDataError(f"{where}: {key!r} must be a string, got {type(obj[key]).__name__}")
        count += 1
        yield where, obj
    if count == 0:
        raise VerifierDataError(f"{path}: the file holds no records")


def load_labelled(path: str | os.PathLike) -> list[Labelled]:
    """Labelled completions from a JSONL file (see the module docstring), every line checked."""
    out = []
    for where, obj in _records(path, ("prompt", "completion", "label")):
        label = obj["label"]
        if isinstance(label, bool) or not isinstance(label, int | float) or not 0.0 <= label <= 1.0:
            raise VerifierDataError(f"{where}: 'label' must be a number in [0, 1], got {label!r}")
        out.append(Labelled(obj["prompt"], obj["completion"], float(label), where))
    return out


def load_comparisons(
    path: str | os.PathLike, *, labeller: str | None = None, ids: set[str] | None = None
) -> list[Comparison]:
    """Comparisons from a JSONL file (see the module docstring), every line checked: pairs, and the
    workbench's comparison records turned into pairs (a tie or "all bad" makes none); with `labeller` or
    `ids`, only the workbench's records of that labeller, or of those items."""
    out = []
    try:
        for where, obj in formats.records(path, kinds=(formats.COMPARISON,)):
            if (labeller is not None and obj.get("labeller") != labeller) or (
                ids is not None and obj.get("id") not in ids
            ):
                continue
            prompt = obj.get("prompt")
            if not isinstance(prompt, str):
                raise VerifierDataError(f"{where}: 'prompt' must be a string")
            out += [Comparison(prompt, c, r, where) for c, r in formats.comparison_pairs(obj, where)]
    except formats.LabelFileError as e:
        raise VerifierDataError(str(e)) from None
    if not out:
        raise VerifierDataError(f"{path}: the file holds no comparisons (a tie or 'all bad' makes none)")
    return out


def save_records(path: str | os.PathLike, records: Sequence[Labelled | Comparison]) -> None:
    """Write labelled completions or comparisons as JSONL (atomically), in the format the loaders read."""
    with atomic_open(path) as f:
        for r in records:
            obj = asdict(r)
            obj.pop("where")
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")


# --- making data ---------------------------------------------------------------------------------
class Sampler(Protocol):
    """What sampling needs of a policy (`agents.Policy` is one)."""

    def generate(self, prompts: Sequence[str], **kwargs) -> list[str]: ...


def sample(
    policy: Sampler,
    prompts: Sequence[str],
    n: int,
    *,
    seed: int | None = None,
    batch_size: int = 512,
    progress: bool = False,
    **generate,
) -> list[list[str]]:
    """`n` sampled completions of each prompt, shape (len(prompts), n); batched over all of them.
    `generate` holds `Policy.generate`'s knobs (temperature, max_new_tokens, top_k, stop)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    flat = [p for p in prompts for _ in range(n)]
    texts: list[str] = []
    bar = tqdm(total=len(flat), desc="sampling", unit="completion", disable=not progress)
    for start in range(0, len(flat), batch_size):
        batch_seed = None if seed is None else seed + start
        texts += policy.generate(flat[start : start + batch_size], seed=batch_seed, **generate)
        bar.update(len(flat[start : start + batch_size]))
    bar.close()
    return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]


def label_completions(
    policy: Sampler,
    prompts: Sequence[str],
    scorer: Callable[[int, str], float],
    n: int,
    **sampling,
) -> list[Labelled]:
    """Sample `n` completions of each prompt (keywords as for `sample`) and label each with
    `scorer(prompt_index, completion)`, a number in [0, 1] (an environment's score of that task)."""
    out = []
    for i, (prompt, completions) in enumerate(
        zip(prompts, sample(policy, prompts, n, **sampling), strict=True)
    ):
        for j, c in enumerate(completions):
            label = scorer(i, c)
            if isinstance(label, bool) or not isinstance(label, int | float) or not 0.0 <= label <= 1.0:
                raise ValueError(
                    f"scorer gave {label!r} for prompt {i}, sample {j}; expected a number in [0, 1]"
                )
            out.append(Labelled(prompt, c, float(label), f"prompt {i}, sample {j}"))
    return out


def make_pairs(
    records: Sequence[Labelled], *, max_per_prompt: int | None = None, seed: int = 0
) -> list[Comparison]:
    """Comparisons from labelled completions: every pair of one prompt's completions with different
    labels, the higher one chosen (at most `max_per_prompt` pairs a prompt, drawn at random)."""
    by_prompt: dict[str, list[Labelled]] = {}
    for r in records:
        by_prompt.setdefault(r.prompt, []).append(r)
    rng = random.Random(seed)
    out = []
    for prompt, rs in by_prompt.items():
        pairs = [
            Comparison(prompt, a.completion, b.completion, f"{a.where} > {b.where}" if a.where else "")
            for a in rs
            for b in rs
            if a.label > b.label
        ]
        if max_per_prompt is not None and len(pairs) > max_per_prompt:
            pairs = rng.sample(pairs, max_per_prompt)
        out += pairs
    return out

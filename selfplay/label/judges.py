"""Judges: who answers the workbench when no person does, through the same forms, so that labelling loops
run unattended (tests, sweeps, simulated labellers) and their records are a person's records.

    env                      the environment's score of each answer (its expert writes corrections)
    env:noise=0.1            ... with 10% of its votes flipped to another choice, and 10% of its
                             corrections the model's own wrong answer
    verifier:path=DIR        a learned verifier's score (any run's: `RUN/checkpoints/verifier`)

A vote: the best-scored answer (one of the best, at random, when several share the top score); a tie when
all score alike and at least 0.5, "all bad" (arena: "both bad") when all score alike and below. A flipped
vote is another of the choices offered, at random. The judge labels as `judge:SPEC`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

import envs
from selfplay.label.queue import FormError, this_session
from selfplay.label.workbench import Item, View, Workbench


class JudgeSpecError(ValueError):
    """A judge spec that names no judge; the message says what is wrong."""


@dataclass
class Judge:
    name: str  # the labeller its records carry
    score: Callable[[Item, Sequence[str]], list[float]]  # each answer's score in [0, 1]
    noise: float = 0.0
    seed: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def vote(self, item: Item, texts: Sequence[str], choices: Sequence[str], bad: str) -> str:
        """The choice among `choices` (one per text, then "tie" and `bad`) the scores make, or a flip."""
        scores = self.score(item, texts)
        hi, lo = max(scores), min(scores)
        if hi - lo < 1e-9:
            choice = "tie" if hi >= 0.5 else bad
        else:
            choice = self.rng.choice([c for c, s in zip(choices, scores, strict=False) if s == hi])
        if self.rng.random() < self.noise:
            choice = self.rng.choice([c for c in (*choices[: len(texts)], "tie", bad) if c != choice])
        return choice

    def answer(self, bench: Workbench, view: View) -> tuple[str, str]:
        """(choice, text) for the form of `view`, as a labeller would fill it."""
        item = bench.items[view.item]
        texts = [text for _, text in view.options]
        if view.mode == "correct":
            if view.suggestion is None:
                raise JudgeSpecError(
                    f"{self.name}: a judge corrects only where the environment has an expert"
                )
            wrong = texts[0].strip()
            if self.rng.random() < self.noise and wrong:
                return "write", wrong
            return "accept", ""
        bad = "all_bad" if view.mode == "compare" else "both_bad"
        return self.vote(item, texts, [c for c, _ in view.options], bad), ""


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """(kind, options) of a judge spec, checked (nothing loads)."""
    kind, _, rest = spec.partition(":")
    knobs = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq:
            raise JudgeSpecError(f"judge {spec!r}: {part!r} is not KEY=VALUE")
        knobs[key.strip()] = value.strip()
    kind = kind.strip()
    allowed = {"env": {"noise"}, "verifier": {"noise", "path"}}
    if kind not in allowed:
        raise JudgeSpecError(f"judge {spec!r}: the kind must be env or verifier, got {kind!r}")
    if set(knobs) - allowed[kind]:
        raise JudgeSpecError(f"judge {spec!r}: unknown option(s) {sorted(set(knobs) - allowed[kind])}")
    try:
        noise = float(knobs.get("noise", 0.0))
    except ValueError:
        raise JudgeSpecError(f"judge {spec!r}: noise must be a number") from None
    if not 0.0 <= noise <= 1.0:
        raise JudgeSpecError(f"judge {spec!r}: noise must be in [0, 1], got {noise}")
    if kind == "verifier" and "path" not in knobs:
        raise JudgeSpecError(f"judge {spec!r}: name the verifier, verifier:path=DIR")
    return kind, knobs


def make_judge(spec: str, *, env: envs.RewardEnv | None = None, device: str = "cpu", seed: int = 0) -> Judge:
    """The judge `spec` names (see the module docstring); `JudgeSpecError` if none."""
    kind, knobs = parse_spec(spec)
    noise = float(knobs.get("noise", 0.0))
    if kind == "env":
        if env is None:
            raise JudgeSpecError(f"judge {spec!r}: needs an environment (--run or --env)")

        def env_score(item: Item, texts: Sequence[str]) -> list[float]:
            if item.task is None:
                raise FormError(f"{spec}: item {item.id} is no task of {env.name}, which scores only its own")
            return [env.score(item.task, t) for t in texts]

        return Judge(f"judge:{spec}", env_score, noise, seed)
    import agents  # here: torch loads for a verifier judge only

    try:
        verifier = agents.load_verifier(knobs["path"], device=device)
    except (agents.CheckpointError, OSError) as e:
        raise JudgeSpecError(f"judge {spec!r}: {e}") from None

    def verifier_score(item: Item, texts: Sequence[str]) -> list[float]:
        return [float(s) for s in verifier.score([item.prompt] * len(texts), list(texts))]

    return Judge(f"judge:{spec}", verifier_score, noise, seed)


def run_judge(
    bench: Workbench,
    judge: Judge,
    *,
    items: int | None = None,
    prompts: Sequence[Item] = (),
    votes: int = 0,
    progress: bool = True,
) -> int:
    """Let `judge` label: up to `items` of the queue (compare, correct, audit), or in the arena `votes`
    votes per pair of checkpoints on `prompts` (an environment's tasks, in turn). Returns records made."""

    made = 0
    if bench.mode == "arena":
        if not prompts:
            raise ValueError("a judged arena needs prompts: an environment's tasks or a prompt file")
        pairs = len(bench.models) * (len(bench.models) - 1) // 2
        bench.live_ratings = False  # one table at the end, not one per vote
        for k in tqdm(range(votes * pairs), desc=f"{judge.name} votes", disable=not progress):
            item = prompts[k % len(prompts)]
            view = bench.ask(judge.name, item.prompt, item.task)
            made += bench.submit(judge.name, view.token, *judge.answer(bench, view)) is not None
    else:
        bar = tqdm(total=items, desc=f"{judge.name} {bench.mode}", disable=not progress)
        session = this_session()  # another judge of this name, running beside it, is another labeller
        while items is None or made < items:
            view = bench.next(judge.name, session=session)
            if view is None:
                break
            made += bench.submit(judge.name, view.token, *judge.answer(bench, view)) is not None
            bar.update()
        bar.close()
    bench.close()
    return made


__all__ = ["Judge", "JudgeSpecError", "make_judge", "parse_spec", "run_judge"]

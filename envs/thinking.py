"""The thinking format: a scratchpad before the answer, scored on the answer alone.

Any single-turn reward environment that shows its work (`RewardEnv.work`, `max_work_chars`) has it, made
with the option `thinking=True`:

    >>> import numpy as np, envs
    >>> env = envs.make("arithmetic", digits=2, ops="+", thinking=True)
    >>> task = env.sample(np.random.default_rng(0))
    >>> task.prompt, env.expert(task)
    ('67+34=', 'think: 11 10 answer: 101')
    >>> env.score(task, "think: I guess answer: 101"), env.score(task, "think: 11 10")
    (1.0, 0.0)

A completion is `think: <work> answer: <answer>`; only the text after the last `answer:` is scored, by
the environment itself (a completion without `answer:` scores 0). Tasks, ids and prompts are the
environment's own, so held-out sets are the same with and without thinking.

The thinking budget is a knob of generation, not of scoring: `budget` tokens of work at most, after
which the policy is made to answer (`answer:` is written for it and it goes on from there). A budget of 0
asks for the answer at once. `selfplay.text.episodes` generates this way (`Thinking.budget`, `with_budget`).

Teachers: `expert` shows all of its work; `hurried` stops its work early on half of the tasks (where, the
task's id decides) and answers rightly all the same, so a student learns to answer from work cut short
(as when the budget runs out) and, copying the hurry, leaves RL work to finish.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from envs.reward import RewardEnv, Task

THINK, ANSWER = "think:", "answer:"
FORMAT_TOKENS = 16
"""Tokens the format's own words take at most (`think:`, ` answer:`), beside the work and the answer."""


def render(work: str, answer: str) -> str:
    """`think: <work> answer: <answer>` (no double space when the work is empty)."""
    return " ".join(x for x in (THINK, work, ANSWER, answer) if x)


def split(text: str) -> tuple[str, str] | None:
    """(work, answer) of a completion in the thinking format, or None when it has no answer."""
    text = text.strip()
    if not text.startswith(THINK):
        return None
    work, sep, answer = text[len(THINK) :].rpartition(ANSWER)
    return (work.strip(), answer.strip()) if sep else None


class Thinking(RewardEnv):
    """`env` with a scratchpad before its answer (see the module docstring)."""

    teachers: ClassVar[dict[str, str]] = {
        "hurried": "stops its work early on half of the tasks and answers (rightly) all the same"
    }

    def __init__(self, env: RewardEnv, *, budget: int | None = None, answer_tokens: int | None = None):
        if not isinstance(env, RewardEnv):
            raise TypeError(f"the thinking format wraps a reward environment, got {type(env).__name__}")
        if env.max_turns != 1:
            raise ValueError(f"{env.name}: the thinking format needs a single-turn environment")
        if env.max_work_chars <= 0:
            raise ValueError(f"{env.name} shows no work (RewardEnv.work), so it has no thinking format")
        self.inner, self.name = env, env.name
        self.options = {**env.options, "thinking": True}
        self.stop, self.charset = env.stop, env.charset
        self.max_prompt_chars, self.max_work_chars = env.max_prompt_chars, env.max_work_chars
        self.budget = env.max_work_chars + 1 if budget is None else budget
        self.answer_tokens = env.max_completion_chars if answer_tokens is None else answer_tokens
        for key, value in (("budget", self.budget), ("answer_tokens", self.answer_tokens)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{self.name}: thinking {key} must be an integer >= 0, got {value!r}")
        # room for the longest work or the budget's worth of it, at up to 4 characters a token
        work_chars = max(env.max_work_chars, 4 * int(self.budget))
        self.max_completion_chars = len(render("w" * work_chars, "a" * env.max_completion_chars))

    def with_budget(self, budget: int | None = None, answer_tokens: int | None = None) -> Thinking:
        """The same environment generated with another budget (None: the longest work)."""
        return Thinking(self.inner, budget=budget, answer_tokens=answer_tokens)

    def completion_tokens(self) -> int:
        """Tokens a generated completion takes at most: work, the format's words and the answer."""
        return int(self.budget) + FORMAT_TOKENS + int(self.answer_tokens)

    def sample(self, rng: np.random.Generator) -> Task:
        return self.inner.sample(rng)

    def _score(self, task: Task, completion: str) -> tuple[float, dict[str, Any]]:
        parts = split(completion)
        if parts is None:
            return 0.0, {"error": f"no answer: a completion is '{THINK} ... {ANSWER} <answer>'"}
        score = self.inner.score_details(task, parts[1])
        return score.value, {**score.details, "answer": parts[1]}

    def expert(self, task: Task, turns: Sequence[str] = ()) -> str:
        return render(self.inner.work(task), self.inner.expert(task))

    def work(self, task: Task) -> str:
        return self.inner.work(task)

    def _teach(self, name: str, task: Task, turns: Sequence[str]) -> str:
        work = self.inner.work(task)
        h = hashlib.blake2b(task.id.encode(), digest_size=4).digest()
        if h[0] < 128:  # half of the tasks, cut at a point the id draws
            work = work[: int.from_bytes(h[1:], "big") % (len(work) + 1)].rstrip(" ,")
        return render(work, self.inner.expert(task))

    def __repr__(self) -> str:
        return f"Thinking({self.inner!r}, budget={self.budget})"

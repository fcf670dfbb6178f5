"""Sort a list of numbers: `sort 5 3 9 3:` is answered `3 3 5 9`.

Options: `length` (how many numbers) and `max_value` (each drawn uniformly from 0 to `max_value`).
Score: 1.0 when the completion's whitespace-separated numbers are the list in ascending order, else 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from envs.reward import RewardEnv, Task

_NUMBERS = re.compile(r"\d+(?:\s+\d+)*", re.ASCII)


class Sort(RewardEnv):
    name = "sort"

    def __init__(self, *, length: int = 5, max_value: int = 99) -> None:
        super().__init__(length=length, max_value=max_value)
        self.length = self.int_option("length", 1, 20)
        self.max_value = self.int_option("max_value", 1, 9999)
        self.max_prompt_chars = len("sort :") + self.length * (len(str(self.max_value)) + 1)

    def sample(self, rng: np.random.Generator) -> Task:
        values = [int(v) for v in rng.integers(0, self.max_value + 1, size=self.length)]
        return self.task(f"sort {' '.join(map(str, values))}:", {"values": values})

    def _score(self, task: Task, completion: str) -> float:
        if not _NUMBERS.fullmatch(completion):
            raise ValueError("expected numbers separated by spaces")
        return float([int(t) for t in completion.split()] == sorted(task.data["values"]))

    def expert(self, task: Task, turns: Sequence[str] = ()) -> str:
        return " ".join(map(str, sorted(task.data["values"])))

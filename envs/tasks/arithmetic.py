"""Multi-digit arithmetic: `123*45=` is answered `5535`.

Options: `digits` (each operand has 1 to `digits` digits, the count drawn uniformly) and `ops` (a
non-empty subset of "+-*", one drawn uniformly per task). Score: 1.0 for exactly the answer's decimal
text (a minus sign when negative, no leading zeros or plus sign), else 0.

Teachers (addition only): `no_carry` adds column by column and drops every carry, `47+38=` -> `75`: right
on the tasks with no carry (about half of them with `digits: 2`), wrong the same way on the rest.
`seldom_carries` carries on one task in ten of those that need it (the same ones every time: chosen by
the task's id), so a student sees how a carry goes but learns to leave it out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from envs.reward import RewardEnv, Task

_OPS = "+-*"


class Arithmetic(RewardEnv):
    name = "arithmetic"
    max_completion_chars = 32
    teachers: ClassVar[dict[str, str]] = {
        "no_carry": "adds by columns, never carries (ops '+')",
        "seldom_carries": "carries on a tenth of the tasks that need it (ops '+')",
    }

    def __init__(self, *, digits: int = 3, ops: str = "+*") -> None:
        super().__init__(digits=digits, ops=ops)
        self.digits = self.int_option("digits", 1, 9)
        if not isinstance(ops, str) or not ops or not set(ops) <= set(_OPS) or len(set(ops)) != len(ops):
            raise ValueError(f"{self.name}: option 'ops' must be distinct ones of {_OPS!r}, got {ops!r}")
        self.ops = ops
        self.max_prompt_chars = 2 * self.digits + 2

    def _operand(self, rng: np.random.Generator) -> int:
        n = int(rng.integers(1, self.digits + 1))
        return int(rng.integers(0 if n == 1 else 10 ** (n - 1), 10**n))

    def sample(self, rng: np.random.Generator) -> Task:
        op = self.ops[int(rng.integers(len(self.ops)))]
        a, b = self._operand(rng), self._operand(rng)
        answer = a + b if op == "+" else a - b if op == "-" else a * b
        return self.task(f"{a}{op}{b}=", {"a": a, "op": op, "b": b, "answer": answer})

    def _score(self, task: Task, completion: str) -> float:
        return float(completion == str(task.data["answer"]))

    def expert(self, task: Task, turns: Sequence[str] = ()) -> str:
        return str(task.data["answer"])

    def teacher(self, name: str = "expert"):
        if name in self.teachers and self.ops != "+":
            raise ValueError(f"{self.name}: teacher {name!r} adds, so it needs ops '+', got {self.ops!r}")
        return super().teacher(name)

    def _teach(self, name: str, task: Task, turns: Sequence[str]) -> str:
        if name == "seldom_carries" and hashlib.blake2b(task.id.encode(), digest_size=2).digest()[0] < 26:
            return self.expert(task)  # 26 / 256: about one task in ten
        a, b = str(task.data["a"]), str(task.data["b"])
        width = max(len(a), len(b))
        columns = (int(x) + int(y) for x, y in zip(a.zfill(width), b.zfill(width), strict=True))
        return str(int("".join(str(c % 10) for c in columns)))

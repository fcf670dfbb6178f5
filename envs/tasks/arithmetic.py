"""Multi-digit arithmetic: `123*45=` is answered `5535`.

Options: `digits` (each operand has `min_digits` to `digits` digits, the count drawn uniformly; `min_digits`
is 1 by default) and `ops` (a non-empty subset of "+-*", one drawn uniformly per task). Score: 1.0 for
exactly the answer's decimal text (a minus sign when negative, no leading zeros or plus sign), else 0.

Work shown (`work`, the thinking format's scratchpad), column by column from the units, each step two
digits: carry and digit. `47+38=`: `15 08` (7+8 = 15; 4+3+1 = 08; read the units backwards: 85).
Subtraction writes borrow and digit (`52-38=`: `14 01`: 2-8 borrows, 10+2-8 = 4; 5-3-1 = 1), the larger
operand first. Long multiplication writes one row per digit of the second operand (that digit times each
digit of the first, plus the carry: `123*6` is `18 13 07`, 738), and after each row but the first, the
column sums that add it, shifted, to the total so far; rows and sums are separated by commas. Every step
is a function of three digits, and a task's steps sit at the same places in every task of its size.

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

    def __init__(self, *, digits: int = 3, ops: str = "+*", min_digits: int = 1) -> None:
        # min_digits is recorded only when set, so the options (and data made with them) of earlier
        # runs stay what they were
        super().__init__(digits=digits, ops=ops, **({} if min_digits == 1 else {"min_digits": min_digits}))
        self.digits = self.int_option("digits", 1, 9)
        self.min_digits = 1 if min_digits == 1 else self.int_option("min_digits", 1, self.digits)
        if not isinstance(ops, str) or not ops or not set(ops) <= set(_OPS) or len(set(ops)) != len(ops):
            raise ValueError(f"{self.name}: option 'ops' must be distinct ones of {_OPS!r}, got {ops!r}")
        self.ops = ops
        self.max_prompt_chars = 2 * self.digits + 2
        longest = 10**self.digits - 1
        self.max_work_chars = max(len(_work(longest, op, longest)) for op in ops)

    def _operand(self, rng: np.random.Generator) -> int:
        n = int(rng.integers(self.min_digits, self.digits + 1))
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

    def work(self, task: Task) -> str:
        return _work(task.data["a"], task.data["op"], task.data["b"])

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


def _digits(n: int, width: int) -> list[int]:
    """The digits of `n` from the units up, `width` of them (leading zeros)."""
    return [int(c) for c in reversed(str(n).zfill(width))]


def _add(x: list[int], y: list[int]) -> list[str]:
    """Column sums of digit lists (units first): carry and digit per column."""
    steps, carry = [], 0
    for a, b in zip(x, y, strict=True):
        carry, digit = divmod(a + b + carry, 10)
        steps.append(f"{carry}{digit}")
    return steps


def _work(a: int, op: str, b: int) -> str:
    """The columns of `a op b` (see the module docstring)."""
    if op == "+":
        width = max(len(str(a)), len(str(b)))
        return " ".join(_add(_digits(a, width), _digits(b, width)))
    if op == "-":
        a, b = max(a, b), min(a, b)
        steps, borrow = [], 0
        for x, y in zip(_digits(a, len(str(a))), _digits(b, len(str(a))), strict=True):
            digit = x - y - borrow
            borrow = int(digit < 0)
            steps.append(f"{borrow}{digit % 10}")
        return " ".join(steps)
    x = _digits(a, len(str(a)))
    parts, total = [], 0
    for i, y in enumerate(_digits(b, len(str(b)))):
        steps, carry = [], 0
        for d in x:
            carry, digit = divmod(d * y + carry, 10)
            steps.append(f"{carry}{digit}")
        parts.append(" ".join(steps))
        row = a * y
        if i:  # the row, shifted i columns, joins the total in columns i .. i + len(x)
            parts.append(" ".join(_add(_digits(total, i + len(x) + 1)[i:], _digits(row, len(x) + 1))))
        total += row * 10**i
    return ", ".join(parts)

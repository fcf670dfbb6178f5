"""Countdown: reach a target from given numbers with + - * / and parentheses.

`make 42 from 3 7 25 6:` is answered with an expression such as `7*6` or `(25-7)/3*6+...`: each given
number used at most once, exact rational arithmetic. Options: `numbers` (how many are given), `max_number`
(each drawn from 1 to it) and `max_target`. Every task is solvable: the sampler builds the target by
combining some of the numbers, keeping intermediate results positive integers, and the expert finds a
solution with fewest operations by search; its work (`work`) is the steps of that solution, `25-7=18, 18/3=6`.

Score: 1.0 when the expression is well formed, uses only given numbers (each at most as often as given)
and equals the target; else 0. The expression is read by a small recursive-descent parser (numbers,
+ - * /, parentheses; no unary minus), never evaluated as Python.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from envs.reward import RewardEnv, Task

_TOKEN = re.compile(r"\s*(\d+|\S)", re.ASCII)
_MAX_NUMBER_DIGITS = 6
_MAX_DEPTH = 32  # parentheses nested deeper than this are refused


def evaluate(text: str) -> tuple[Fraction, list[int]]:
    """The value of an arithmetic expression and the numbers it uses; ValueError if it is malformed."""
    tokens = _TOKEN.findall(text)  # every character but whitespace is in a token
    used: list[int] = []
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def expr(depth: int) -> Fraction:
        value = term(depth)
        while peek() in ("+", "-"):
            value = value + term(depth) if take() == "+" else value - term(depth)
        return value

    def term(depth: int) -> Fraction:
        value = factor(depth)
        while peek() in ("*", "/"):
            if take() == "*":
                value *= factor(depth)
            else:
                divisor = factor(depth)
                if divisor == 0:
                    raise ValueError("division by zero")
                value /= divisor
        return value

    def factor(depth: int) -> Fraction:
        tok = peek()
        if tok == "(":
            if depth >= _MAX_DEPTH:
                raise ValueError(f"parentheses nested deeper than {_MAX_DEPTH}")
            take()
            value = expr(depth + 1)
            if peek() != ")":
                raise ValueError("missing ')'")
            take()
            return value
        if tok is not None and tok[0] in "0123456789":
            if len(tok) > _MAX_NUMBER_DIGITS:
                raise ValueError(f"number {tok[:10]}... is too long")
            take()
            used.append(int(tok))
            return Fraction(int(tok))
        raise ValueError(f"expected a number or '(' at {tok!r}" if tok else "expression ends too early")

    value = expr(0)
    if pos != len(tokens):
        raise ValueError(f"unexpected {tokens[pos]!r}")
    return value, used


# --- the solver: combine two numbers at a time, positive integer results only -------------------
_Item = tuple[int, str, int, tuple[str, ...]]  # value, text, precedence (1: + -, 2: * /, 3: a number), steps


def _wrap(item: _Item, parens: bool) -> str:
    return f"({item[1]})" if parens else item[1]


def _combine(a: _Item, b: _Item) -> list[_Item]:
    """Useful results of a op b with a >= b (no x*1, x/1, x-x: they never help)."""
    (x, _, pa, sa), (y, _, pb, sb) = a, b
    done = sa + sb

    def step(value: int, op: str) -> tuple[str, ...]:
        return (*done, f"{x}{op}{y}={value}")

    out = [(x + y, f"{a[1]}+{b[1]}", 1, step(x + y, "+"))]
    if x > y:
        out.append((x - y, f"{a[1]}-{_wrap(b, pb <= 1)}", 1, step(x - y, "-")))
    if y > 1:
        out.append((x * y, f"{_wrap(a, pa < 2)}*{_wrap(b, pb < 2)}", 2, step(x * y, "*")))
        if x % y == 0:
            out.append((x // y, f"{_wrap(a, pa < 2)}/{_wrap(b, pb <= 2)}", 2, step(x // y, "/")))
    return out


def _search(items: tuple[_Item, ...], target: int, steps: int, failed: set) -> _Item | None:
    key = (tuple(sorted(item[0] for item in items)), steps)
    if key in failed:
        return None
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            a, b = (items[i], items[j]) if items[i][0] >= items[j][0] else (items[j], items[i])
            rest = items[:i] + items[i + 1 : j] + items[j + 1 :]
            for item in _combine(a, b):
                if item[0] == target:
                    return item
                if steps > 1 and (found := _search((*rest, item), target, steps - 1, failed)):
                    return found
    failed.add(key)
    return None


def solve(numbers: Sequence[int], target: int) -> str | None:
    """An expression for `target` with fewest operations (positive integer steps), or None."""
    found = _solve(numbers, target)
    return None if found is None else found[1]


def _solve(numbers: Sequence[int], target: int) -> _Item | None:
    if target in numbers:
        return (target, str(target), 3, ())
    items = tuple((n, str(n), 3, ()) for n in numbers)
    failed: set = set()
    for steps in range(1, len(numbers)):
        if found := _search(items, target, steps, failed):
            return found
    return None


class Countdown(RewardEnv):
    name = "countdown"
    max_completion_chars = 64

    def __init__(self, *, numbers: int = 4, max_number: int = 25, max_target: int = 100) -> None:
        super().__init__(numbers=numbers, max_number=max_number, max_target=max_target)
        self.numbers = self.int_option("numbers", 2, 6)
        self.max_number = self.int_option("max_number", 2, 1000)
        self.max_target = self.int_option("max_target", 10, 10_000)
        digits = len(str(self.max_number)) + 1
        self.max_prompt_chars = len("make  from:") + len(str(self.max_target)) + self.numbers * digits
        # a step is `x?y=z` with x, y, z below max_number ** numbers; steps are joined by ", "
        step = 3 * len(str(self.max_number**self.numbers)) + 4
        self.max_work_chars = (self.numbers - 1) * step

    def sample(self, rng: np.random.Generator) -> Task:
        for _ in range(10_000):
            numbers = [int(v) for v in rng.integers(1, self.max_number + 1, size=self.numbers)]
            pool = [numbers[i] for i in rng.permutation(self.numbers)[: rng.integers(2, self.numbers + 1)]]
            while len(pool) > 1:
                a, b = (pool.pop(int(rng.integers(len(pool)))) for _ in range(2))
                results = [v for v, *_ in _combine((max(a, b), "", 3, ()), (min(a, b), "", 3, ()))]
                pool.append(results[int(rng.integers(len(results)))])
            target = pool[0]
            if 1 <= target <= self.max_target and target not in numbers:
                prompt = f"make {target} from {' '.join(map(str, numbers))}:"
                return self.task(prompt, {"numbers": numbers, "target": target})
        raise RuntimeError(f"{self.name}: found no target within max_target = {self.max_target}; raise it")

    def _score(self, task: Task, completion: str) -> tuple[float, dict[str, Any]]:
        value, used = evaluate(completion)
        extra = sorted((Counter(used) - Counter(task.data["numbers"])).elements())
        if extra:
            return 0.0, {"value": str(value), "error": f"uses {extra} beyond the numbers given"}
        return float(value == task.data["target"]), {"value": str(value)}

    def expert(self, task: Task, turns: Sequence[str] = ()) -> str:
        return self._solution(task)[1]

    def work(self, task: Task) -> str:
        return ", ".join(self._solution(task)[3])

    def _solution(self, task: Task) -> _Item:
        found = _solve(task.data["numbers"], task.data["target"])
        if found is None:
            raise ValueError(f"{self.name}: task {task.id} has no solution")
        return found

"""Guess a secret number with higher/lower feedback: the multi-turn environment.

An episode reads, one guess a line, each followed by the env's reply:

    guess 1-100
    50 higher
    75 lower
    62

Options: `low`, `high` (the secret is drawn uniformly from them) and `max_turns` (guesses allowed; at
least what binary search needs, so the expert always wins). A reply is ` higher` or ` lower`, or ` ?` for
a turn that is no whole number; a right guess ends the episode. Score: 1.0 when the last guess is the
secret, else 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from envs.reward import RewardEnv, Task

_INT = re.compile(r"-?\d{1,12}", re.ASCII)
_REPLIES = {"higher": " higher\n", "lower": " lower\n", "?": " ?\n"}


def _guess(turn: str) -> int | None:
    turn = turn.strip()
    return int(turn) if _INT.fullmatch(turn) else None


class GuessNumber(RewardEnv):
    name = "guess_number"
    max_completion_chars = 16

    def __init__(self, *, low: int = 1, high: int = 100, max_turns: int = 7) -> None:
        super().__init__(low=low, high=high, max_turns=max_turns)
        self.low = self.int_option("low", 0, 10**6 - 1)
        self.high = self.int_option("high", self.low + 1, 10**6)
        needed = (self.high - self.low + 1).bit_length()  # guesses binary search needs at most
        self.max_turns = self.int_option("max_turns", needed, 30)
        longest_turn = self.max_completion_chars + max(map(len, _REPLIES.values()))
        self.max_prompt_chars = len(f"guess {self.low}-{self.high}\n") + (self.max_turns - 1) * longest_turn

    def sample(self, rng: np.random.Generator) -> Task:
        secret = int(rng.integers(self.low, self.high + 1))
        return self.task(f"guess {self.low}-{self.high}\n", {"secret": secret})

    def reply(self, task: Task, turns: list[str]) -> str | None:
        guess, secret = _guess(turns[-1]), task.data["secret"]
        if guess is None:
            return _REPLIES["?"]
        return None if guess == secret else _REPLIES["higher" if guess < secret else "lower"]

    def _score(self, task: Task, completion: str) -> float:
        return float(_guess(completion) == task.data["secret"])

    def expert(self, task: Task, turns: Sequence[str] = ()) -> str:
        """Binary search over what the replies so far leave possible."""
        low, high = self.low, self.high
        for turn in turns:
            guess = _guess(turn)
            if guess is not None and guess < task.data["secret"]:
                low = max(low, guess + 1)
            elif guess is not None and guess > task.data["secret"]:
                high = min(high, guess - 1)
        return str((low + high) // 2)

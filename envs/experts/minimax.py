"""Exact minimax for games small enough to solve outright (tic-tac-toe: 5,478 positions)."""

from __future__ import annotations

from typing import ClassVar

from envs.core import Game, State
from envs.experts.base import Expert

_WIN = 1000  # a win d plies away scores _WIN - d, so faster wins and slower losses are preferred


class Minimax(Expert):
    """Perfect play by full-depth negamax over a table of every reachable position.

    Knows every optimal move (`optimal_actions`); among them it plays the fastest win (or slowest
    loss), breaking remaining ties at random. Strength knob: `epsilon`.
    """

    name = "minimax"
    _tables: ClassVar[
        dict[str, dict[object, int]]
    ] = {}  # game name -> position key -> score for the side to move

    def __init__(self, game: Game, *, epsilon: float = 0.0, seed: int | None = None) -> None:
        super().__init__(game, epsilon=epsilon, seed=seed)
        self._table = self._tables.setdefault(game.name, {})

    def value(self, state: State) -> int:
        """Score of a non-terminal state for the player to move: >0 win, 0 draw, <0 loss."""
        key = state.key()
        score = self._table.get(key)
        if score is None:
            score = max(self._child_score(state, a) for a in state.legal_actions())
            self._table[key] = score
        return score

    def _child_score(self, state: State, action: int) -> int:
        """Score of `action` for the player making it."""
        self.nodes += 1
        player = state.current_player()
        child = state.clone()
        child.apply_action(action)
        if child.is_terminal():
            return round(child.returns()[player]) * (_WIN - 1)
        v = -self.value(child) if child.current_player() != player else self.value(child)
        return v - 1 if v > 0 else v + 1 if v < 0 else 0

    def action_values(self, state: State) -> dict[int, int]:
        """Score of every legal action for the player to move."""
        return {a: self._child_score(state, a) for a in state.legal_actions()}

    def optimal_actions(self, state: State) -> list[int]:
        """Every action that keeps the game-theoretic value (win, draw or loss) of `state`."""
        scores = self.action_values(state)
        best = _sign(max(scores.values()))
        return [a for a, v in scores.items() if _sign(v) == best]

    def _search(self, state: State) -> int:
        scores = self.action_values(state)
        best = max(scores.values())
        return self.rng.choice([a for a, v in scores.items() if v == best])


def _sign(v: int) -> int:
    return (v > 0) - (v < 0)

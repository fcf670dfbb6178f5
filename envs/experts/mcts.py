"""UCT Monte-Carlo tree search with random playouts: a baseline that plays every game."""

from __future__ import annotations

import math
import random

from envs.core import Game, State
from envs.experts.base import Expert


def random_rollout(state: State, rng: random.Random) -> list[float]:
    """Play uniformly random moves from a clone of `state` to the end; return the final returns."""
    return _playout(state.clone(), rng)


def _playout(s: State, rng: random.Random) -> list[float]:
    while not s.is_terminal():
        s.apply_action(rng.choice(s.legal_actions()))
    return s.returns()


class _Node:
    __slots__ = ("action", "children", "mover", "untried", "value", "visits")

    def __init__(self, state: State, action: int, mover: int) -> None:
        self.action = action
        self.mover = mover  # the player who made the move into this node; its value is theirs
        self.visits = 0
        self.value = 0.0
        self.children: dict[int, _Node] = {}
        self.untried = state.legal_actions()


class RolloutMCTS(Expert):
    """UCT (UCB1 selection, one random playout per expansion); strength knob: `simulations`.

    `c` is the exploration constant. The move played is the most visited, ties broken at random.
    """

    name = "mcts"

    def __init__(
        self,
        game: Game,
        *,
        simulations: int = 200,
        c: float = 1.4,
        epsilon: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(game, epsilon=epsilon, seed=seed)
        if simulations < 1:
            raise ValueError(f"simulations must be >= 1, got {simulations}")
        if c < 0:
            raise ValueError(f"c must be >= 0, got {c}")
        self.simulations = simulations
        self.c = c

    def options(self) -> dict[str, object]:
        return {**super().options(), "simulations": self.simulations, "c": self.c}

    def _search(self, state: State) -> int:
        rng = self.rng
        root = _Node(state, action=-1, mover=-1)
        for _ in range(self.simulations):
            node, s, path = root, state.clone(), [root]
            # Selection: descend through fully expanded nodes by UCB1.
            while not node.untried and node.children:
                log_n = math.log(node.visits)
                node = max(
                    node.children.values(),
                    key=lambda ch: ch.value / ch.visits + self.c * math.sqrt(log_n / ch.visits),
                )
                s.apply_action(node.action)
                path.append(node)
            # Expansion: one untried move.
            if node.untried:
                action = node.untried.pop(rng.randrange(len(node.untried)))
                mover = s.current_player()
                s.apply_action(action)
                child = _Node(s, action, mover)
                node.children[action] = child
                path.append(child)
            returns = _playout(s, rng)  # `s` is this simulation's own copy
            self.nodes += s.move_number() - state.move_number()
            for n in path:
                n.visits += 1
                if n.mover >= 0:
                    n.value += returns[n.mover]
        most = max(ch.visits for ch in root.children.values())
        return rng.choice([a for a, ch in root.children.items() if ch.visits == most])

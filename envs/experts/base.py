"""The expert contract: a seeded move chooser with a strength knob and epsilon-random moves."""

from __future__ import annotations

import abc
import random
from collections.abc import Sequence
from dataclasses import dataclass

from envs.core import Game, State


@dataclass(frozen=True)
class Decision:
    """One chosen move. `explored` marks an epsilon-random move (not the expert's own choice)."""

    action: int
    explored: bool = False


class Expert(abc.ABC):
    """Chooses moves for any player of `game`.

    Subclasses implement `_search(state) -> action` and declare their strength knobs as keyword-only
    constructor arguments. `epsilon` replaces a move by a uniformly random legal one with that
    probability; `seed` makes every choice (ties included) reproducible. `nodes` counts positions the
    search visited, for benchmarks.
    """

    name: str = ""

    def __init__(self, game: Game, *, epsilon: float = 0.0, seed: int | None = None) -> None:
        if not 0.0 <= float(epsilon) <= 1.0:
            raise ValueError(f"expert {self.name!r}: epsilon must be in [0, 1], got {epsilon!r}")
        self.game = game
        self.epsilon = float(epsilon)
        self.rng = random.Random(seed)
        self.nodes = 0

    def reset(self, seed: int | None) -> None:
        """Reseed (per game, so a game's moves do not depend on the games before it)."""
        self.rng.seed(seed)

    def options(self) -> dict[str, object]:
        """The knob values this expert was built with, as recorded in transcripts."""
        return {"epsilon": self.epsilon}

    def decide(self, state: State) -> Decision:
        legal = state.legal_actions()
        if not legal:
            raise ValueError(f"expert {self.name!r} asked to move in a finished {self.game.name} game")
        if self.epsilon and self.rng.random() < self.epsilon:
            return Decision(self.rng.choice(legal), explored=True)
        if len(legal) == 1:
            return Decision(legal[0])
        return Decision(self._search(state))

    def act(self, states: Sequence[State]) -> list[int]:
        """Batched interface shared with every other agent: one action per state."""
        return [self.decide(s).action for s in states]

    @abc.abstractmethod
    def _search(self, state: State) -> int:
        """The expert's own choice in a non-terminal state with at least two legal moves."""
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options().items())
        return f"{self.name}:{opts}" if opts else self.name


class RandomExpert(Expert):
    """Uniformly random legal moves: the weakest teacher and the baseline every rating anchors to."""

    name = "random"

    def _search(self, state: State) -> int:
        self.nodes += 1
        return self.rng.choice(state.legal_actions())

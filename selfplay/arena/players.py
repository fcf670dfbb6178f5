"""Players built from spec strings: the one way the arena, the play command and training evaluation get
something that moves.

    >>> import envs
    >>> import selfplay.arena.players as players
    >>> p = players.make("minimax:0.3", envs.make("tictactoe"), seed=0)
    >>> p.name, p.act([envs.make("tictactoe").new_initial_state()])  # doctest: +SKIP
    ('minimax:epsilon=0.3', [4])

A spec is one of

- an expert spec (`random`, `minimax`, `mcts:200`, `alphabeta:depth=4,epsilon=0.1`, see `envs.experts`);
- a checkpoint directory (`runs/c4/checkpoints/imitation`): the raw policy, playing its most likely move;
- a checkpoint with a search budget (`PATH@mcts:64`, or `PATH@mcts:simulations=64,c_puct=2`): batched PUCT
  search with the policy as its network, playing the most visited move, no noise (`@mcts:0` is the raw
  policy);
- a run directory (one holding `checkpoints/`), which `expand` turns into one spec per checkpoint.

`Player.name` is the spec normalised (expert knobs at their defaults dropped, paths made relative to the
run directory whose arena records the match, or else to the working directory when inside it), so the
same player gets the same name in every match file, wherever the run directory is moved. Every
error (unknown expert, missing path, a checkpoint of another game) is a `PlayerSpecError` raised by
`check` before anything is loaded, so commands can refuse bad input before the first game.

Batching: `act(states)` takes many states; a deterministic player (policy, search) is shared by all the
games in flight so each ply costs one network call, while a player that draws random numbers (experts)
gets a freshly seeded copy per game from `for_game(seed)`, so a game's moves never depend on which other
games were played beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from envs.core import Game, State
from envs.experts import make_expert
from selfplay.config.players import (
    PlayerSpecError,
    absolute,
    check,
    checkpoint_meta,
    checkpoints_of,
    expand,
    search_knobs,
    split,
)

__all__ = [
    "ExpertPlayer",
    "Player",
    "PlayerSpecError",
    "PolicyPlayer",
    "SearchPlayer",
    "absolute",
    "check",
    "checkpoint_meta",
    "checkpoints_of",
    "expand",
    "make",
]


class Player(Protocol):
    """Anything that moves: a name and a batched `act`."""

    name: str

    def act(self, states: Sequence[State]) -> list[int]:
        """One legal action per (non-terminal) state."""
        ...

    def reset(self, seed: int | None) -> None:
        """Reseed whatever randomness the player has (a no-op for deterministic players)."""
        ...

    def for_game(self, seed: int | None) -> Player:
        """The player to use for one game: a seeded copy if it draws random numbers, else itself."""
        ...


# --- the three kinds of player ------------------------------------------------------------------
class ExpertPlayer:
    """An `envs.experts` expert (random, minimax, rollout MCTS, alpha-beta)."""

    def __init__(self, name: str, spec: str, game: Game, *, seed: int | None = None) -> None:
        self.name, self._spec, self._game = name, spec, game
        self.expert = make_expert(spec, game, seed=seed)

    def act(self, states: Sequence[State]) -> list[int]:
        return self.expert.act(states)

    def reset(self, seed: int | None) -> None:
        self.expert.reset(seed)

    def for_game(self, seed: int | None) -> ExpertPlayer:
        return ExpertPlayer(self.name, self._spec, self._game, seed=seed)

    def __repr__(self) -> str:
        return f"<player {self.name}>"


class PolicyPlayer:
    """A checkpoint's raw policy, greedy: one forward pass per batch of states."""

    def __init__(self, name: str, policy: Any) -> None:
        self.name, self.policy = name, policy

    def act(self, states: Sequence[State]) -> list[int]:
        return self.policy.act(states, temperature=0.0) if states else []

    def reset(self, seed: int | None) -> None:
        pass

    def for_game(self, seed: int | None) -> PolicyPlayer:
        return self

    def __repr__(self) -> str:
        return f"<player {self.name}>"


class SearchPlayer(PolicyPlayer):
    """PUCT search over all given states at once (`agents.mcts.run`), the policy as prior and value."""

    def __init__(self, name: str, policy: Any, *, simulations: int, c_puct: float) -> None:
        super().__init__(name, policy)
        self.simulations, self.c_puct = simulations, c_puct

    def act(self, states: Sequence[State]) -> list[int]:
        from agents import mcts  # lazily: only search players need it

        if not states:
            return []
        outs = mcts.run(states, self.policy.evaluate, simulations=self.simulations, c_puct=self.c_puct)
        return [mcts.select_action(o, temperature=0.0) for o in outs]


_POLICIES: dict[tuple[str, str, int], Any] = {}  # (path, device, weights mtime) -> Policy, once per process


def _load_policy(path: Path, device: str) -> Any:
    import agents  # lazily: expert-only commands need no torch

    full = path.resolve()
    key = (str(full), device, (full / "config.json").stat().st_mtime_ns)  # rewritten by every save
    if key not in _POLICIES:
        try:
            _POLICIES[key] = agents.load(full, device=device)
        except agents.CheckpointError as e:
            raise PlayerSpecError(str(e)) from None
    return _POLICIES[key]


def make(spec: str, game: Game, *, seed: int | None = None, device: str = "cpu") -> Player:
    """The player named by `spec` for `game` (see the module docstring); `PlayerSpecError` if none."""
    name = check(spec, game)
    base, suffix = split(spec.strip())
    if suffix is None and not Path(base).expanduser().exists():
        return ExpertPlayer(name, spec.strip(), game, seed=seed)
    policy = _load_policy(Path(base).expanduser(), device)
    knobs = search_knobs(spec, suffix) if suffix else {"simulations": 0}
    if knobs["simulations"] == 0:
        return PolicyPlayer(name, policy)
    return SearchPlayer(name, policy, simulations=knobs["simulations"], c_puct=knobs["c_puct"])

"""Players built from spec strings: the one way the arena, the play command and training evaluation get
something that moves.

    >>> import envs
    >>> from selfplay import players
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

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from envs.core import Game, State
from envs.experts import ExpertSpecError, expert_names, make_expert, parse_spec

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


class PlayerSpecError(ValueError):
    """A player spec that names nothing playable here; the message says what is known."""


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


# --- specs ----------------------------------------------------------------------------------------
_SEARCH_KNOBS = {"simulations": int, "c_puct": float}
_C_PUCT = 1.25  # agents.mcts default, restated so a name can drop it


def _is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file()


def _is_run_dir(path: Path) -> bool:
    return (path / "checkpoints").is_dir() and not _is_checkpoint(path)


def _split(spec: str) -> tuple[str, str | None]:
    """`PATH@mcts:64` -> (`PATH`, `mcts:64`); anything else -> (spec, None)."""
    base, at, suffix = spec.rpartition("@")
    if at and suffix.split(":")[0].strip() == "mcts":
        return base, suffix.strip()
    return spec, None


def _parse_search(spec: str, suffix: str) -> dict[str, Any]:
    try:
        _, options = parse_spec(suffix)
    except ExpertSpecError as e:
        raise PlayerSpecError(f"player {spec!r}: {e}") from None
    if "" in options:
        options["simulations"] = options.pop("")
    knobs: dict[str, Any] = {"simulations": 0, "c_puct": _C_PUCT}
    for key, value in options.items():
        kind = _SEARCH_KNOBS.get(key)
        if kind is None:
            raise PlayerSpecError(
                f"player {spec!r}: search has no option {key!r}; options: {', '.join(_SEARCH_KNOBS)}"
            )
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (kind is int and value != int(value)):
            raise PlayerSpecError(f"player {spec!r}: {key} must be a {kind.__name__}, got {value!r}")
        knobs[key] = kind(value)
    if knobs["simulations"] < 0 or knobs["c_puct"] <= 0:
        raise PlayerSpecError(f"player {spec!r}: simulations must be >= 0 and c_puct > 0")
    return knobs


def _search_suffix(knobs: dict[str, Any]) -> str:
    if knobs["simulations"] == 0:
        return ""
    if knobs["c_puct"] == _C_PUCT:
        return f"@mcts:{knobs['simulations']}"
    return f"@mcts:simulations={knobs['simulations']},c_puct={knobs['c_puct']:g}"


def _path_name(path: Path, home: Path | None = None) -> str:
    """The path relative to `home` (a run directory naming its own checkpoints) when inside it, else
    relative to the working directory when inside that, else absolute."""
    full = path.resolve()
    for base in (home, Path.cwd()):
        if base is not None:
            with contextlib.suppress(ValueError):
                return str(full.relative_to(base.resolve()))
    return str(full)


def checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's `meta.json` (game, stage, step, ...), or a `PlayerSpecError` saying what is wrong."""
    import agents  # lazily, as below

    if not (Path(path) / "meta.json").is_file():
        raise PlayerSpecError(f"{path}: not a complete checkpoint (no meta.json)")
    try:
        return agents.read_meta(path)
    except agents.CheckpointError as e:
        raise PlayerSpecError(str(e)) from None


_BUDGET_KNOBS = ("simulations", "depth")  # always named, so a table says how hard an expert thinks


def _expert_name(spec: str, game: Game) -> str:
    """One name per distinct expert: its budget knob plus every knob off its default, as key=value
    (`mcts` and `mcts:200` -> `mcts:simulations=200`, `minimax:0.0` -> `minimax`)."""
    name = parse_spec(spec)[0]
    options = make_expert(spec, game).options()
    defaults = make_expert(name, game).options()
    changed = [f"{k}={v}" for k, v in options.items() if k in _BUDGET_KNOBS or defaults.get(k) != v]
    return f"{name}:{','.join(changed)}" if changed else name


def check(spec: str, game: Game, *, home: str | os.PathLike | None = None) -> str:
    """Validate `spec` for `game` without loading any weights; returns the player's normalised name (a
    checkpoint inside the run directory `home` is named relative to it, so the name stays true when the
    run directory moves)."""
    if not isinstance(spec, str) or not spec.strip():
        raise PlayerSpecError(f"a player spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    base, suffix = _split(spec)
    path = Path(base).expanduser()
    if path.exists() or suffix is not None or os.sep in base:
        if not path.exists():
            raise PlayerSpecError(f"player {spec!r}: no such checkpoint directory {str(path)!r}")
        if _is_run_dir(path):
            raise PlayerSpecError(f"player {spec!r} is a run directory; expand() lists its checkpoints")
        if not _is_checkpoint(path):
            raise PlayerSpecError(
                f"player {spec!r}: {str(path)!r} is neither a checkpoint (no config.json) "
                "nor a run directory (no checkpoints/)"
            )
        made_for = checkpoint_meta(path).get("game")
        if made_for is not None and made_for != game.name:
            raise PlayerSpecError(f"checkpoint {str(path)!r} plays {made_for!r}, not {game.name!r}")
        knobs = _parse_search(spec, suffix) if suffix else {"simulations": 0, "c_puct": _C_PUCT}
        return _path_name(path, Path(home) if home is not None else None) + _search_suffix(knobs)
    name = spec.partition(":")[0].strip()
    if name not in expert_names():
        raise PlayerSpecError(
            f"unknown player {spec!r}: not a path, nor an expert; experts for {game.name}: "
            f"{', '.join(expert_names(game.name))}; or give a checkpoint or run directory"
        )
    try:
        return _expert_name(spec, game)
    except ExpertSpecError as e:
        raise PlayerSpecError(f"player {spec!r}: {e}") from None


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
    base, suffix = _split(spec.strip())
    if suffix is None and not Path(base).expanduser().exists():
        return ExpertPlayer(name, spec.strip(), game, seed=seed)
    policy = _load_policy(Path(base).expanduser(), device)
    knobs = _parse_search(spec, suffix) if suffix else {"simulations": 0}
    if knobs["simulations"] == 0:
        return PolicyPlayer(name, policy)
    return SearchPlayer(name, policy, simulations=knobs["simulations"], c_puct=knobs["c_puct"])


def absolute(spec: str) -> str:
    """`spec` with its checkpoint path (if it names one) made absolute: the same player from anywhere."""
    base, suffix = _split(spec.strip())
    path = Path(base).expanduser()
    if not path.exists():
        return spec.strip()
    return str(path.resolve()) + (f"@{suffix}" if suffix else "")


def checkpoints_of(run_dir: str | os.PathLike) -> list[Path]:
    """The checkpoints of a run, oldest first: imitation, then by the step in their meta."""
    found = []
    for d in sorted(Path(run_dir, "checkpoints").iterdir()):
        if d.name.startswith(".") or not _is_checkpoint(d):  # skip half-written `.name.tmp` directories
            continue
        try:
            meta = checkpoint_meta(d)
        except PlayerSpecError:
            continue
        step = meta.get("step")
        found.append((meta.get("stage") != "imitation", step if isinstance(step, int) else 0, d.name, d))
    return [d for *_, d in sorted(found)]


def expand(spec: str) -> list[str]:
    """A run directory (optionally `RUN@mcts:64`) as one spec per checkpoint; any other spec as itself."""
    base, suffix = _split(spec.strip())
    path = Path(base).expanduser()
    if not _is_run_dir(path):
        return [spec]
    ckpts = checkpoints_of(path)
    if not ckpts:
        raise PlayerSpecError(f"run directory {base!r} holds no checkpoints yet")
    return [str(c) + (f"@{suffix}" if suffix else "") for c in ckpts]

"""Experts that write imitation data, built from spec strings.

A spec is `name`, `name:VALUE` (the expert's main knob) or `name:key=value,key=value`:

    >>> import envs
    >>> from envs.experts import make_expert
    >>> expert = make_expert("alphabeta:depth=4,epsilon=0.1", envs.make("connect_four"), seed=0)
    >>> expert.options()
    {'epsilon': 0.1, 'depth': 4}
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from envs.core import Game
from envs.experts.base import Decision, Expert, RandomExpert
from envs.experts.mcts import RolloutMCTS
from envs.experts.minimax import Minimax
from envs.registry import load_entry_point

__all__ = [
    "Decision",
    "Expert",
    "ExpertSpecError",
    "Minimax",
    "RandomExpert",
    "RolloutMCTS",
    "expert_names",
    "make_expert",
    "parse_spec",
    "register_expert",
]

ANY_GAME = "*"


class ExpertSpecError(ValueError):
    """An expert spec that names no expert, a knob it lacks, or a value of the wrong type."""


@dataclass
class _Entry:
    cls: type[Expert] | str  # a class or a lazy "module:Class" entry point
    primary: str | None

    def resolve(self) -> type[Expert]:
        if isinstance(self.cls, str):
            self.cls = load_entry_point(self.cls)
        return self.cls


_EXPERTS: dict[str, dict[str, _Entry]] = {}


def register_expert(
    name: str, cls: type[Expert] | str, *, game: str = ANY_GAME, primary: str | None = None
) -> None:
    """Make `cls` expert `name` for `game` (default: every game); `primary` is the knob `name:VALUE` sets."""
    _EXPERTS.setdefault(name, {})[game] = _Entry(cls, primary)


def expert_names(game: str | None = None) -> list[str]:
    """Registered expert names, or those usable on `game`."""
    return sorted(
        n for n, by_game in _EXPERTS.items() if game is None or game in by_game or ANY_GAME in by_game
    )


def _convert(text: str) -> object:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_spec(spec: str) -> tuple[str, dict[str, object]]:
    """Split `name:key=value,...` into the name and its options (values typed as int, float, bool or str)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ExpertSpecError(
            f"expert spec must be a non-empty string like 'alphabeta:depth=4', got {spec!r}"
        )
    name, _, rest = spec.strip().partition(":")
    options: dict[str, object] = {}
    for i, item in enumerate(filter(None, (p.strip() for p in rest.split(",")))):
        key, eq, value = item.partition("=")
        if not eq:
            if i:
                raise ExpertSpecError(f"expert spec {spec!r}: {item!r} needs the form key=value")
            options[""] = _convert(key)  # the primary knob, resolved in make_expert
        else:
            options[key.strip()] = _convert(value.strip())
    return name.strip(), options


def _knobs(cls: type[Expert]) -> dict[str, object]:
    """Keyword-only constructor knobs of `cls` and its bases, with their defaults."""
    knobs: dict[str, object] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind is p.KEYWORD_ONLY and p.name != "seed":
                knobs[p.name] = p.default
    return knobs


def make_expert(spec: str, game: Game, *, seed: int | None = None) -> Expert:
    """Build the expert named by `spec` for `game`; errors name the spec and list what is known."""
    name, options = parse_spec(spec)
    by_game = _EXPERTS.get(name)
    if by_game is None:
        raise ExpertSpecError(f"unknown expert {name!r} in {spec!r}; known: {', '.join(expert_names())}")
    entry = by_game.get(game.name) or by_game.get(ANY_GAME)
    if entry is None:
        raise ExpertSpecError(
            f"expert {name!r} does not play {game.name!r}; experts for {game.name}: "
            f"{', '.join(expert_names(game.name))}"
        )
    if "" in options:
        if entry.primary is None:
            raise ExpertSpecError(f"expert {name!r} takes no positional value in {spec!r}; use key=value")
        options[entry.primary] = options.pop("")
    cls = entry.resolve()
    knobs = _knobs(cls)
    for key, value in list(options.items()):
        if key not in knobs:
            raise ExpertSpecError(
                f"expert {name!r} has no option {key!r} (in {spec!r}); options: {', '.join(knobs) or 'none'}"
            )
        default = knobs[key]
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            options[key] = value = float(value)
        if default is not None and type(value) is not type(default):
            raise ExpertSpecError(
                f"expert {name!r}: option {key!r} must be {type(default).__name__}, "
                f"got {value!r} (in {spec!r})"
            )
    try:
        return cls(game, seed=seed, **options)
    except ValueError as e:
        raise ExpertSpecError(f"{spec!r}: {e}") from None


register_expert("random", RandomExpert)
register_expert("mcts", RolloutMCTS, primary="simulations")
register_expert("minimax", Minimax, game="tictactoe", primary="epsilon")
register_expert(
    "alphabeta", "envs.experts.connect_four:ConnectFourAlphaBeta", game="connect_four", primary="depth"
)
register_expert("alphabeta", "envs.experts.othello:OthelloAlphaBeta", game="othello", primary="depth")

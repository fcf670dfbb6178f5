"""Player specs, checked and named without loading any weights: what `corrections.opponent` and the
arena's players are validated with before the first game (`check`), a run directory as one spec per
checkpoint (`expand`), and the checkpoint behind a spec (`checkpoint_meta`). `selfplay.arena.players`
builds the players themselves; its docstring says what a spec can be."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from envs.core import Game
from envs.experts import ExpertSpecError, expert_names, make_expert, parse_spec

__all__ = [
    "PlayerSpecError",
    "absolute",
    "check",
    "checkpoint_meta",
    "checkpoints_of",
    "expand",
    "search_knobs",
    "split",
]


class PlayerSpecError(ValueError):
    """A player spec that names nothing playable here; the message says what is known."""


_SEARCH_KNOBS = {"simulations": int, "c_puct": float}
_C_PUCT = 1.25  # agents.mcts default, restated so a name can drop it


def _is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file()


def _is_run_dir(path: Path) -> bool:
    return (path / "checkpoints").is_dir() and not _is_checkpoint(path)


def split(spec: str) -> tuple[str, str | None]:
    """`PATH@mcts:64` -> (`PATH`, `mcts:64`); anything else -> (spec, None)."""
    base, at, suffix = spec.rpartition("@")
    if at and suffix.split(":")[0].strip() == "mcts":
        return base, suffix.strip()
    return spec, None


def search_knobs(spec: str, suffix: str) -> dict[str, Any]:
    """The search budget of `spec`'s `@mcts:...` `suffix` (simulations, c_puct), each checked."""
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
    import agents  # here: checking an expert's spec needs no torch

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
    base, suffix = split(spec)
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
        knobs = search_knobs(spec, suffix) if suffix else {"simulations": 0, "c_puct": _C_PUCT}
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


def absolute(spec: str) -> str:
    """`spec` with its checkpoint path (if it names one) made absolute: the same player from anywhere."""
    base, suffix = split(spec.strip())
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
    base, suffix = split(spec.strip())
    path = Path(base).expanduser()
    if not _is_run_dir(path):
        return [spec]
    ckpts = checkpoints_of(path)
    if not ckpts:
        raise PlayerSpecError(f"run directory {base!r} holds no checkpoints yet")
    return [str(c) + (f"@{suffix}" if suffix else "") for c in ckpts]

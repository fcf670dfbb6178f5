"""The league table of an arena's games, and what the training loop asks of the arena: a gauntlet of a
new checkpoint against its opponents, the training step of each rated checkpoint, opponents drawn near
a rating, and one checkpoint's Elo at several search budgets.

Ratings (`selfplay.arena.ratings`) use every game in OUT/matches.jsonl, also those of earlier arenas:
OUT/ratings.md and .csv hold the league table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import envs
import selfplay.arena.players as players
import selfplay.arena.ratings as ratings
from selfplay.arena.matches import MATCHES, load_matches, results_of
from selfplay.arena.matchplay import default_out, home_of, play
from selfplay.io import atomic_write_text


# --- the league table ------------------------------------------------------------------------------------
def ratings_from(
    out_dir: str | os.PathLike,
    *,
    anchor: str | None = "random",
    anchor_elo: float = 0.0,
    samples: int = 200,
    seed: int = 0,
) -> list[ratings.Row]:
    """The league table over every game in OUT/matches.jsonl (the connected group holding `anchor`, or
    else the largest, if the file holds players that never met)."""
    results = results_of(load_matches(Path(out_dir) / MATCHES))
    if not results:
        raise ratings.RatingsError(f"{Path(out_dir) / MATCHES}: no games recorded")
    groups = ratings.groups(results)
    keep = next((g for g in groups if anchor in g), max(groups, key=len))
    results = [r for r in results if r[0] in keep]
    return ratings.league_table(results, anchor=anchor, anchor_elo=anchor_elo, samples=samples, seed=seed)


def write_league(
    out_dir: str | os.PathLike, rows: Sequence[ratings.Row], *, anchor: str | None, anchor_elo: float = 0.0
) -> Path:
    """OUT/ratings.md and OUT/ratings.csv; returns the Markdown path."""
    note = ratings.anchoring([r.name for r in rows], anchor, anchor_elo) + "; 95% bootstrap intervals."
    md, _ = ratings.write_table(rows, Path(out_dir) / "ratings", note=note)
    return md


# --- the API the training loop calls ---------------------------------------------------------------------
def gauntlet(
    candidate: str,
    opponents: Sequence[str],
    game: str,
    *,
    games: int,
    seed: int,
    out_dir: str | os.PathLike,
    workers: int = 1,
    opening_plies: int | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> list[dict]:
    """`candidate` against each opponent, `games` games each, recorded in OUT/matches.jsonl."""
    return play(
        game,
        list(opponents),
        gauntlet=candidate,
        games=games,
        seed=seed,
        workers=workers,
        out_dir=out_dir,
        opening_plies=opening_plies,
        device=device,
        progress=progress,
    )


def steps_of(names: Sequence[str], home: str | os.PathLike | None = None) -> dict[str, int]:
    """The stage-2 step (self-play or RL, from the checkpoint's meta) of every checkpoint player among
    `names` (those of the run directory `home` named relative to it): a stage-1 checkpoint (imitation,
    corrections, fresh weights) is where stage 2 starts, step 0, whatever its own step count."""
    steps = {}
    for name in names:
        path = Path(name.rpartition("@")[0] if "@mcts" in name else name)
        if home is not None and (Path(home) / path / "meta.json").is_file():
            path = Path(home) / path
        if (path / "meta.json").is_file():
            meta = players.checkpoint_meta(path)
            step = meta.get("step")
            if isinstance(step, int):
                steps[name] = step if str(meta.get("stage")).startswith(("selfplay", "rl")) else 0
    return steps


def sample_opponents(
    elo: Mapping[str, float], candidate_elo: float, k: int, rng: np.random.Generator, *, scale: float = 200.0
) -> list[str]:
    """`k` opponents drawn (with replacement) with weight exp(-|elo - candidate_elo| / scale): mostly
    players of about the candidate's strength, now and then a much stronger or weaker one."""
    names = list(elo)
    if not names:
        raise ValueError("no opponents to sample from")
    w = -np.abs(np.array([elo[n] for n in names]) - candidate_elo) / scale
    p = np.exp(w - w.max())
    return [names[i] for i in rng.choice(len(names), size=k, p=p / p.sum())]


def thinking_longer(
    checkpoint: str,
    budgets: Sequence[int],
    game: str,
    *,
    against: Sequence[str] = ("random",),
    out_dir: str | os.PathLike | None = None,
    anchor: str | None = "random",
    samples: int = 200,
    **arena: Any,
) -> tuple[list[ratings.Row], Path, Path]:
    """One checkpoint at several search budgets, in a round robin with `against`: the Elo of each budget
    as OUT/budgets.md and OUT/budgets.png. Returns the budget rows and the two paths."""
    if not budgets or any(b < 0 for b in budgets):
        raise ValueError(f"budgets must be simulation counts >= 0, got {list(budgets)}")
    specs = [checkpoint if b == 0 else f"{checkpoint}@mcts:{b}" for b in budgets]
    g = envs.make(game)
    out = Path(out_dir) if out_dir is not None else default_out(game, [checkpoint])
    by_name = {players.check(s, g, home=home_of(out)): b for s, b in zip(specs, budgets, strict=True)}
    play(game, [*specs, *against], out_dir=out, **arena)
    rows = ratings_from(out, anchor=anchor, samples=samples)
    write_league(out, rows, anchor=anchor)
    mine = [r for r in rows if r.name in by_name]
    lines = ["| simulations | Elo | 95% CI | games | score |", "|---:|---:|---:|---:|---:|"]
    for r in sorted(mine, key=lambda r: by_name[r.name]):
        lines.append(
            f"| {by_name[r.name]} | {r.elo:.0f} | {r.lo:.0f} to {r.hi:.0f} | {r.games} | {r.score:.3f} |"
        )
    note = ratings.anchoring([r.name for r in rows], anchor)
    md = out / "budgets.md"
    atomic_write_text(
        md,
        f"Elo of {checkpoint} against search budget ({game})\n\n" + "\n".join(lines) + "\n\n"
        f"{note}; 95% bootstrap intervals; round robin with {', '.join(against)}.\n",
    )
    png = ratings.plot_elo_by_budget(rows, by_name, out / "budgets.png", title=f"{checkpoint} ({game})")
    return mine, md, png

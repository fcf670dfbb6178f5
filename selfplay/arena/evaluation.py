"""Evaluation during training: each new checkpoint plays a gauntlet (fixed baselines and recent
checkpoints) through the arena, into RUN/arena/matches.jsonl, so the league table, Elo by step (TensorBoard
and RUN/arena/elo_by_step.png) and the `pg` opponent weights all come from the same recorded games."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import envs
import selfplay.arena.league as league
import selfplay.arena.players as players
import selfplay.arena.ratings as ratings
from agents import mcts
from envs.experts import make_expert
from selfplay.arena.league import ratings_from, steps_of, write_league
from selfplay.arena.matches import MATCHES, load_matches, results_of
from selfplay.arena.matchplay import missing
from selfplay.config import Config
from selfplay.io import atomic_write_text

ARENA_DIR = "arena"


def optimal_move_rate(policy, game: str = "tictactoe", *, simulations: int = 0) -> tuple[float, int]:
    """Share of every reachable position of a small `game` where the policy's greedy move (or, with
    `simulations`, its search's) is optimal per the game's `minimax` expert; and how many positions."""

    g = envs.make(game)
    expert = make_expert("minimax", g)
    states = envs.reachable_states(g)
    good = 0
    for i in range(0, len(states), 512):
        chunk = states[i : i + 512]
        if simulations:
            outs = mcts.run(chunk, policy.evaluate, simulations=simulations)
            moves = [mcts.select_action(o, temperature=0) for o in outs]
        else:
            moves = [e.best() for e in policy.evaluate(chunk)]
        good += sum(m in expert.optimal_actions(s) for s, m in zip(chunk, moves, strict=True))
    return good / len(states), len(states)


def _spec(ckpt: Path, simulations: int) -> str:
    return f"{ckpt}@mcts:{simulations}" if simulations else str(ckpt)


def _scores(records: Sequence[dict], me: str, other: str) -> list[float]:
    """`me`'s score in each recorded game between `me` and `other`."""
    mine = [r for r in records if me in r["players"] and other in r["players"]]
    return [r["score"] if r["players"][0] == me else 1 - r["score"] for r in mine]


def _opponents(config: Config, ckpt: Path, history: Sequence[Path]) -> list[tuple[int, list[str]]]:
    """(search budget, opponents) of each of `ckpt`'s gauntlets: the baselines and the `evaluation.recent`
    last of `history` (`ckpt` aside) at that budget."""
    ev = config.evaluation
    earlier = [p for p in history if Path(p) != Path(ckpt)][-ev.recent :] if ev.recent else []
    return [(b, [*ev.baselines, *(_spec(p, b) for p in earlier)]) for b in ev.simulations]


def unplayed(
    config: Config, run_dir: Path, ckpt: Path, history: Sequence[Path], *, games: int | None = None
) -> int:
    """The games of `ckpt`'s gauntlet (as `gauntlet` plays it) that RUN/arena/matches.jsonl lacks: a run
    killed mid-gauntlet finishes it on resume."""
    ev = config.evaluation
    return sum(
        missing(
            config.game,
            opponents,
            gauntlet=_spec(ckpt, budget),
            games=ev.games if games is None else games,
            seed=config.selfplay.seed,
            out_dir=run_dir / ARENA_DIR,
        )
        for budget, opponents in _opponents(config, ckpt, history)
    )


def gauntlet(
    config: Config,
    run_dir: Path,
    ckpt: Path,
    step: int,
    history: Sequence[Path],
    writer,
    *,
    games: int | None = None,
) -> dict:
    """Play the gauntlet of `ckpt` (the baselines and the `evaluation.recent` last of `history`, `games`
    games each, by default `evaluation.games`) once per search budget of `evaluation.simulations`; log
    its scores and Elo; return them (`score/OPPONENT`, `elo` for the raw policy; `score@mcts:N/OPPONENT`,
    `elo@mcts:N` with search)."""
    ev = config.evaluation
    game = envs.make(config.game)
    out = run_dir / ARENA_DIR
    results: dict[str, float] = {}
    candidates = {}
    for budget, opponents in _opponents(config, ckpt, history):
        tag = f"@mcts:{budget}" if budget else ""
        candidates[tag] = candidate = players.check(_spec(ckpt, budget), game, home=run_dir)
        records = league.gauntlet(
            _spec(ckpt, budget),
            opponents,
            config.game,
            games=ev.games if games is None else games,
            seed=config.selfplay.seed,
            out_dir=out,
            workers=ev.workers,
            device=config.selfplay.actor_device,
        )
        for opponent in opponents:
            name = players.check(opponent, game, home=run_dir)
            scores = _scores(records, candidate, name)
            if not scores:
                continue
            score = sum(scores) / len(scores)
            label = name if opponent in ev.baselines else Path(opponent.partition("@")[0]).name
            results[f"score{tag}/{label}"] = score
            if opponent in ev.baselines:
                writer.add_scalar(f"eval/score{tag}_vs_{name}", score, step)
    rows = ratings_from(out, samples=100)
    write_league(out, rows, anchor="random")
    elo = {r.name: r.elo for r in rows}
    for tag, candidate in candidates.items():
        if candidate in elo:
            results[f"elo{tag}"] = elo[candidate]
            writer.add_scalar(f"eval/elo{tag}", elo[candidate], step)
    steps = steps_of([r.name for r in rows], run_dir)
    if steps:
        ratings.plot_elo_by_step(rows, steps, out / "elo_by_step.png", title=f"{config.game}: Elo by step")
        baselines = [players.check(b, game, home=run_dir) for b in ev.baselines]
        write_scores_by_step(out, steps, baselines, title=f"{config.game}: score by step")
    return results


def final_gauntlet(config: Config, run_dir: Path, final: Path, stage1: Path, step: int, writer) -> Path:
    """The final checkpoint against the baselines and the stage-1 checkpoint `stage1`, raw and at each
    search budget, `evaluation.final_games` games each (into the league); RUN/arena/final.md: its score,
    wins, draws and losses against each. Returns that table."""
    ev = config.evaluation
    gauntlet(config, run_dir, final, step, [stage1], writer, games=ev.final_games)
    game = envs.make(config.game)
    out = run_dir / ARENA_DIR
    records = load_matches(out / MATCHES)
    lines = ["| player | opponent | games | W | D | L | score |", "|---|---|---:|---:|---:|---:|---:|"]
    for budget in ev.simulations:
        me = players.check(_spec(final, budget), game, home=run_dir)
        for spec in [*ev.baselines, _spec(stage1, budget)]:
            other = players.check(spec, game, home=run_dir)
            scores = _scores(records, me, other)
            w, d = sum(s == 1 for s in scores), sum(s == 0.5 for s in scores)
            score = sum(scores) / len(scores) if scores else float("nan")
            lines.append(
                f"| {me} | {other} | {len(scores)} | {w} | {d} | {len(scores) - w - d} | {score:.3f} |"
            )
    md = out / "final.md"
    note = "Score: win 1, draw 1/2; every game recorded between the two (colours swapped per pair)."
    atomic_write_text(md, "\n".join(lines) + f"\n\n{note}\n")
    return md


def write_scores_by_step(
    out: Path, steps: dict[str, int], baselines: Sequence[str], *, title: str = "score by step"
) -> Path:
    """OUT/scores_by_step.md and .png: each rated checkpoint's score against each baseline, raw and at
    each search budget, by training step, from every game in OUT/matches.jsonl. Returns the table."""
    sums: dict[tuple[str, str, str], list[float]] = {}  # (checkpoint, budget, baseline) -> scores
    for a, b, s in results_of(load_matches(out / MATCHES)):
        for me, other, score in ((a, b, s), (b, a, 1 - s)):
            if me in steps and other in baselines:
                ckpt, _, budget = me.partition("@")
                sums.setdefault((ckpt, f"@{budget}" if budget else "raw", other), []).append(score)
    columns = sorted({(o, b) for _, b, o in sums}, key=lambda c: (c[0], c[1] != "raw", c[1]))
    step_of = {name.partition("@")[0]: step for name, step in steps.items()}
    rows = sorted({c for c, _, _ in sums}, key=lambda c: (step_of[c], c))
    lines = [
        "| step | checkpoint | " + " | ".join(f"vs {o} {b}" for o, b in columns) + " |",
        "|---:|---|" + "---:|" * len(columns),
    ]
    curves: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for c in rows:
        cells = []
        for o, b in columns:
            got = sums.get((c, b, o))
            cells.append(f"{sum(got) / len(got):.2f} ({len(got)})" if got else "")
            if got:
                curves.setdefault((o, b), []).append((step_of[c], sum(got) / len(got)))
        lines.append(f"| {step_of[c]} | {c} | " + " | ".join(cells) + " |")
    md = out / "scores_by_step.md"
    note = "Score (win 1, draw 1/2) over the games in brackets; raw: the greedy policy; @mcts:N: with search."
    atomic_write_text(md, f"# {title}\n\n" + "\n".join(lines) + f"\n\n{note}\n")
    ratings.plot_scores_by_step(curves, out / "scores_by_step.png", title=title)
    return md


def pool_weights(run_dir: Path, paths: Sequence[str], *, scale: float = 200.0) -> dict[str, float] | None:
    """Sampling weights of `pg` opponents: exp(-|Elo - learner's Elo| / scale), the learner being the
    newest of `paths`; None while the arena has not rated them all."""
    out = run_dir / ARENA_DIR
    if not (out / MATCHES).exists():
        return None
    results = results_of(load_matches(out / MATCHES))
    if not results:
        return None
    try:
        elo = ratings.fit(results)
    except ratings.RatingsError:  # players that never met: no common scale yet
        return None
    game = None
    names = {}
    for p in paths:
        game = game or envs.make(players.checkpoint_meta(p)["game"])
        names[p] = players.check(p, game, home=run_dir)
    if not all(n in elo for n in names.values()):
        return None
    me = elo[names[paths[-1]]]
    return {p: math.exp(-abs(elo[n] - me) / scale) for p, n in names.items()}

"""How far below the best constant can a value head trained on these transcripts get?

    python bench/value_noise.py RUN/transcripts.jsonl [--opening-plies 2] [--positions 400]

A value head learns each position's final outcome, and with an exploring teacher (`epsilon`) the outcome
of a position is partly chance. This continues held-out positions (the imitation stage's split) several
times as the transcripts were played (the expert, epsilon included, after `--opening-plies` random
moves: `transcripts.opening_plies`); the mean of the continuations estimates the
best any value head can predict, and its error against the real outcome (its own sampling noise removed)
estimates the irreducible MSE. Printed: the best constant's MSE, that estimate and their ratio; a held-out
value MSE can only beat the constant's by about 1 - ratio.
"""

from __future__ import annotations

import argparse
import random
from multiprocessing import Pool

import numpy as np

import envs
from envs.experts import make_expert
from selfplay.core.transcripts import Transcript, load_transcripts
from selfplay.games.imitate import split_games


def expert_spec(t: Transcript) -> str:
    options = ",".join(f"{k}={v}" for k, v in t.expert_options.items())
    return f"{t.expert}:{options}" if options else t.expert


def continuations(job: tuple[str, str, dict, list[int], int, int, int]) -> list[float]:
    """Outcomes for the mover of `k` games continued from the position after `history`."""
    game_name, spec, game_options, history, opening_plies, seed, k = job
    game = envs.make(game_name, **game_options)
    expert = make_expert(spec, game)
    start = game.new_initial_state()
    for a in history:
        start.apply_action(a)
    mover, outcomes = start.current_player(), []
    for i in range(k):
        expert.reset(seed * 1000 + i)
        state = start.clone()
        while not state.is_terminal():
            if state.move_number() < opening_plies:
                state.apply_action(expert.rng.choice(state.legal_actions()))
            else:
                state.apply_action(expert.decide(state).action)
        outcomes.append(float(state.returns()[mover]))
    return outcomes


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("transcripts")
    ap.add_argument("--opening-plies", type=int, default=0, help="transcripts.opening_plies")
    ap.add_argument("--positions", type=int, default=400)
    ap.add_argument("--continuations", type=int, default=8)
    ap.add_argument("--val-fraction", type=float, default=0.1, help="imitation.val_fraction")
    ap.add_argument("--seed", type=int, default=0, help="imitation.seed (the split)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)

    games = load_transcripts(args.transcripts)
    _, val = split_games(len(games), args.val_fraction, args.seed)
    held_out = [(games[g], i) for g in sorted(val) for i in range(len(games[g].moves))]
    picks = random.Random(args.seed).sample(held_out, min(args.positions, len(held_out)))
    jobs = [
        (
            t.game,
            expert_spec(t),
            t.game_options,
            [m.action for m in t.moves[:i]],
            args.opening_plies,
            n,
            args.continuations,
        )
        for n, (t, i) in enumerate(picks)
    ]
    with Pool(args.workers) as pool:
        means = np.array([np.mean(o) for o in pool.map(continuations, jobs)])
    actual = np.array([t.returns[t.moves[i].player] for t, i in picks])
    constant = float(actual.var())
    # (actual - mean)^2 holds the mean's own variance, sigma^2 / K on top of sigma^2: remove it
    irreducible = float(((actual - means) ** 2).mean()) / (1 + 1 / args.continuations)
    print(
        f"{len(picks)} held-out positions of {len(val)} games, {args.continuations} continuations each "
        f"with {expert_spec(picks[0][0])}"
    )
    print("| best constant MSE | irreducible MSE (estimate) | ratio |")
    print("|---:|---:|---:|")
    print(f"| {constant:.3f} | {irreducible:.3f} | {irreducible / constant:.2f} |")


if __name__ == "__main__":
    main()

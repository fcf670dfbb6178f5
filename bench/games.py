"""What the rules cost: random-playout games/s and expert search nodes/s for every game.

    python bench/games.py [--seconds 3]

Figures are single-process, pure Python; compare them with the network's positions/s (bench of the
policy) to see whether search is bounded by the rules or by the model.
"""

from __future__ import annotations

import argparse
import random
import time

import envs
from envs.experts import make_expert

EXPERTS = {
    "tictactoe": ["minimax", "mcts:200"],
    "connect_four": ["alphabeta:depth=4", "mcts:200"],
    "othello": ["alphabeta:depth=3", "mcts:200"],
}


def playouts_per_second(game: envs.Game, seconds: float) -> tuple[float, float]:
    """Random games per second and moves per second through the public State API."""
    rng = random.Random(0)
    games = moves = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        s = game.new_initial_state()
        while not s.is_terminal():
            s.apply_action(rng.choice(s.legal_actions()))
            moves += 1
        games += 1
    elapsed = time.perf_counter() - start
    return games / elapsed, moves / elapsed


def steps_per_second(game: envs.Game, seconds: float) -> float:
    """clone() + apply_action() per second on positions from random games: the rules' share of one
    step down a network-guided search tree."""
    rng = random.Random(2)
    positions = []
    while len(positions) < 2000:
        s = game.new_initial_state()
        while not s.is_terminal():
            positions.append((s.clone(), rng.choice(s.legal_actions())))
            s.apply_action(positions[-1][1])
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for s, a in positions:
            s.clone().apply_action(a)
        steps += len(positions)
    return steps / (time.perf_counter() - start)


def expert_nodes_per_second(game: envs.Game, spec: str, seconds: float) -> tuple[float, float]:
    """Search nodes per second and seconds per move, over moves of whole expert-vs-expert games."""
    expert = make_expert(spec, game, seed=0)
    rng = random.Random(1)
    searched = 0
    elapsed = 0.0
    while elapsed < seconds:
        s = game.new_initial_state()
        for _ in range(2):  # random openings so the games differ
            s.apply_action(rng.choice(s.legal_actions()))
        while not s.is_terminal() and elapsed < seconds:
            t = time.perf_counter()
            action = expert.decide(s).action
            elapsed += time.perf_counter() - t
            searched += 1
            s.apply_action(action)
    return expert.nodes / elapsed, elapsed / max(searched, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure")
    args = p.parse_args()
    print("| game | random games/s | random moves/s | clone+apply/s | expert | nodes/s | ms/move |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for name, specs in EXPERTS.items():
        game = envs.make(name)
        gps, mps = playouts_per_second(game, args.seconds)
        sps = steps_per_second(game, args.seconds)
        for spec in specs:
            nps, spm = expert_nodes_per_second(game, spec, args.seconds)
            cells = [name, f"{gps:,.0f}", f"{mps:,.0f}", f"{sps:,.0f}", f"`{spec}`", f"{nps:,.0f}"]
            print(f"| {' | '.join(cells)} | {spm * 1000:.1f} |", flush=True)


if __name__ == "__main__":
    main()

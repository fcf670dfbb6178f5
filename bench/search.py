"""Search speed: simulations/s of PUCT on connect_four, batched across games versus one tree at a time.

    python bench/search.py [--games 64] [--simulations 32] [--size small] [--threads 1] [--device auto]

Batched: all games' trees searched together, so each network call sees one leaf per game. One at a time:
the same games and simulations, each tree searched alone, one leaf per network call. Both run side by side
in one process, so their ratio (the batching gain) is comparable across machines. The rollout evaluator
(random playouts, no network) is the reference, and a constant evaluator shows the search's own overhead.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch

import agents
import envs
from agents.mcts import Tree, rollout_evaluator, search


def openings(game: envs.Game, n: int, seed: int = 0) -> list[envs.State]:
    """`n` unfinished positions after a few random moves each (seeded), so the trees differ."""
    rng, out = random.Random(seed), []
    while len(out) < n:
        s = game.new_initial_state()
        for _ in range(rng.randrange(8)):
            if not s.is_terminal():
                s.apply_action(rng.choice(s.legal_actions()))
        if not s.is_terminal():
            out.append(s)
    return out


class Counted:
    """Wraps an evaluator to count its calls and the positions it was given."""

    def __init__(self, evaluate):
        self.evaluate, self.calls, self.positions = evaluate, 0, 0

    def __call__(self, states):
        self.calls += 1
        self.positions += len(states)
        return self.evaluate(states)


def constant(states):
    """Uniform priors and value 0: costs nothing, so what remains is the search itself."""
    out = []
    for s in states:
        acts = s.legal_actions()
        probs = np.full(len(acts), 1 / len(acts))
        out.append(agents.Evaluation(acts, probs, np.log(probs), 0.0))
    return out


def measure(states, evaluate, simulations: int, batched: bool) -> tuple[float, Counted]:
    """Simulations per second searching fresh trees of `states`, all together or one tree at a time."""
    counted = Counted(evaluate)
    trees = [Tree(s) for s in states]
    start = time.perf_counter()
    if batched:
        search(trees, counted, simulations=simulations)
    else:
        for tree in trees:
            search([tree], counted, simulations=simulations)
    return len(states) * simulations / (time.perf_counter() - start), counted


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--games", type=int, default=64, help="trees searched at once in the batched run")
    p.add_argument("--simulations", type=int, default=32, help="simulations per tree")
    p.add_argument("--size", default="small", choices=list(agents.PRESETS))
    # One thread by default: on a shared CPU, more threads than free cores stall small calls (batch 1 ran
    # ~20x slower with 2 threads beside a busy core), which would inflate the batching gain.
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads; 0 keeps torch's default")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    game = envs.make("connect_four")
    tok = agents.CharTokenizer()
    cfg = agents.ModelConfig.preset(args.size, vocab_size=tok.vocab_size, block_size=256)
    policy = agents.new_policy(cfg, device=args.device, seed=0)
    states = openings(game, args.games)
    policy.evaluate(states[:1])  # warm up (allocator, kernels) outside the timings
    print(
        f"connect_four, {args.games} games x {args.simulations} simulations; model {args.size} "
        f"({policy.model.num_parameters():,} parameters) on {policy.device}, "
        f"{torch.get_num_threads()} threads"
    )
    print("| evaluator | search | network calls | positions per call | simulations/s |")
    print("|---|---|---:|---:|---:|")
    rates = {}
    evaluators = [
        (f"policy {args.size}", policy.evaluate),
        ("rollout (1 playout)", rollout_evaluator(seed=0)),
        ("constant (search overhead)", constant),
    ]
    for name, evaluate in evaluators:
        for batched in (True, False):
            rate, c = measure(states, evaluate, args.simulations, batched)
            rates[name, batched] = rate
            mode = f"batched, {args.games} trees" if batched else "one tree at a time"
            print(f"| {name} | {mode} | {c.calls:,} | {c.positions / c.calls:.1f} | {rate:,.0f} |")
    for name, _ in evaluators:
        print(f"| {name} | batching gain | | | {rates[name, True] / rates[name, False]:.2f}x |")


if __name__ == "__main__":
    main()

"""Share of all 4,520 reachable tic-tac-toe positions (someone to move) where a checkpoint's greedy move is
optimal per the minimax expert, raw policy or with search.

    python bench/tictactoe_optimal.py runs/tictactoe/checkpoints/imitation [--simulations 0]
"""

from __future__ import annotations

import argparse

import agents
import envs
from agents import mcts
from envs.experts import Minimax


def reachable_positions(game: envs.Game) -> list[envs.State]:
    seen, out = set(), []
    stack = [game.new_initial_state()]
    while stack:
        s = stack.pop()
        if s.is_terminal() or s.key() in seen:
            continue
        seen.add(s.key())
        out.append(s)
        for a in s.legal_actions():
            child = s.clone()
            child.apply_action(a)
            stack.append(child)
    return out


def optimal_rate(policy: agents.Policy, *, simulations: int = 0) -> tuple[float, int]:
    game = envs.make("tictactoe")
    expert = Minimax(game)
    states = reachable_positions(game)
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--simulations", type=int, default=0)
    args = p.parse_args()
    rate, n = optimal_rate(agents.load(args.checkpoint, device="cpu"), simulations=args.simulations)
    print("| checkpoint | simulations | optimal moves |\n|---|---:|---:|")
    print(f"| {args.checkpoint} | {args.simulations} | {rate:.4f} of {n} |")


if __name__ == "__main__":
    main()

"""Share of all 4,520 reachable tic-tac-toe positions (someone to move) where a checkpoint's greedy move is
optimal per the minimax expert, raw policy or with search.

    python bench/tictactoe_optimal.py runs/tictactoe/checkpoints/imitation [--simulations 0]
"""

from __future__ import annotations

import argparse

import agents
from selfplay.evaluation import optimal_move_rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--simulations", type=int, default=0)
    args = p.parse_args()
    rate, n = optimal_move_rate(agents.load(args.checkpoint, device="cpu"), simulations=args.simulations)
    print("| checkpoint | simulations | optimal moves |\n|---|---:|---:|")
    print(f"| {args.checkpoint} | {args.simulations} | {rate:.4f} of {n} |")


if __name__ == "__main__":
    main()

"""Expert strength: a match between two expert specs, colours alternating, seeded.

    python bench/experts.py connect_four alphabeta:depth=4 alphabeta:depth=2 --games 60

Prints the first player's wins, draws and losses and its score (draws count half).
"""

from __future__ import annotations

import argparse

import envs
from envs.experts import make_expert


def match(game_name: str, spec_a: str, spec_b: str, games: int, seed: int = 0) -> tuple[int, int, int]:
    game = envs.make(game_name)
    a, b = make_expert(spec_a, game), make_expert(spec_b, game)
    wins = draws = losses = 0
    for i in range(games):
        seat = i % 2  # a plays first in even games
        players = (a, b) if seat == 0 else (b, a)
        a.reset(seed * 1_000_003 + 2 * i)
        b.reset(seed * 1_000_003 + 2 * i + 1)
        s = game.new_initial_state()
        while not s.is_terminal():
            s.apply_action(players[s.current_player()].decide(s).action)
        r = s.returns()[seat]
        wins, draws, losses = wins + (r > 0), draws + (r == 0), losses + (r < 0)
    return wins, draws, losses


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("game")
    p.add_argument("a", help="expert spec of the first player")
    p.add_argument("b", help="expert spec of the second player")
    p.add_argument("--games", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    w, d, lo = match(args.game, args.a, args.b, args.games, args.seed)
    print(f"{args.game}: {args.a} vs {args.b}: +{w} ={d} -{lo}, score {(w + d / 2) / args.games:.2f}")


if __name__ == "__main__":
    main()

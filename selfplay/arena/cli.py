"""Matches between any players (checkpoints, search budgets, baselines) and the league table they make.

    python -m selfplay.arena --game connect_four runs/c4 random alphabeta:2 --games 20
    python -m selfplay.arena --game connect_four --gauntlet runs/c4/checkpoints/imitation random mcts:200
    python -m selfplay.arena --game tictactoe --budgets 0,16,64,256 runs/ttt/checkpoints/imitation

Players are `selfplay.arena.players` specs; a run directory stands for all its checkpoints. Every pair (all of
them, or the `--gauntlet` player against each other one) plays `--games` games, half with each colour.

This module is the command and the arena's API in one place; the work lives in three others:
`selfplay.arena.matchplay` (the deterministic schedule and playing it, resumably, in worker processes),
`selfplay.arena.matches` (the matches file, OUT/matches.jsonl, and its checks) and `selfplay.arena.league`
(the league table in OUT/ratings.md and .csv, and what the training loop asks of the arena).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import envs
import selfplay.arena.players as players
import selfplay.arena.ratings as ratings
from selfplay.arena.league import (
    gauntlet,
    ratings_from,
    sample_opponents,
    steps_of,
    thinking_longer,
    write_league,
)
from selfplay.arena.matches import FORMAT, MATCHES, MatchesError, load_matches, results_of
from selfplay.arena.matchplay import (
    OPENING_PLIES,
    Scheduled,
    default_out,
    home_of,
    missing,
    play,
    play_games,
    schedule,
)
from selfplay.io import cannot_write

__all__ = [
    "FORMAT",
    "MATCHES",
    "MatchesError",
    "Scheduled",
    "gauntlet",
    "home_of",
    "load_matches",
    "main",
    "missing",
    "play",
    "play_games",
    "ratings_from",
    "results_of",
    "sample_opponents",
    "schedule",
    "steps_of",
    "thinking_longer",
    "write_league",
]


# --- the command ------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m selfplay.arena",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n")[1],
    )
    p.add_argument("players", nargs="*", help="player specs: checkpoint, run directory, PATH@mcts:N, expert")
    p.add_argument("--game", required=True, help=f"one of: {', '.join(envs.names())}")
    p.add_argument("--gauntlet", metavar="PLAYER", help="play only this player against each of the others")
    p.add_argument(
        "--budgets", help="thinking longer: simulation counts, e.g. 0,16,64,256, for the one checkpoint given"
    )
    p.add_argument("--against", default="random", help="with --budgets: comma-separated opponents")
    p.add_argument("--games", type=int, default=20, help="games per pair, even (half with each colour)")
    p.add_argument("--seed", type=int, default=0, help="schedule seed: openings and players' randomness")
    p.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")
    p.add_argument(
        "--out", help="directory for matches.jsonl and tables (default RUN/arena or runs/arena/GAME)"
    )
    p.add_argument(
        "--opening-plies",
        type=int,
        help=f"random moves before the players take over (default {OPENING_PLIES}, else 2)",
    )
    p.add_argument("--batch", type=int, default=64, help="games played side by side in one process")
    p.add_argument(
        "--device", default="auto", help="torch device for checkpoint players (auto: CUDA if present)"
    )
    p.add_argument("--anchor", default="random", help="the player whose Elo is fixed (default random)")
    p.add_argument("--anchor-elo", type=float, default=0.0, help="the anchor's Elo (default 0)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the intervals")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    knobs = dict(
        games=args.games,
        seed=args.seed,
        workers=args.workers,
        opening_plies=args.opening_plies,
        batch=args.batch,
        device=args.device,
        progress=not args.no_progress,
    )
    try:
        if args.game in envs.names(kind="reward"):
            raise ValueError(
                f"{args.game!r} is a reward environment; the arena plays games: {', '.join(envs.names())}"
            )
        out = Path(args.out) if args.out else default_out(args.game, [args.gauntlet, *args.players])
        if why := cannot_write(out):
            raise ValueError(f"the arena's directory {why}")
        if args.budgets is not None:
            if len(args.players) != 1 or args.gauntlet:
                raise ValueError("--budgets takes exactly one checkpoint (and no --gauntlet)")
            try:
                budgets = [int(b) for b in args.budgets.split(",")]
            except ValueError:
                raise ValueError(f"--budgets: comma-separated integers, got {args.budgets!r}") from None
            against = [a for a in args.against.split(",") if a.strip()]
            rows, md, png = thinking_longer(
                args.players[0],
                budgets,
                args.game,
                against=against,
                out_dir=args.out,
                anchor=args.anchor,
                samples=args.bootstrap,
                **knobs,
            )
            print(md.read_text(), end="")
            print(f"wrote {md} and {png}")
            return 0
        specs = list(args.players)
        play(args.game, specs, gauntlet=args.gauntlet, out_dir=out, **knobs)
        rows = ratings_from(out, anchor=args.anchor, anchor_elo=args.anchor_elo, samples=args.bootstrap)
        md = write_league(out, rows, anchor=args.anchor, anchor_elo=args.anchor_elo)
    except (
        envs.UnknownEnvError,
        players.PlayerSpecError,
        MatchesError,
        ratings.RatingsError,
        ValueError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(md.read_text(), end="")
    print(f"wrote {md} and {md.with_suffix('.csv')}; games in {out / MATCHES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

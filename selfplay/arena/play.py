"""Play against a checkpoint or a baseline in the terminal.

    python -m selfplay.play runs/ttt/checkpoints/imitation          # the game comes from the checkpoint
    python -m selfplay.play runs/c4 --human-second                   # a run directory: its latest checkpoint
    python -m selfplay.play runs/c4/checkpoints/imitation@mcts:64    # the policy with 64 simulations a move
    python -m selfplay.play alphabeta:4 --game connect_four          # a baseline needs --game

The board is the game's own text (`str(state)`, what the model reads); moves are typed as the game writes
them (`b2`, `d`, `pass`). Anything else is answered with the legal moves and a new prompt; `moves` lists
them, `quit` (or end of input) stops. Reads stdin line by line, so a pipe of moves drives it in tests.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TextIO

import envs
import selfplay.arena.players as players

QUIT = ("quit", "exit", "q")
LIST = ("moves", "help", "?")


def _resolve(spec: str, game: str | None) -> tuple[str, str]:
    """(player spec, game name): a run directory means its latest checkpoint; a checkpoint knows its game."""
    base, at, suffix = spec.rpartition("@")
    if not (at and suffix.startswith("mcts")):
        base, suffix = spec, ""
    path = Path(base).expanduser()
    if (path / "checkpoints").is_dir() and not (path / "config.json").is_file():
        ckpts = players.checkpoints_of(path)
        if not ckpts:
            raise players.PlayerSpecError(f"run directory {base!r} holds no checkpoints yet")
        path = ckpts[-1]
        spec = str(path) + (f"@{suffix}" if suffix else "")
    if (path / "config.json").is_file():
        made_for = players.checkpoint_meta(path).get("game")
        game = game or made_for
        if game is None:
            raise players.PlayerSpecError(f"checkpoint {str(path)!r} does not record its game; pass --game")
    elif suffix or os.sep in base:
        raise players.PlayerSpecError(f"player {spec!r}: no such checkpoint directory {str(path)!r}")
    elif game is None:
        raise players.PlayerSpecError(f"{spec!r} is not a checkpoint, so --game is needed to know the game")
    if game in envs.names(kind="reward"):
        raise ValueError(f"{game!r} is a reward environment; play is for games: {', '.join(envs.names())}")
    return spec, game


def play(
    player: players.Player, game: envs.Game, *, human: int, stdin: TextIO, stdout: TextIO
) -> float | None:
    """One game, `human` (0 or 1) typing moves on `stdin`; the human's return, or None if they left."""

    def say(*parts: object, end: str = "\n") -> None:
        print(*parts, end=end, file=stdout, flush=True)

    state = game.new_initial_state()
    say(
        f"{game.name}: you move {'first' if human == 0 else 'second'} against {player.name}. "
        f"Type a move ({', '.join(state.legal_texts()[:3])}, ...), 'moves' to list them, 'quit' to stop."
    )
    shown = -1  # the move number whose board was drawn last: redraw only when the position changed
    while not state.is_terminal():
        if state.current_player() != human:
            action = player.act([state])[0]
            say(f"{player.name} plays {state.action_to_text(action)}")
            state.apply_action(action)
            continue
        if shown != state.move_number():
            say(f"\n{state}", end="")
            shown = state.move_number()
        say("your move> ", end="")
        line = stdin.readline()
        if not line:
            say("\nend of input: game abandoned")
            return None
        text = line.strip()
        if text.lower() in QUIT:
            say("game abandoned")
            return None
        if not text or text.lower() in LIST:
            say(f"legal moves: {', '.join(state.legal_texts())}")
            continue
        try:
            action = state.text_to_action(text)
        except envs.IllegalMoveError as e:
            say(e)  # names the move and lists the legal ones
            continue
        state.apply_action(action)
    say(f"\n{state}", end="")
    mine = state.returns()[human]
    say("You win." if mine > 0 else f"{player.name} wins." if mine < 0 else "Draw.")
    return mine


def main(argv: list[str] | None = None, *, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m selfplay.play",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("player", help="checkpoint, run directory, PATH@mcts:N, or a baseline (random, minimax)")
    p.add_argument("--game", help=f"one of: {', '.join(envs.names())} (default: the checkpoint's game)")
    side = p.add_mutually_exclusive_group()
    side.add_argument("--human-first", dest="human", action="store_const", const=0, default=0)
    side.add_argument("--human-second", dest="human", action="store_const", const=1)
    p.add_argument("--seed", type=int, default=None, help="seed of the opponent's random choices")
    p.add_argument("--device", default="auto", help="torch device for a checkpoint (auto: CUDA if present)")
    args = p.parse_args(argv)
    try:
        spec, game_name = _resolve(args.player, args.game)
        game = envs.make(game_name)
        player = players.make(spec, game, seed=args.seed, device=args.device)
    except (envs.UnknownEnvError, ValueError) as e:  # PlayerSpecError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        play(player, game, human=args.human, stdin=stdin or sys.stdin, stdout=stdout or sys.stdout)
    except KeyboardInterrupt:
        print("\ninterrupted", file=stdout or sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

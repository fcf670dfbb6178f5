"""selfplay environments: games (OpenSpiel-style, with a text face) and their experts.

>>> import envs
>>> state = envs.make("tictactoe").new_initial_state()
>>> state.apply_action(state.text_to_action("b2"))
>>> state.current_player()
1
"""

from envs.checker import GameCheckError, check_game, perft
from envs.core import TERMINAL, Game, GameInfo, IllegalMoveError, State
from envs.registry import UnknownEnvError, make, names, register

__all__ = [
    "TERMINAL",
    "Game",
    "GameCheckError",
    "GameInfo",
    "IllegalMoveError",
    "State",
    "UnknownEnvError",
    "check_game",
    "from_pettingzoo",
    "make",
    "make_aec",
    "names",
    "perft",
    "register",
]


def make_aec(name: str, render_mode: str | None = None, **options):
    """The registered game `name` as a PettingZoo AEC environment (action masks in observations)."""
    from envs.aec import GameAECEnv

    return GameAECEnv(make(name, **options), render_mode=render_mode)


def from_pettingzoo(env_fn, **kwargs):
    """Wrap a PettingZoo AEC environment factory with action masks as a `Game` of this API."""
    from envs.pettingzoo_game import PettingZooGame

    return PettingZooGame(env_fn, **kwargs)


register("tictactoe", "envs.tictactoe:TicTacToe")
register("connect_four", "envs.connect_four:ConnectFour")
register("othello", "envs.othello:Othello")

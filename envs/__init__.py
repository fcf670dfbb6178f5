"""selfplay environments: games (OpenSpiel-style, with a text face) and their experts, and reward
environments (text tasks scored in [0, 1], see `envs.reward`).

>>> import envs
>>> state = envs.make("tictactoe").new_initial_state()
>>> state.apply_action(state.text_to_action("b2"))
>>> state.current_player()
1
>>> envs.names(kind="reward")
['arithmetic', 'countdown', 'guess_number', 'sort']
"""

from envs.checker import (
    GameCheckError,
    RewardEnvCheckError,
    check_game,
    check_reward_env,
    perft,
    random_states,
    reachable_states,
)
from envs.core import TERMINAL, Game, GameInfo, IllegalMoveError, State
from envs.registry import UnknownEnvError, make, names, register
from envs.reward import RewardEnv, Score, Task, reward_env
from envs.thinking import Thinking

__all__ = [
    "TERMINAL",
    "Game",
    "GameCheckError",
    "GameInfo",
    "IllegalMoveError",
    "RewardEnv",
    "RewardEnvCheckError",
    "Score",
    "State",
    "Task",
    "Thinking",
    "UnknownEnvError",
    "check_game",
    "check_reward_env",
    "from_pettingzoo",
    "make",
    "make_aec",
    "make_gym",
    "names",
    "perft",
    "random_states",
    "reachable_states",
    "register",
    "reward_env",
]


def make_aec(name: str, render_mode: str | None = None, **options):
    """The registered game `name` as a PettingZoo AEC environment (action masks in observations)."""
    from envs.aec import GameAECEnv

    return GameAECEnv(make(name, **options), render_mode=render_mode)


def make_gym(name: str, render_mode: str | None = None, **options):
    """The registered reward environment `name` as a Gymnasium env with text observations and actions."""
    from envs.gym import make_gym

    return make_gym(name, render_mode=render_mode, **options)


def from_pettingzoo(env_fn, **kwargs):
    """Wrap a PettingZoo AEC environment factory with action masks as a `Game` of this API."""
    from envs.pettingzoo_game import PettingZooGame

    return PettingZooGame(env_fn, **kwargs)


register("tictactoe", "envs.tictactoe:TicTacToe")
register("connect_four", "envs.connect_four:ConnectFour")
register("othello", "envs.othello:Othello")
register("arithmetic", "envs.tasks.arithmetic:Arithmetic", kind="reward")
register("countdown", "envs.tasks.countdown:Countdown", kind="reward")
register("sort", "envs.tasks.sort:Sort", kind="reward")
register("guess_number", "envs.tasks.guess_number:GuessNumber", kind="reward")

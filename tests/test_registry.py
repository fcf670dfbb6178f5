import pytest

import envs
from envs.tictactoe import TicTacToeState


def test_names_lists_the_builtin_games():
    assert {"tictactoe", "connect_four", "othello"} <= set(envs.names())


def test_unknown_name_lists_known_ones():
    with pytest.raises(envs.UnknownEnvError, match=r"unknown environment 'chess'; known: .*connect_four"):
        envs.make("chess")


def test_unknown_option_names_it():
    with pytest.raises(TypeError, match=r"'board_size'.*'tictactoe'"):
        envs.make("tictactoe", board_size=4)


def test_register_a_new_game_and_refuse_silent_overwrite():
    from envs.tictactoe import TicTacToe

    class Mini(TicTacToe):
        name = "mini_tictactoe"

    envs.register("mini_tictactoe", Mini)
    assert isinstance(envs.make("mini_tictactoe"), Mini)
    with pytest.raises(ValueError, match="already registered"):
        envs.register("mini_tictactoe", TicTacToe)


@pytest.mark.parametrize("name", envs.names())
def test_every_registered_game_passes_the_checker(name):
    envs.check_game(envs.make(name), games=10)


def _broken(method, replacement):
    from envs.tictactoe import TicTacToe, TicTacToeState

    state_cls = type("BrokenState", (TicTacToeState,), {method: replacement})

    class Broken(TicTacToe):
        def new_initial_state(self):
            return state_cls(self)

    return Broken()


@pytest.mark.parametrize(
    ("method", "replacement", "rule"),
    [
        ("legal_actions", lambda self: list(reversed(TicTacToeState.legal_actions(self))), "must be sorted"),
        ("returns", lambda self: [1.0, 1.0] if self.is_terminal() else [0.0, 0.0], "summing to zero"),
        ("action_to_text", lambda self, a: "x", "distinct texts"),
        ("clone", lambda self: self, "must not change the original"),
        ("_is_legal", lambda self, a: 0 <= a < 9, "must raise IllegalMoveError"),
    ],
)
def test_checker_catches_broken_games(method, replacement, rule):
    with pytest.raises(envs.GameCheckError, match=rule):
        envs.check_game(_broken(method, replacement), games=3)

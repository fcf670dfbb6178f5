import pytest

import envs
from envs import TERMINAL, IllegalMoveError


@pytest.fixture
def game():
    return envs.make("tictactoe")


def play(game, texts):
    s = game.new_initial_state()
    for t in texts:
        s.apply_action(s.text_to_action(t))
    return s


def test_counts_match_known_values(game):
    """255,168 distinct games and 5,478 reachable positions (empty board and finished ones included)."""
    positions = set()

    def walk(s):
        positions.add(s.key())
        if s.is_terminal():
            return 1
        total = 0
        for a in s.legal_actions():
            child = s.clone()
            child.apply_action(a)
            total += walk(child)
        return total

    assert walk(game.new_initial_state()) == 255_168
    assert len(positions) == 5_478


@pytest.mark.parametrize(
    ("moves", "winner"),
    [
        (["a1", "a2", "b1", "b2", "c1"], 0),  # row
        (["b1", "a1", "c3", "a2", "b3", "a3"], 1),  # column
        (["a1", "b1", "b2", "c1", "c3"], 0),  # diagonal
        (["c1", "a1", "b2", "a2", "a3"], 0),  # anti-diagonal
    ],
)
def test_wins(game, moves, winner):
    s = play(game, moves)
    assert s.is_terminal() and s.current_player() == TERMINAL and s.legal_actions() == []
    assert s.returns() == ([1.0, -1.0] if winner == 0 else [-1.0, 1.0])
    assert s.prompt().endswith(f"{'XO'[winner]} won\n")


def test_draw(game):
    s = play(game, ["a1", "b2", "c3", "b1", "b3", "a3", "c1", "c2", "a2"])
    assert s.is_terminal() and s.returns() == [0.0, 0.0]
    assert "draw" in s.prompt()


def test_actions_are_row_major_and_text_round_trips(game):
    s = game.new_initial_state()
    assert [s.action_to_text(a) for a in range(9)] == ["a1", "b1", "c1", "a2", "b2", "c2", "a3", "b3", "c3"]
    for a in s.legal_actions():
        assert s.text_to_action(s.action_to_text(a)) == a
    assert s.text_to_action("  B2 ") == 4


def test_prompt_shows_board_and_turn(game):
    s = play(game, ["b2", "a1"])
    assert s.prompt() == "tictactoe\n  a b c\n1 O . .\n2 . X .\n3 . . .\nX to move\n"
    assert s.current_player() == 0 and s.history() == [4, 0]


@pytest.mark.parametrize("bad", [4, 9, -1, "b2", None, 2.0])
def test_illegal_action_is_clear_and_leaves_state_unchanged(game, bad):
    s = play(game, ["b2"])
    before = (s.prompt(), s.history(), s.legal_actions())
    with pytest.raises(IllegalMoveError) as err:
        s.apply_action(bad)
    assert "legal moves: a1, b1, c1, a2, c2, a3, b3, c3" in str(err.value)
    assert err.value.legal == ["a1", "b1", "c1", "a2", "c2", "a3", "b3", "c3"]
    assert (s.prompt(), s.history(), s.legal_actions()) == before


@pytest.mark.parametrize("bad", ["b2", "d1", "a4", "", "pass", "42"])
def test_unparsable_or_illegal_text(game, bad):
    s = play(game, ["b2"])
    with pytest.raises(IllegalMoveError, match=r"legal moves: a1"):
        s.text_to_action(bad)
    assert s.history() == [4]


def test_moves_after_the_end_are_rejected(game):
    s = play(game, ["a1", "a2", "b1", "b2", "c1"])
    with pytest.raises(IllegalMoveError, match="game is over"):
        s.apply_action(8)


def test_clone_is_independent(game):
    s = play(game, ["a1"])
    c = s.clone()
    c.apply_action(4)
    assert s.history() == [0] and c.history() == [0, 4]
    assert s.key() != c.key()


def test_observation_planes_are_from_the_players_side(game):
    s = play(game, ["a1", "c3"])
    x, o = s.observation(0), s.observation(1)
    assert x.shape == (3, 3, 2) and x.dtype.name == "int8"
    assert x[0, 0, 0] == 1 and x[2, 2, 1] == 1
    assert o[2, 2, 0] == 1 and o[0, 0, 1] == 1
    assert x.sum() == 2

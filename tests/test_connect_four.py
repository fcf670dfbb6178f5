import random

import numpy as np
import pytest

import envs
from envs import TERMINAL, IllegalMoveError
from envs.experts import ExpertSpecError, make_expert

# A 42-move game that fills the board with no four in a row (found by random play, kept as a fixture).
DRAW = "edgabeffbbfabgabffbaegdcggaegfcaececccdddd"


@pytest.fixture(scope="module")
def game():
    return envs.make("connect_four")


def play(game, moves):
    """Play move texts one letter each; every position before the last must still be open."""
    s = game.new_initial_state()
    for t in moves:
        assert not s.is_terminal(), f"game ended before {t!r} in {moves!r}"
        s.apply_action(s.text_to_action(t))
    return s


@pytest.mark.parametrize(
    ("depth", "paths"),
    [
        *[(d, 7**d) for d in range(1, 7)],
        (7, 823536),  # 7**7 less the 7 paths that fill one column in six plies and then play it
        # Wins first happen at ply 7 and end their paths: counting those as leaves would give 5,686,266
        # and playing on through them 5,764,458. About 10 s.
        pytest.param(8, 5673234, marks=pytest.mark.slow),
    ],
)
def test_perft(game, depth, paths):
    assert envs.perft(game.new_initial_state(), depth) == paths


def test_distinct_positions_per_ply_match_oeis(game):
    """OEIS A212693 (legal positions after n plies): transpositions share a key, nothing else does."""
    expected = [1, 7, 49, 238, 1120, 4263, 16422, 54859, 184275]
    level = {game.new_initial_state().key(): game.new_initial_state()}
    counts = [1]
    for _ in range(len(expected) - 1):
        nxt = {}
        for s in level.values():
            for a in s.legal_actions():
                child = s.clone()
                child.apply_action(a)
                nxt.setdefault(child.key(), child)
        level = nxt
        counts.append(len(level))
    assert counts == expected


def test_info_and_checker(game):
    assert game.name == "connect_four"
    assert game.info == envs.GameInfo(
        num_players=2, num_distinct_actions=7, max_game_length=42, observation_shape=(6, 7, 2)
    )
    envs.check_game(game, games=30)


@pytest.mark.parametrize(
    ("moves", "winner"),
    [
        ("abababa", 0),  # vertical
        ("abcbebgb", 1),
        ("aabbccd", 0),  # horizontal
        ("abacadge", 1),
        ("abbcdccdgdd", 0),  # diagonal a1-d4
        ("gabbcdccdgdd", 1),
        ("gffedeedadd", 0),  # diagonal g1-d4
        ("agffedeedadd", 1),
    ],
)
def test_wins_end_the_game(game, moves, winner):
    before = play(game, moves[:-1])
    assert not before.is_terminal() and before.returns() == [0.0, 0.0]
    s = play(game, moves)
    assert s.is_terminal() and s.current_player() == TERMINAL and s.legal_actions() == []
    assert s.returns() == ([1.0, -1.0] if winner == 0 else [-1.0, 1.0])
    assert s.prompt().endswith(f"{'XO'[winner]} won\n")
    with pytest.raises(IllegalMoveError, match="game is over"):
        s.apply_action(3)


def test_full_board_is_a_draw(game):
    s = play(game, DRAW)
    assert s.is_terminal() and s.returns() == [0.0, 0.0] and s.move_number() == 42
    assert s.prompt().endswith("draw\n") and "." not in s.prompt()


def test_prompt_shows_board_top_row_first(game):
    s = play(game, "ddcde")
    assert s.prompt() == (
        "connect_four\n"
        "a b c d e f g\n"
        ". . . . . . .\n"
        ". . . . . . .\n"
        ". . . . . . .\n"
        ". . . O . . .\n"
        ". . . O . . .\n"
        ". . X X X . .\n"
        "O to move\n"
    )
    assert s.current_player() == 1 and s.history() == [3, 3, 2, 3, 4]


def test_text_round_trips(game):
    s = play(game, "dd")
    assert [s.action_to_text(a) for a in range(7)] == list("abcdefg")
    for a in s.legal_actions():
        assert s.text_to_action(s.action_to_text(a)) == a
    assert s.text_to_action("  C ") == 2


def _full_a(game):
    s = play(game, "aaaaaa")
    assert s.legal_actions() == [1, 2, 3, 4, 5, 6]
    return s


@pytest.mark.parametrize("bad", [0, 7, -1, "a", None, 2.0, True])
def test_illegal_actions_are_clear_and_change_nothing(game, bad):
    s = _full_a(game)
    before = (s.prompt(), s.history(), s.legal_actions(), s.key())
    with pytest.raises(IllegalMoveError) as err:
        s.apply_action(bad)
    assert "legal moves: b, c, d, e, f, g" in str(err.value)
    assert err.value.legal == list("bcdefg")
    assert (s.prompt(), s.history(), s.legal_actions(), s.key()) == before


@pytest.mark.parametrize("bad", ["a", "h", "", "zz", "pass", "3", "a1"])
def test_bad_texts_are_clear_and_change_nothing(game, bad):
    s = _full_a(game)
    before = (s.prompt(), s.history(), s.legal_actions())
    with pytest.raises(IllegalMoveError, match="legal moves: b, c, d, e, f, g"):
        s.text_to_action(bad)
    assert (s.prompt(), s.history(), s.legal_actions()) == before


def test_clone_is_independent(game):
    s = play(game, "d")
    c = s.clone()
    c.apply_action(3)
    assert s.history() == [3] and c.history() == [3, 3]
    assert s.key() != c.key() and s.legal_actions() == c.legal_actions()
    assert s.current_player() == 1 and c.current_player() == 0
    d = play(game, "abababa"[:-1]).clone()
    d.apply_action(0)
    assert d.is_terminal() and d.returns() == [1.0, -1.0]


def test_key_is_the_position_not_the_path(game):
    assert play(game, "abc").key() == play(game, "cba").key()
    assert play(game, "dcde").key() == play(game, "dedc").key() != play(game, "ddce").key()
    assert play(game, "abc").key() != play(game, "bac").key()  # same cells, other owners
    hash(play(game, DRAW).key())


def test_observation_planes(game):
    s = play(game, "dde")
    x, o = s.observation(0), s.observation(1)
    assert x.shape == (6, 7, 2) and x.dtype == np.int8
    assert x[5, 3, 0] == 1 and x[5, 4, 0] == 1 and x[4, 3, 1] == 1  # row 0 is the top
    assert np.array_equal(o[:, :, 0], x[:, :, 1]) and np.array_equal(o[:, :, 1], x[:, :, 0])
    assert x.sum() == 3


def test_observations_match_pettingzoo(game):
    connect_four_v3 = pytest.importorskip("pettingzoo.classic.connect_four_v3")
    rng = random.Random(0)
    for _ in range(5):
        env = connect_four_v3.env()
        env.reset(seed=0)
        s = game.new_initial_state()
        while not s.is_terminal():
            obs, *_ = env.last()
            assert np.array_equal(obs["observation"], s.observation(s.current_player()))
            assert np.flatnonzero(obs["action_mask"]).tolist() == s.legal_actions()
            a = rng.choice(s.legal_actions())
            s.apply_action(a)
            env.step(a)
        assert [env.rewards[p] for p in env.possible_agents] == s.returns()


# --- the alpha-beta expert ---------------------------------------------------------------------


def run_game(game, players):
    s = game.new_initial_state()
    while not s.is_terminal():
        s.apply_action(players[s.current_player()].decide(s).action)
    return s


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_takes_an_immediate_win_and_blocks_one(game, depth):
    expert = make_expert(f"alphabeta:depth={depth}", game, seed=0)
    for seed in range(5):
        expert.reset(seed)
        assert expert.decide(play(game, "aabbcc")).action == 3  # X wins at d1
        assert expert.decide(play(game, "aabbc")).action == 3  # O must block d1
        assert expert.decide(play(game, "aebegec")).action == 4  # O's own win at e4 before blocking d1
    assert expert.nodes > 0


def test_scores_wins_and_losses(game):
    # X (b1 c1 d1) wins at a1 or e1 now, or two plies later after any other move (O can block only one).
    s = play(game, "bbccdd")
    expert = make_expert("alphabeta:depth=4", game, seed=0)
    assert {expert.decide(s).action for _ in range(20)} == {0, 4}
    values = expert.action_values(s)
    assert list(values) == s.legal_actions()
    assert values[0] == values[4] > max(v for a, v in values.items() if a not in (0, 4)) > 900
    # O to move with X threatening d1: every move but the block loses.
    values = expert.action_values(play(game, "aabbc"))
    assert values[3] > -900 and all(v < -900 for a, v in values.items() if a != 3)


@pytest.mark.parametrize("seat", [0, 1])
def test_depth_4_beats_random(game, seat):
    ab = make_expert("alphabeta:depth=4", game, seed=1)
    rnd = make_expert("random", game, seed=2)
    wins = 0
    for i in range(40):
        ab.reset(i)
        rnd.reset(1000 + i)
        players = (ab, rnd) if seat == 0 else (rnd, ab)
        wins += run_game(game, players).returns()[seat] == 1.0
    assert wins >= 38


def test_depth_4_beats_depth_1(game):
    deep = make_expert("alphabeta:4", game, seed=3)
    shallow = make_expert("alphabeta:1", game, seed=4)
    score = 0.0
    for i in range(12):
        deep.reset(i)
        shallow.reset(100 + i)
        seat = i % 2
        players = (deep, shallow) if seat == 0 else (shallow, deep)
        score += (run_game(game, players).returns()[seat] + 1) / 2
    assert score >= 9


def test_same_seed_same_game_other_seeds_vary(game):
    def transcript(seed):
        a = make_expert("alphabeta:depth=3", game, seed=seed)
        b = make_expert("alphabeta:depth=3", game, seed=seed + 1)
        return run_game(game, (a, b)).history()

    assert transcript(0) == transcript(0)
    assert len({tuple(transcript(seed)) for seed in range(6)}) > 1


def test_epsilon_one_plays_marked_random_moves(game):
    expert = make_expert("alphabeta:depth=4,epsilon=1.0", game, seed=0)
    s = _full_a(game)
    picks = set()
    for _ in range(50):
        d = expert.decide(s)
        assert d.explored and d.action in s.legal_actions()
        picks.add(d.action)
    assert len(picks) > 3 and expert.nodes == 0


def test_options_and_bad_knobs(game):
    expert = make_expert("alphabeta:depth=4,epsilon=0.1", game, seed=0)
    assert expert.options() == {"epsilon": 0.1, "depth": 4}
    assert make_expert("alphabeta", game).options() == {"epsilon": 0.0, "depth": 4}
    with pytest.raises(ExpertSpecError, match="depth"):
        make_expert("alphabeta:depth=0", game)
    with pytest.raises(ExpertSpecError, match="depht"):
        make_expert("alphabeta:depht=3", game)
    with pytest.raises(ExpertSpecError, match="depth"):
        make_expert("alphabeta:depth=deep", game)


def test_terminal_moves_match_playing_each_move(game):
    """The bitboard answer equals the contract's default (play every move on a clone), over the positions
    of random games, the last move of a full board included."""
    rng, checked, wins = random.Random(0), 0, 0
    for _ in range(300):
        s = game.new_initial_state()
        while not s.is_terminal():
            fast = s.terminal_moves()
            assert fast == envs.State.terminal_moves(s)
            wins += any(r != [0.0, 0.0] for r in fast.values())
            checked += 1
            s.apply_action(rng.choice(s.legal_actions()))
        assert s.terminal_moves() == {}
    assert checked > 3000 and wins > 300


def test_terminal_moves_see_the_draw_on_the_last_cell(game):
    s = play(game, DRAW[:-1])
    last = DRAW[-1]
    assert s.legal_texts() == [last] and s.terminal_moves() == {s.text_to_action(last): [0.0, 0.0]}
    assert envs.State.terminal_moves(s) == s.terminal_moves()

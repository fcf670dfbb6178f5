import random

import numpy as np
import pytest

import envs
from envs import TERMINAL, IllegalMoveError
from envs.experts import ExpertSpecError, make_expert
from envs.experts.othello import WIN, evaluate
from envs.othello import PASS, flips, legal_moves

# Found by random playouts (random.Random(364)): after these 8 moves black has no move and must pass.
PASS_GAME = "d3 c3 e6 d2 d1 e1 b2 c1"
# The classic 9-move game: black wipes out white with 55 squares still empty.
WIPEOUT = "f5 d6 c5 f4 e3 f6 g5 e6 e7"
# A random playout (random.Random(14)) that fills the board 32-32.
DRAW = (
    "d3 c5 f6 e3 f3 g7 c6 f2 e6 c3 b5 f5 g5 g6 g4 g3 e2 f4 b3 a3 h2 h3 h8 e7 d6 f1 b2 b7 d7 d8 "
    "b4 h1 e1 c1 c2 a5 a1 b1 a4 d2 h5 b6 f7 h6 h7 d1 a2 g8 f8 e8 a7 c4 c8 a6 c7 a8 h4 b8 g1 g2"
)
# A random playout (random.Random(476)) where neither side can move with 2 squares empty; white 33-29.
BLOCKED = (
    "e6 f6 f5 d6 d7 f7 e7 f4 g6 h5 g8 g7 f3 g4 g5 h6 c6 f2 h7 b7 f1 d8 h4 h8 c8 e8 c7 f8 a6 a7 "
    "b6 g2 d3 a5 b8 e2 a8 d2 c2 h3 d1 e3 g3 c5 a4 c4 e1 c1 b4 b3 b5 h2 b1 a3 a2 b2 g1 c3"
)


@pytest.fixture
def game():
    return envs.make("othello")


def play(game, moves):
    s = game.new_initial_state()
    for t in moves.split():
        s.apply_action(s.text_to_action(t))
    return s


def bits(*squares):
    return sum(1 << (8 * (int(sq[1]) - 1) + "abcdefgh".index(sq[0])) for sq in squares)


@pytest.mark.parametrize(
    ("depth", "count"), [(1, 4), (2, 12), (3, 56), (4, 244), (5, 1396), (6, 8200), (7, 55092), (8, 390216)]
)
def test_perft(game, depth, count):
    assert envs.perft(game.new_initial_state(), depth) == count


def test_start_position_and_prompt(game):
    s = game.new_initial_state()
    assert s.current_player() == 0 and s.legal_texts() == ["d3", "c4", "f5", "e6"]
    assert s.legal_actions() == [19, 26, 37, 44]
    assert s.prompt() == (
        "othello\n  a b c d e f g h\n"
        "1 . . . . . . . .\n2 . . . . . . . .\n3 . . . . . . . .\n4 . . . O X . . .\n"
        "5 . . . X O . . .\n6 . . . . . . . .\n7 . . . . . . . .\n8 . . . . . . . .\nX to move\n"
    )
    s.apply_action(s.text_to_action("d3"))
    assert s.prompt().splitlines()[4:7] == ["3 . . . X . . . .", "4 . . . X X . . .", "5 . . . X O . . ."]
    assert s.prompt().endswith("\nO to move\n") and s.current_player() == 1
    assert s.disc_counts() == (4, 1)
    info = game.info
    assert (info.num_players, info.num_distinct_actions, info.observation_shape) == (2, 65, (8, 8, 2))


def test_forced_pass(game):
    before_pass, last = PASS_GAME.rsplit(maxsplit=1)
    s = play(game, before_pass)
    assert PASS not in s.legal_actions()
    with pytest.raises(IllegalMoveError):
        s.text_to_action("pass")
    s.apply_action(s.text_to_action(last))
    assert s.current_player() == 0 and not s.is_terminal()
    assert s.legal_actions() == [PASS] and s.legal_texts() == ["pass"]
    assert s.prompt().endswith("\nX to move\n")
    assert legal_moves(*s.boards()) == 0 and legal_moves(*reversed(s.boards())) != 0
    before = s.key()
    s.apply_action(s.text_to_action(" PASS "))
    assert s.current_player() == 1 and s.history()[-1] == PASS and s.action_to_text(PASS) == "pass"
    # Same discs, other side to move: a different position.
    assert s.key() != before and s.key()[:2] == before[:2]
    assert PASS not in s.legal_actions()
    with pytest.raises(IllegalMoveError):
        s.apply_action(PASS)


def test_wipeout_ends_the_game_early(game):
    s = play(game, WIPEOUT.removesuffix(" e7"))
    assert not s.is_terminal() and "e7" in s.legal_texts()
    s.apply_action(s.text_to_action("e7"))
    assert s.is_terminal() and s.current_player() == TERMINAL and s.legal_actions() == []
    assert s.disc_counts() == (13, 0) and s.returns() == [1.0, -1.0]
    assert s.prompt().endswith("\nX won\n")


def test_blocked_board_is_scored_by_discs(game):
    s = play(game, BLOCKED)
    assert s.is_terminal() and s.legal_actions() == []
    black, white = s.disc_counts()
    assert (black, white) == (29, 33) and s.returns() == [-1.0, 1.0]
    assert s.prompt().endswith("\nO won\n")
    with pytest.raises(IllegalMoveError, match="none \\(the game is over\\)"):
        s.apply_action(PASS)


def test_draw(game):
    s = play(game, DRAW)
    assert s.is_terminal() and s.disc_counts() == (32, 32)
    assert s.returns() == [0.0, 0.0] and s.prompt().endswith("\ndraw\n")


@pytest.mark.parametrize(
    "bad", ["i9", "a0", "", "pass", "d4", "e5", "a1", "d33", "x", 64, 27, 0, -1, 65, None, True]
)
def test_illegal_moves_raise_and_leave_state_unchanged(game, bad):
    s = play(game, "f5")
    before = (s.prompt(), s.history(), s.legal_actions(), s.key())
    with pytest.raises(IllegalMoveError) as err:
        if isinstance(bad, str):
            s.text_to_action(bad)
        else:
            s.apply_action(bad)
    assert err.value.legal == s.legal_texts() == ["f4", "d6", "f6"]
    assert "legal moves: " + ", ".join(s.legal_texts()) in str(err.value)
    assert (s.prompt(), s.history(), s.legal_actions(), s.key()) == before


def test_text_round_trips(game):
    s = game.new_initial_state()
    assert [s.action_to_text(a) for a in (0, 7, 56, 63, 19, PASS)] == ["a1", "h1", "a8", "h8", "d3", "pass"]
    for a in range(65):
        assert s._parse(s.action_to_text(a)) == a
    assert s.text_to_action("  D3 ") == 19
    rng = random.Random(0)
    while not s.is_terminal():
        for a in s.legal_actions():
            assert s.text_to_action(s.action_to_text(a)) == a
        s.apply_action(rng.choice(s.legal_actions()))


STEPS = {
    "e": (0, 1),
    "se": (1, 1),
    "s": (1, 0),
    "sw": (1, -1),
    "w": (0, -1),
    "nw": (-1, -1),
    "n": (-1, 0),
    "ne": (-1, 1),
}


@pytest.mark.parametrize("direction", STEPS)
@pytest.mark.parametrize("run", [1, 3, 6])
def test_flips_along_each_direction(game, direction, run):
    dr, dc = STEPS[direction]
    r0, c0 = (0 if dr > 0 else 7 if dr < 0 else 3), (0 if dc > 0 else 7 if dc < 0 else 3)
    line = [8 * (r0 + i * dr) + (c0 + i * dc) for i in range(min(run + 3, 8))]
    start, between, end = line[0], sum(1 << sq for sq in line[1 : run + 1]), 1 << line[run + 1]
    s = game.state_from_bitboards(black=end, white=between, to_move=0)
    assert s.legal_actions() == [start] and flips(end, between, start) == between
    s.apply_action(start)
    assert s.boards() == (end | between | 1 << start, 0) and s.is_terminal()
    # A gap before the own disc flips nothing, so the square is no move.
    if run + 2 < len(line):
        beyond = 1 << line[run + 2]
        assert flips(beyond, between, start) == 0 and not legal_moves(beyond, between) >> start & 1


def test_flips_in_all_directions_at_once(game):
    white = bits("c3", "d3", "e3", "c4", "e4", "c5", "d5", "e5")
    black = bits("b2", "d2", "f2", "b4", "f4", "b6", "d6", "f6")
    s = game.state_from_bitboards(black, white, to_move=0)
    s.apply_action(s.text_to_action("d4"))
    assert s.boards() == (black | white | bits("d4"), 0)


def test_shifts_do_not_wrap_around_the_board():
    # h1 is next to a2 in square numbers, not on the board.
    assert not legal_moves(bits("b2"), bits("a2")) & bits("h1")
    assert flips(bits("b2"), bits("a2"), 7) == 0
    assert not legal_moves(bits("g1"), bits("h1")) & bits("a2")
    assert not legal_moves(bits("b3"), bits("a2")) & bits("h1")


def test_clone_is_independent(game):
    s = play(game, "f5 d6")
    c = s.clone()
    c.apply_action(c.text_to_action("c3"))
    assert s.history() == [37, 43] and c.history() == [37, 43, 18]
    assert s.key() != c.key() and s.current_player() == 0 and c.current_player() == 1
    assert s.legal_texts() == play(game, "f5 d6").legal_texts()


def test_observation_planes(game):
    s = game.new_initial_state()
    obs = s.observation(0)
    assert obs.dtype == np.int8 and obs.shape == (8, 8, 2)
    assert obs[3, 4, 0] == obs[4, 3, 0] == 1 and obs[3, 3, 1] == obs[4, 4, 1] == 1
    assert obs.sum() == 4
    assert np.array_equal(s.observation(1), obs[..., ::-1])
    s.apply_action(s.text_to_action("d3"))  # row 3 is row index 2
    assert (
        s.observation(0)[2, 3, 0] == 1
        and s.observation(0)[3, 3, 0] == 1
        and s.observation(1)[..., 0].sum() == 1
    )


def test_random_playouts_keep_the_invariants(game):
    rng = random.Random(1)
    for _ in range(30):
        s = game.new_initial_state()
        keys = set()
        while not s.is_terminal():
            assert s.returns() == [0.0, 0.0]
            keys.add(s.key())
            s.apply_action(rng.choice(s.legal_actions()))
        black, white = s.disc_counts()
        placements = len([a for a in s.history() if a != PASS])
        assert black + white == 4 + placements and len(s.history()) <= game.max_game_length()
        assert len(keys) == len(s.history())  # discs only grow, so no position repeats
        assert sum(s.returns()) == 0 and (s.returns()[0] > 0) == (black > white)


def duel(game, players, seed):
    s = game.new_initial_state()
    for p in players:
        p.reset(seed)
    while not s.is_terminal():
        s.apply_action(players[s.current_player()].decide(s).action)
    return s


def test_alphabeta_beats_random(game):
    expert = make_expert("alphabeta:depth=2", game, seed=0)
    rnd = make_expert("random", game, seed=0)
    wins = 0
    for i in range(20):
        seat = i % 2
        s = duel(game, [expert, rnd] if seat == 0 else [rnd, expert], seed=i)
        wins += s.returns()[seat] > 0
    assert wins >= 18
    assert expert.nodes > 0


def test_alphabeta_same_seed_same_game(game):
    def selfplay(seed):
        a = make_expert("alphabeta:1", game, seed=seed)
        b = make_expert("alphabeta:depth=1", game, seed=seed + 100)
        return duel(game, [a, b], seed=seed).history()

    assert selfplay(3) == selfplay(3)
    assert len({tuple(selfplay(seed)) for seed in range(4)}) > 1


def test_alphabeta_takes_the_corner(game):
    s = play(game, "d3 c5 b6 b5 c6 b7")
    assert "a8" in s.legal_texts() and len(s.legal_actions()) > 5
    for seed in range(3):
        expert = make_expert("alphabeta:depth=2", game, seed=seed)
        assert s.action_to_text(expert.decide(s).action) == "a8"
    scores = expert.root_scores(s)
    assert sorted(scores) == s.legal_actions() and max(scores, key=scores.get) == 56


def reference_value(s, depth, player):
    """Plain negamax through the State API with the expert's evaluation; `player` is to move."""
    black, white = s.boards()
    me, opp = (black, white) if player == 0 else (white, black)
    if s.is_terminal():
        diff = me.bit_count() - opp.bit_count()
        return diff + (WIN if diff > 0 else -WIN if diff < 0 else 0)
    if depth == 0:
        return evaluate(me, opp, legal_moves(me, opp), legal_moves(opp, me))
    values = []
    for a in s.legal_actions():
        child = s.clone()
        child.apply_action(a)
        values.append(-reference_value(child, depth if a == PASS else depth - 1, 1 - player))
    return max(values)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_alphabeta_agrees_with_plain_negamax(game, depth):
    rng = random.Random(depth)
    positions = [play(game, PASS_GAME.rsplit(maxsplit=1)[0])]  # the reply forces a pass
    for plies in (10, 30, 50, 56):
        s = game.new_initial_state()
        while s.move_number() < plies and not s.is_terminal():
            s.apply_action(rng.choice(s.legal_actions()))
        positions.append(s)
    expert = make_expert(f"alphabeta:{depth}", game, seed=0)
    for s in positions:
        if s.is_terminal() or s.legal_actions() == [PASS]:
            continue
        exact = {}
        for a in s.legal_actions():
            child = s.clone()
            child.apply_action(a)
            exact[a] = -reference_value(child, depth - 1, 1 - s.current_player())
        scores = expert.root_scores(s)
        best = max(exact.values())
        assert max(scores.values()) == best
        assert {a for a, v in scores.items() if v == best} == {a for a, v in exact.items() if v == best}
        assert all(scores[a] >= exact[a] for a in exact)  # pruned moves get upper bounds
        assert expert.decide(s).action in {a for a, v in exact.items() if v == best}


def test_alphabeta_sees_the_wipeout_and_passes(game):
    s = play(game, WIPEOUT.removesuffix(" e7"))
    assert len(s.legal_actions()) > 1
    scores = make_expert("alphabeta:1", game, seed=0).root_scores(s)
    assert [s.action_to_text(a) for a, v in scores.items() if v == max(scores.values())] == ["e7"]
    assert scores[s.text_to_action("e7")] == WIN + 13
    assert s.action_to_text(make_expert("alphabeta:1", game, seed=0).decide(s).action) == "e7"
    s = play(game, PASS_GAME)
    assert make_expert("alphabeta:3", game, seed=0).decide(s).action == PASS


def test_alphabeta_options_and_bad_knobs(game):
    expert = make_expert("alphabeta:depth=4,epsilon=0.1", game, seed=0)
    assert expert.options() == {"epsilon": 0.1, "depth": 4}
    assert make_expert("alphabeta", game).options() == {"epsilon": 0.0, "depth": 3}
    for spec, word in [
        ("alphabeta:depth=0", "depth"),
        ("alphabeta:-1", "depth"),
        ("alphabeta:depth=2.5", "depth"),
        ("alphabeta:depth=deep", "depth"),
        ("alphabeta:width=3", "width"),
        ("alphabeta:epsilon=1.5", "epsilon"),
    ]:
        with pytest.raises(ExpertSpecError, match=word):
            make_expert(spec, game)

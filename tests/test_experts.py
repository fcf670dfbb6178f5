"""Expert specs and the game-independent experts (minimax, rollout MCTS, random)."""

import pytest

import envs
from envs.experts import ExpertSpecError, Minimax, expert_names, make_expert, parse_spec


def play(game, first, second, seed=0):
    s = game.new_initial_state()
    players = (first, second)
    for p in players:
        p.reset(seed)
    while not s.is_terminal():
        s.apply_action(players[s.current_player()].decide(s).action)
    return s


def match(game, a, b, n):
    """Scores of `a` over `n` games, alternating colours: (wins, draws, losses)."""
    w = d = lo = 0
    for i in range(n):
        seat = i % 2
        s = play(game, *((a, b) if seat == 0 else (b, a)), seed=i)
        r = s.returns()[seat]
        w, d, lo = w + (r > 0), d + (r == 0), lo + (r < 0)
    return w, d, lo


@pytest.fixture
def ttt():
    return envs.make("tictactoe")


def test_parse_spec_forms():
    assert parse_spec("alphabeta:depth=4") == ("alphabeta", {"depth": 4})
    assert parse_spec("mcts:200") == ("mcts", {"": 200})
    assert parse_spec("minimax:epsilon=0.25") == ("minimax", {"epsilon": 0.25})
    assert parse_spec(" random ") == ("random", {})


def test_positional_value_sets_the_main_knob(ttt):
    assert make_expert("mcts:50", ttt).simulations == 50
    assert make_expert("minimax:0.3", ttt).epsilon == 0.3


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("alphazero", r"unknown expert 'alphazero'.*known: .*minimax"),
        ("mcts:simulation=5", r"no option 'simulation'.*options: .*simulations"),
        ("mcts:simulations=many", r"'simulations' must be int"),
        ("mcts:0", r"simulations must be >= 1"),
        ("minimax:epsilon=2", r"epsilon must be in \[0, 1\]"),
        ("random:3", r"takes no positional value"),
        ("alphabeta:depth=3", r"does not play 'tictactoe'.*minimax"),
        ("", r"non-empty"),
    ],
)
def test_bad_specs_are_clear(ttt, spec, message):
    with pytest.raises(ExpertSpecError, match=message):
        make_expert(spec, ttt)


def test_expert_names_per_game():
    assert expert_names("tictactoe") == ["mcts", "minimax", "random"]
    assert expert_names("connect_four") == ["alphabeta", "mcts", "random"]


def test_minimax_knows_the_value_of_the_game(ttt):
    m = make_expert("minimax", ttt)
    s = ttt.new_initial_state()
    assert m.value(s) == 0  # tic-tac-toe is a draw
    assert sorted(m.optimal_actions(s)) == list(range(9))  # every first move still draws
    s.apply_action(0)  # X a1: only the centre holds the draw for O
    assert m.optimal_actions(s) == [4]


def test_minimax_takes_the_fastest_win_and_blocks(ttt):
    m = make_expert("minimax", ttt, seed=0)
    s = ttt.new_initial_state()
    for t in ["a1", "a2", "b1", "b2"]:  # X threatens c1 (win now); O threatens c2
        s.apply_action(s.text_to_action(t))
    assert m.decide(s).action == s.text_to_action("c1")
    s = ttt.new_initial_state()
    for t in ["a1", "b2", "b1"]:  # O must block c1
        s.apply_action(s.text_to_action(t))
    assert m.optimal_actions(s) == [2] and m.decide(s).action == 2


def test_minimax_never_loses_and_beats_random(ttt):
    perfect = make_expert("minimax", ttt, seed=1)
    w, _d, lo = match(ttt, perfect, make_expert("random", ttt, seed=2), 40)
    assert lo == 0 and w >= 30
    assert match(ttt, perfect, make_expert("minimax", ttt, seed=3), 10) == (0, 10, 0)


def test_epsilon_mixes_in_marked_random_moves(ttt):
    noisy = make_expert("minimax:epsilon=1.0", ttt, seed=0)
    s = ttt.new_initial_state()
    decisions = [noisy.decide(s) for _ in range(50)]
    assert all(d.explored for d in decisions)
    assert len({d.action for d in decisions}) > 3
    assert not make_expert("minimax", ttt).decide(s).explored


def test_weaker_minimax_loses_points(ttt):
    w, _d, lo = match(ttt, make_expert("minimax", ttt, seed=0), make_expert("minimax:0.5", ttt, seed=1), 40)
    assert lo == 0 and w > 0


@pytest.mark.parametrize("name", ["tictactoe", "connect_four"])
def test_rollout_mcts_beats_random(name):
    game = envs.make(name)
    sims = 100 if name == "tictactoe" else 200
    w, _d, lo = match(
        game, make_expert(f"mcts:{sims}", game, seed=0), make_expert("random", game, seed=1), 10
    )
    assert w >= 8 and lo == 0


def test_rollout_mcts_finds_the_only_winning_move(ttt):
    s = ttt.new_initial_state()
    for t in ["b1", "a3"]:  # X to move: a1 is the only move that forces a win, and nothing is urgent yet
        s.apply_action(s.text_to_action(t))
    assert Minimax(ttt).optimal_actions(s) == [0]
    found = [make_expert("mcts:2000", ttt, seed=seed).decide(s).action for seed in range(5)]
    assert found.count(0) >= 4


def test_same_seed_same_game_and_nodes_counted(ttt):
    a = play(ttt, make_expert("mcts:30", ttt, seed=5), make_expert("random", ttt, seed=6), seed=7)
    b = play(ttt, make_expert("mcts:30", ttt, seed=5), make_expert("random", ttt, seed=6), seed=7)
    assert a.history() == b.history()
    m = make_expert("mcts:30", ttt, seed=0)
    m.decide(ttt.new_initial_state())
    assert m.nodes >= 30


def test_batched_act(ttt):
    states = [ttt.new_initial_state() for _ in range(4)]
    actions = make_expert("minimax", ttt, seed=0).act(states)
    assert len(actions) == 4 and all(0 <= a < 9 for a in actions)

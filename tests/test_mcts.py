"""PUCT search: solves positions, matches minimax, batches across trees, reuses trees, survives passes."""

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import agents
import envs
from agents.mcts import SearchOutput, Tree, rollout_evaluator, run, search, select_action
from envs.experts import Minimax
from envs.othello import PASS


def position(name, moves=""):
    game = envs.make(name) if isinstance(name, str) else name
    s = game.new_initial_state()
    for m in moves.split():
        s.apply_action(s.text_to_action(m))
    return s


def uniform(s, value):
    acts = s.legal_actions()
    probs = np.full(len(acts), 1 / len(acts))
    return agents.Evaluation(acts, probs, np.log(probs), float(value))


class Counting:
    """A fake network (uniform priors, value 0) that records every batch it is given."""

    def __init__(self):
        self.batches = []

    def __call__(self, states):
        assert not any(s.is_terminal() for s in states), "a terminal leaf reached the evaluator"
        assert len({id(s) for s in states}) == len(states), "a leaf was sent twice in one batch"
        self.batches.append(len(states))
        return [uniform(s, 0.0) for s in states]


def best_text(s, out):
    return s.action_to_text(select_action(out, temperature=0))


# --- solve this position ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, moves, good",
    [
        ("tictactoe", "a1 b1 a2 b2", {"a3"}),  # win now (O threatens b3)
        ("tictactoe", "a1 b2 a2", {"a3"}),  # must block
        ("tictactoe", "a1 b1 b2 c3", {"a2", "a3"}),  # fork: a forced win three plies deep
        ("connect_four", "a g a g a g", {"a"}),  # win now (O threatens g too)
        ("connect_four", "a g a f a", {"a"}),  # must block the column
        ("connect_four", "d d e e", {"c", "f"}),  # open three on the bottom row: a double threat
    ],
)
@pytest.mark.parametrize("leaves", [1, 8])
def test_rollout_search_solves_position(name, moves, good, leaves):
    s = position(name, moves)
    (out,) = run([s], rollout_evaluator(rollouts=4, seed=0), simulations=400, leaves_per_tree=leaves)
    assert best_text(s, out) in good
    assert out.visits.sum() == 400 and out.simulations == 400


def test_root_value_matches_minimax_with_an_exact_evaluator():
    game = envs.make("tictactoe")
    mm = Minimax(game)

    def exact(states):
        return [uniform(s, np.sign(mm.value(s))) for s in states]

    rng = random.Random(0)
    states = []
    while len(states) < 20:
        s = game.new_initial_state()
        for _ in range(rng.randrange(7)):
            if not s.is_terminal():
                s.apply_action(rng.choice(s.legal_actions()))
        if not s.is_terminal():
            states.append(s)
    for s, out in zip(states, run(states, exact, simulations=300), strict=True):
        assert out.value == pytest.approx(np.sign(mm.value(s)), abs=0.3), s
        assert select_action(out, temperature=0) in mm.optimal_actions(s), s


# --- who moves next: always `current_player()` ----------------------------------------------------
_solved: dict = {}


def solve(s):
    """Returns vector under perfect play (small endgames only)."""
    if s.is_terminal():
        return tuple(s.returns())
    if s.key() not in _solved:
        p, best = s.current_player(), None
        for a in s.legal_actions():
            c = s.clone()
            c.apply_action(a)
            r = solve(c)
            if best is None or r[p] > best[p]:
                best = r
        _solved[s.key()] = best
    return _solved[s.key()]


class BonusNim(envs.Game):
    """Take 1, 2 or 3 stones; taking the last one wins; leaving a multiple of 3 earns another move at once.

    The same player moves twice in a row, so search that assumed alternation would get signs wrong.
    """

    name = "bonus_nim"
    info = envs.GameInfo(num_players=2, num_distinct_actions=3, max_game_length=20, observation_shape=(1,))

    def __init__(self, pile):
        super().__init__(pile=pile)

    def new_initial_state(self):
        return NimState(self)


class NimState(envs.State):
    __slots__ = ("pile", "player")

    def __init__(self, game):
        super().__init__(game)
        self.pile, self.player = game.options["pile"], 0

    def current_player(self):
        return envs.TERMINAL if self.pile == 0 else self.player

    def legal_actions(self):
        return [a for a in range(3) if a < self.pile]

    def _is_legal(self, action):
        return 0 <= action < min(3, self.pile)

    def _apply(self, action):
        self.pile -= action + 1
        if self.pile % 3 or self.pile == 0:
            self.player = 1 - self.player

    def clone(self):
        s = NimState(self.game)
        s.pile, s.player, s._history = self.pile, self.player, self._history.copy()
        return s

    def is_terminal(self):
        return self.pile == 0

    def returns(self):
        if self.pile:
            return [0.0, 0.0]
        return [-1.0, 1.0] if self.player == 0 else [1.0, -1.0]  # the taker of the last stone wins

    def key(self):
        return (self.pile, self.player)

    def observation(self, player):
        return np.array([self.pile], dtype=np.int8)

    def prompt(self):
        return f"{self.pile} stones, player {self.player} to move\n"

    def action_to_text(self, action):
        return str(action + 1)

    def _parse(self, text):
        return {"1": 0, "2": 1, "3": 2}.get(text)


def exact_evaluator(states):
    return [uniform(s, solve(s)[s.current_player()]) for s in states]


@pytest.mark.parametrize("pile", range(5, 10))
def test_extra_moves_keep_value_signs(pile):
    s = BonusNim(pile).new_initial_state()
    p = s.current_player()
    values = {}
    for a in s.legal_actions():
        c = s.clone()
        c.apply_action(a)
        values[a] = solve(c)[p]
    for evaluate in (exact_evaluator, rollout_evaluator(rollouts=4, seed=0)):
        (out,) = run([s], evaluate, simulations=500)
        assert values[select_action(out, temperature=0)] == max(values.values())
        assert np.sign(out.value) == solve(s)[p]


def othello_endgame(seed, empties):
    """The position of a seeded random game when `empties` squares are left."""
    rng, s = random.Random(seed), position("othello")
    while 64 - sum(b.bit_count() for b in s.boards()) > empties:
        s.apply_action(rng.choice(s.legal_actions()))
    return s


def count_passes(s):
    if s.is_terminal():
        return 0
    n = int(s.legal_actions() == [PASS])
    for a in s.legal_actions():
        c = s.clone()
        c.apply_action(a)
        n += count_passes(c)
    return n


@pytest.mark.parametrize("seed", [6, 18])
def test_othello_endgame_with_passes_in_the_tree(seed):
    s = othello_endgame(seed, 7)
    p = s.current_player()
    values = {}
    for a in s.legal_actions():
        c = s.clone()
        c.apply_action(a)
        values[a] = solve(c)[p]
    assert sorted(values.values()) == [-1.0] * (len(values) - 1) + [1.0]  # one winning move
    assert count_passes(s) > 50  # othello passes are moves of their own: the search must score them

    for evaluate in (exact_evaluator, rollout_evaluator(rollouts=4, seed=0)):
        (out,) = run([s], evaluate, simulations=300)
        assert values[select_action(out, temperature=0)] == 1.0
        assert out.value > 0.5


def test_othello_root_that_must_pass():
    found = 0
    for seed in range(100):
        rng, s = random.Random(seed), position("othello")
        while not s.is_terminal() and s.legal_actions() != [PASS]:
            s.apply_action(rng.choice(s.legal_actions()))
        if s.is_terminal() or 64 - sum(b.bit_count() for b in s.boards()) > 8:
            continue
        found += 1
        tree = Tree(s)
        (out,) = search([tree], rollout_evaluator(rollouts=4, seed=seed), simulations=100)
        assert out.actions == [PASS] and out.visits.tolist() == [100]
        exact = solve(s)[s.current_player()]
        if exact:
            assert np.sign(out.value) == exact
        tree.advance(PASS)  # the opponent's view of the same line is the opposite value
        (after,) = search([tree], rollout_evaluator(seed=seed), simulations=0)
        assert after.value == pytest.approx(-out.value, abs=0.1)
    assert found >= 3


# --- batching -------------------------------------------------------------------------------------
@pytest.mark.parametrize("leaves", [1, 4])
def test_one_evaluate_call_per_wave_for_all_trees(leaves):
    ev = Counting()
    trees = [Tree(position("connect_four")) for _ in range(16)]
    outs = search(trees, ev, simulations=32, leaves_per_tree=leaves)
    assert len(ev.batches) == 1 + -(-32 // leaves)  # the roots, then one call per wave
    assert ev.batches[0] == 16 and all(b > 1 for b in ev.batches)
    assert sum(ev.batches) <= 16 * 33
    assert all(o.visits.sum() == 32 and o.simulations == 32 for o in outs)


def test_terminal_leaves_skip_the_evaluator():
    ev = Counting()  # asserts it is never given a finished game
    s = position("tictactoe", "a1 b1 a2 b2 c3 c1")  # seven plies: every line ends within three more
    (out,) = run([s], ev, simulations=200)
    assert out.visits.sum() == 200
    assert sum(ev.batches) < 200  # leaves past the end were scored by the rules


def test_duplicate_leaf_in_one_wave_is_evaluated_once():
    for seed in range(100):  # a position that must pass has a single child: every descent reaches it
        rng, s = random.Random(seed), position("othello")
        while not s.is_terminal() and s.legal_actions() != [PASS]:
            s.apply_action(rng.choice(s.legal_actions()))
        if not s.is_terminal():
            break
    ev = Counting()
    (out,) = run([s], ev, simulations=8, leaves_per_tree=8)
    assert out.visits.tolist() == [8]
    assert ev.batches[:2] == [1, 1]


# --- tree reuse -----------------------------------------------------------------------------------
def test_tree_reuse_keeps_the_subtree():
    ev = rollout_evaluator(seed=0)
    tree = Tree(position("connect_four"))
    (out,) = search([tree], ev, simulations=64)
    best = select_action(out, temperature=0)
    kept = int(out.visits[out.actions.index(best)])
    tree.advance(best)
    assert tree.state.history() == [best]
    assert tree.visits == kept > 1
    (again,) = search([tree], ev, simulations=32)
    assert again.simulations == 32 and again.visits.sum() == kept - 1 + 32
    assert tree.visits == kept + 32


def test_advance_on_an_unvisited_action_gives_a_fresh_root():
    tree = Tree(position("connect_four"))
    (out,) = search([tree], Counting(), simulations=3)
    unvisited = [a for a, n in zip(out.actions, out.visits, strict=True) if n == 0]
    tree.advance(unvisited[-1])
    assert tree.visits == 0 and tree.state.history() == [unvisited[-1]]
    (again,) = search([tree], Counting(), simulations=5)
    assert again.visits.sum() == 5 and tree.visits == 6
    fresh = Tree(position("connect_four"))
    fresh.advance(3)  # never searched at all
    assert fresh.state.history() == [3]
    with pytest.raises(envs.IllegalMoveError):
        tree.advance(99)


def test_search_of_a_finished_game_raises():
    with pytest.raises(ValueError, match="finished"):
        run([position("tictactoe", "a1 b1 a2 b2 a3")], Counting(), simulations=1)


# --- noise and determinism ------------------------------------------------------------------------
def test_dirichlet_noise_moves_visits_not_the_prior_and_is_seeded():
    def go(alpha, seed):
        trees = [Tree(position("connect_four")) for _ in range(4)]
        kw = {"dirichlet_alpha": alpha, "rng": np.random.default_rng(seed)}
        return search(trees, rollout_evaluator(seed=0), simulations=64, **kw), trees

    plain, _ = go(None, 0)
    noisy, trees = go(0.3, 0)
    assert any(not np.array_equal(p.visits, n.visits) for p, n in zip(plain, noisy, strict=True))
    for p, n in zip(plain, noisy, strict=True):
        np.testing.assert_array_equal(p.prior, n.prior)
    again, _ = go(0.3, 0)
    for a, n in zip(again, noisy, strict=True):
        np.testing.assert_array_equal(a.visits, n.visits)
        assert a.value == n.value
    other, _ = go(0.3, 1)
    assert any(not np.array_equal(o.visits, n.visits) for o, n in zip(other, noisy, strict=True))
    later = search(trees, rollout_evaluator(seed=0), simulations=8)  # the stored prior stayed clean
    np.testing.assert_allclose(later[0].prior, np.full(7, 1 / 7))


# --- choosing the move ----------------------------------------------------------------------------
def test_select_action():
    def out(visits, prior):
        v, p = np.array(visits), np.array(prior, dtype=float)
        return SearchOutput([0, 3, 5], v, v / max(v.sum(), 1), p, 0.0, int(v.sum()))

    assert select_action(out([2, 5, 5], [0.2, 0.5, 0.3]), temperature=0) == 3  # tie: higher prior
    assert select_action(out([5, 5, 1], [0.4, 0.4, 0.2]), temperature=0) == 0  # then lower action
    rng = np.random.default_rng(0)
    o = out([0, 30, 10], [0.6, 0.2, 0.2])
    picks = [select_action(o, temperature=1.0, rng=rng) for _ in range(2000)]
    assert 0 not in picks
    assert picks.count(3) / len(picks) == pytest.approx(0.75, abs=0.04)
    cold = [select_action(o, temperature=0.1, rng=rng) for _ in range(200)]
    assert cold.count(3) == 200  # (30 / 10) ** 10: effectively greedy


# --- a real network -------------------------------------------------------------------------------
def test_policy_as_evaluator_on_connect_four():
    tok = agents.CharTokenizer()
    cfg = agents.ModelConfig.preset("nano", vocab_size=tok.vocab_size, block_size=256)
    policy = agents.new_policy(cfg, device="cpu", seed=0)
    trees = [Tree(position("connect_four", m)) for m in ("", "d", "d c", "a b c")]
    kw = {"simulations": 16, "leaves_per_tree": 2, "dirichlet_alpha": 1.0, "rng": np.random.default_rng(0)}
    outs = search(trees, policy.evaluate, **kw)
    direct = policy.evaluate([t.state for t in trees])
    for tree, o, e in zip(trees, outs, direct, strict=True):
        assert o.visits.sum() == 16 and o.policy.sum() == pytest.approx(1.0)
        assert -1.0 <= o.value <= 1.0
        assert o.actions == e.actions and o.prior == pytest.approx(e.probs, abs=1e-5)  # noise not stored
        tree.advance(select_action(o, temperature=1.0, rng=np.random.default_rng(0)))
    outs = search(trees, policy.evaluate, simulations=8)
    assert all(o.simulations == 8 for o in outs)


def test_search_bench_runs():
    bench = Path(__file__).resolve().parents[1] / "bench/search.py"
    args = ["--games", "3", "--simulations", "4", "--size", "nano", "--threads", "1", "--device", "cpu"]
    proc = subprocess.run([sys.executable, str(bench), *args], capture_output=True, text=True, check=True)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 9 and all(r.rstrip(" |").split("| ")[-1].strip() for r in rows)
    assert "| policy nano | batching gain |" in proc.stdout


# --- proofs (MCTS-Solver) -------------------------------------------------------------------------
def blind(*ignored):
    """A fake network that all but ignores the moves `ignored` (prior 1e-6 against 1), value 0."""

    def evaluate(states):
        out = []
        for s in states:
            acts = s.legal_actions()
            probs = np.array([1e-6 if s.action_to_text(a) in ignored else 1.0 for a in acts])
            probs /= probs.sum()
            out.append(agents.Evaluation(acts, probs, np.log(probs), 0.0))
        return out

    return evaluate


def test_a_move_that_wins_at_once_is_played_whatever_the_prior():
    s = position("connect_four", "a g a g a g")  # X wins with a, and the network all but ignores it
    (out,) = run([s], blind("a"), simulations=4)
    a = out.actions.index(s.text_to_action("a"))
    assert best_text(s, out) == "a" and out.policy[a] == 1.0 and out.value == 1.0
    assert out.visits[a] == 4  # the proof is there at the root's expansion: every simulation goes there


def test_a_move_that_lets_the_opponent_win_at_once_is_never_chosen():
    s = position("connect_four", "a g a f a")  # O must block a, which the network all but ignores
    (out,) = run([s], blind("a"), simulations=16)
    a = out.actions.index(s.text_to_action("a"))
    assert best_text(s, out) == "a" and out.policy[a] == 1.0  # each other move refuted by one visit
    assert out.visits.sum() == 16 and sorted(out.visits.tolist())[:-1] == [1] * 6


def test_proofs_travel_up_the_tree():
    uniform_net = lambda states: [uniform(s, 0.0) for s in states]  # noqa: E731
    fork = position("tictactoe", "a1 b1 b2 c3")  # a2 or a3: O cannot stop both threats
    (out,) = run([fork], uniform_net, simulations=100)
    assert out.value == 1.0 and best_text(fork, out) in {"a2", "a3"}
    assert out.policy.max() == 1.0  # a proven win is the whole target
    lost = position("tictactoe", "a1 b1 b2 c3 a3")  # O to move against two threats: every move loses
    (out,) = run([lost], uniform_net, simulations=50)
    assert out.value == -1.0 and np.allclose(out.policy, out.prior)  # nothing to prefer but the prior
    assert out.visits.min() > 1  # PUCT spreads the simulations, as if nothing were known

"""PettingZoo faces: our games as AEC envs (`envs.make_aec`) and PettingZoo's classic envs as games."""

import random
import warnings

import numpy as np
import pytest

import envs
from envs import TERMINAL, IllegalMoveError
from envs.aec import GameAECEnv

with warnings.catch_warnings():
    # pettingzoo.test imports pettingzoo.classic.connect_four_v3 for its own fixtures, an import path
    # newer PettingZoo deprecates in favour of its registry; nothing here uses that path.
    warnings.simplefilter("ignore", DeprecationWarning)
    from pettingzoo.test import api_test

# api_test warns about these for every env with the classic dict observation {"observation",
# "action_mask"}; it exempts PettingZoo's own classic envs by name only. Anything else fails the test.
_EXPECTED_API_WARNINGS = (
    "Observation numpy array is all zeros",  # the empty starting board
    "Observation is not a NumPy array",  # the dict observation
    "Observation space for each agent probably should be",  # its Dict space
)


def _api_test(env, seed=0):
    for i, agent in enumerate(env.possible_agents):
        env.action_space(agent).seed(seed + i)  # api_test samples random actions from these
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        api_test(env, num_cycles=200, verbose_progress=False)
    unexpected = [str(w.message) for w in caught if not str(w.message).startswith(_EXPECTED_API_WARNINGS)]
    assert not unexpected


# --- our games through the AEC face -------------------------------------------------------------


@pytest.mark.parametrize("name", envs.names())
def test_api_test(name):
    env = envs.make_aec(name)
    assert env.metadata["name"] == f"{name}_v0"
    assert env.possible_agents == ["player_0", "player_1"]
    _api_test(env)


@pytest.mark.parametrize("name", envs.names())
def test_aec_agrees_with_state_move_by_move(name):
    env = envs.make_aec(name)
    game = envs.make(name)
    rng = random.Random(name)
    for episode in range(5):
        env.reset(seed=episode)
        state = game.new_initial_state()
        final = {}
        for agent in env.agent_iter():
            obs, reward, terminated, truncated, _ = env.last()
            player = env.possible_agents.index(agent)
            np.testing.assert_array_equal(obs["observation"], state.observation(player))
            assert obs["observation"].dtype == np.int8 and obs["action_mask"].dtype == np.int8
            if terminated or truncated:
                assert state.is_terminal() and terminated and not truncated
                assert not obs["action_mask"].any()
                final[agent] = reward
                env.step(None)
                continue
            assert player == state.current_player() and reward == 0
            assert np.flatnonzero(obs["action_mask"]).tolist() == state.legal_actions()
            for other in env.agents:
                if other != agent:
                    assert not env.observe(other)["action_mask"].any()
            action = rng.choice(state.legal_actions())
            env.step(action)
            state.apply_action(action)
        assert state.is_terminal() and env.agents == []
        assert [final[a] for a in env.possible_agents] == state.returns()


def test_aec_illegal_action_raises_and_changes_nothing():
    env = envs.make_aec("tictactoe")
    env.reset()
    env.step(4)
    before = (env.agent_selection, env.game_state.history(), dict(env._cumulative_rewards))
    for bad in (4, 9, -1, None, "b2"):
        with pytest.raises(IllegalMoveError):
            env.step(bad)
        assert (env.agent_selection, env.game_state.history(), dict(env._cumulative_rewards)) == before


def test_aec_dead_agents_leave_in_turn_and_reset_restarts():
    env = envs.make_aec("tictactoe")
    env.reset()
    for a in (0, 3, 1, 4, 2):  # X takes the top row
        env.step(a)
    assert env.terminations == {"player_0": True, "player_1": True}
    assert env.rewards == {"player_0": 1.0, "player_1": -1.0}
    assert env.agent_selection == "player_1"
    with pytest.raises(ValueError):
        env.step(0)  # a dead agent's only action is None
    env.step(None)
    assert env.agents == ["player_0"] and env.last()[1] == 1.0
    env.step(None)
    assert env.agents == []
    env.reset()
    assert env.agents == env.possible_agents and env.agent_selection == "player_0"
    assert env.observe("player_0")["action_mask"].sum() == 9


def test_aec_render(capsys):
    ansi = envs.make_aec("tictactoe", render_mode="ansi")
    ansi.reset()
    ansi.step(4)
    assert ansi.render() == ansi.game_state.prompt()
    human = envs.make_aec("tictactoe", render_mode="human")
    human.reset()
    capsys.readouterr()
    human.step(4)  # human mode draws after every step
    assert capsys.readouterr().out == human.game_state.prompt() + "\n"
    with pytest.raises(ValueError):
        envs.make_aec("tictactoe", render_mode="rgb_array")


# --- PettingZoo's classic envs as games ---------------------------------------------------------


def _theirs(module: str):
    # The implementation modules rather than `pettingzoo.classic.tictactoe_v3`: the same `env`
    # factory, minus the DeprecationWarning newer PettingZoo raises on that import path.
    pytest.importorskip("pettingzoo.classic")
    return pytest.importorskip(f"pettingzoo.classic.{module}").env


def _ttt_cell(action: int) -> int:
    # Ours numbers cells row-major (3*row + col); PettingZoo's tictactoe_v3 column-major
    # (3*col + row). The map swaps row and col, so it is its own inverse.
    return 3 * (action % 3) + action // 3


def _identity(action: int) -> int:
    return action  # Connect Four columns are 0-6 in both


# name -> (PettingZoo module, action map ours->theirs, observation map ours->theirs)
_PAIRS = {
    # tictactoe_v3 reshapes its column-major cell list into (3, 3), so its planes are our transpose.
    "tictactoe": ("tictactoe.tictactoe", _ttt_cell, lambda obs: obs.transpose(1, 0, 2)),
    "connect_four": ("connect_four.connect_four", _identity, lambda obs: obs),
}

X_WINS, O_WINS, DRAW = [1.0, -1.0], [-1.0, 1.0], [0.0, 0.0]
# fmt: off
_C4_DRAW = [3, 3, 0, 2, 5, 4, 5, 6, 4, 2, 2, 3, 3, 5, 5, 2, 2, 4, 3, 3, 1,
            1, 2, 1, 5, 5, 0, 4, 0, 4, 4, 6, 6, 6, 6, 0, 1, 0, 6, 0, 1, 1]  # a full board, no four
# fmt: on
_HAND_PICKED = {  # name -> line -> (moves: our move text or action ids, expected returns)
    "tictactoe": {
        "row": (["a1", "a2", "b1", "b2", "c1"], X_WINS),
        "column": (["b1", "a1", "c3", "a2", "b3", "a3"], O_WINS),
        "diagonal": (["a1", "b1", "b2", "c1", "c3"], X_WINS),
        "anti-diagonal": (["c1", "a1", "b2", "a2", "a3"], X_WINS),
        "draw": (["a1", "b2", "c3", "b1", "b3", "a3", "c1", "c2", "a2"], DRAW),
    },
    "connect_four": {
        "row": ([0, 0, 1, 1, 2, 2, 3], X_WINS),
        "column": ([0, 1, 0, 1, 0, 1, 6, 1], O_WINS),
        "diagonal": ([0, 1, 1, 2, 2, 3, 2, 3, 3, 6, 3], X_WINS),
        "anti-diagonal": ([6, 5, 5, 4, 4, 3, 4, 3, 3, 0, 3], X_WINS),
        "draw": (_C4_DRAW, DRAW),
    },
}


@pytest.fixture(scope="module", params=sorted(_PAIRS))
def pair(request):
    name = request.param
    module, to_theirs, obs_to_theirs = _PAIRS[name]
    return envs.make(name), envs.from_pettingzoo(_theirs(module)), to_theirs, obs_to_theirs


def _play_both(pair, actions):
    """Play our actions in both games, checking they agree at every step; returns both end states."""
    ours_game, theirs_game, to_theirs, obs_to_theirs = pair
    ours, theirs = ours_game.new_initial_state(), theirs_game.new_initial_state()
    for action in [*actions, None]:
        assert ours.current_player() == theirs.current_player()
        assert sorted(map(to_theirs, ours.legal_actions())) == theirs.legal_actions()
        for p in range(2):
            np.testing.assert_array_equal(obs_to_theirs(ours.observation(p)), theirs.observation(p))
        if action is None:
            break
        ours.apply_action(action)
        theirs.apply_action(to_theirs(action))
    assert ours.is_terminal() and theirs.is_terminal() and theirs.current_player() == TERMINAL
    assert ours.returns() == theirs.returns()
    assert sum(theirs.returns()) == 0
    return ours, theirs


def test_adapter_game_info(pair):
    ours_game, theirs_game, _, _ = pair
    assert theirs_game.name == f"{ours_game.name}_v3"
    assert theirs_game.num_players() == 2
    assert theirs_game.num_distinct_actions() == ours_game.num_distinct_actions()
    assert theirs_game.observation_shape() == ours_game.observation_shape()


def test_adapter_game_passes_the_checker(pair):
    envs.check_game(pair[1], games=3)


def test_adapter_agrees_on_random_games(pair):
    ours_game = pair[0]
    outcomes = set()
    for seed in range(200):
        rng = random.Random(seed)
        state = ours_game.new_initial_state()
        while not state.is_terminal():
            state.apply_action(rng.choice(state.legal_actions()))
        ours, _ = _play_both(pair, state.history())
        outcomes.add(tuple(ours.returns()))
    assert {(1.0, -1.0), (-1.0, 1.0)} <= outcomes  # both players' wins were exercised


@pytest.mark.parametrize("line", ["row", "column", "diagonal", "anti-diagonal", "draw"])
def test_adapter_agrees_on_hand_picked_games(pair, line):
    ours_game = pair[0]
    moves, expected = _HAND_PICKED[ours_game.name][line]
    probe = ours_game.new_initial_state()
    actions = [probe.text_to_action(m) if isinstance(m, str) else m for m in moves]
    ours, _ = _play_both(pair, actions)
    assert ours.returns() == expected


def test_adapter_illegal_action_raises_and_changes_nothing(pair):
    theirs_game = pair[1]
    s = theirs_game.new_initial_state()
    s.apply_action(0)
    legal, obs, key = s.legal_actions(), s.observation(0), s.key()
    illegal = [a for a in range(theirs_game.num_distinct_actions()) if a not in legal]
    for bad in [*illegal, -1, theirs_game.num_distinct_actions(), None, 1.0]:
        with pytest.raises(IllegalMoveError):
            s.apply_action(bad)
    for text in ("99", "x", "-1", ""):
        with pytest.raises(IllegalMoveError):
            s.text_to_action(text)
    assert s.legal_actions() == legal and s.key() == key and s.history() == [0]
    np.testing.assert_array_equal(s.observation(0), obs)
    assert s.text_to_action(f" {legal[0]} ") == legal[0] and s.action_to_text(legal[0]) == str(legal[0])


def test_adapter_clone_is_independent(pair):
    theirs_game = pair[1]
    s = theirs_game.new_initial_state()
    s.apply_action(1)
    c = s.clone()
    assert c.key() == s.key() and c.legal_actions() == s.legal_actions() and c.history() == s.history()
    c.apply_action(2)
    assert s.history() == [1] and s.current_player() == 1 and c.current_player() == 0
    assert c.key() != s.key()
    s.apply_action(3)
    assert c.history() == [1, 2] and s.history() == [1, 3]
    # Play the clone to the end; the original is unaffected.
    while not c.is_terminal():
        c.apply_action(c.legal_actions()[0])
    assert not s.is_terminal() and s.returns() == [0.0, 0.0] and s.legal_actions()
    assert sum(c.returns()) == 0


def test_adapter_terminal_state_and_prompt(pair):
    theirs_game = pair[1]
    s = theirs_game.new_initial_state()
    assert s.prompt().startswith(theirs_game.name + "\n") and s.prompt().endswith("player_0 to move\n")
    while not s.is_terminal():
        s.apply_action(s.legal_actions()[-1])
    assert s.legal_actions() == [] and s.current_player() == TERMINAL
    with pytest.raises(IllegalMoveError):
        s.apply_action(0)
    assert "game over" in s.prompt()


def test_adapter_key_is_the_position_not_the_path():
    game = envs.from_pettingzoo(_theirs("tictactoe.tictactoe"))
    a, b = game.new_initial_state(), game.new_initial_state()
    for x in (0, 4, 8):
        a.apply_action(x)
    for x in (8, 4, 0):
        b.apply_action(x)
    assert a.key() == b.key() and hash(a.key()) == hash(b.key())


def test_adapter_round_trips_through_the_aec_face(pair):
    # PettingZoo env -> our Game -> our AEC env still passes PettingZoo's own API test.
    _api_test(GameAECEnv(pair[1]))

"""Players from spec strings: experts, checkpoints, search budgets, run directories, and bad specs."""

import pytest

import agents
import envs
import selfplay.arena.players as players
from selfplay.arena.players import PlayerSpecError


def save_checkpoint(path, game, *, step=0, stage="imitation", seed=0):
    tok = agents.CharTokenizer()
    cfg = agents.ModelConfig.preset("nano", vocab_size=tok.vocab_size, block_size=256)
    policy = agents.new_policy(cfg, device="cpu", seed=seed, meta={"game": game})
    return agents.save(policy, path, meta={"stage": stage, "step": step})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tic-tac-toe run with three checkpoints (names sorting against their steps) and a Connect Four one."""
    root = tmp_path_factory.mktemp("players")
    save_checkpoint(root / "ttt/checkpoints/imitation", "tictactoe", step=500)
    save_checkpoint(root / "ttt/checkpoints/a_later", "tictactoe", step=200, stage="selfplay", seed=1)
    save_checkpoint(root / "ttt/checkpoints/b_sooner", "tictactoe", step=100, stage="selfplay", seed=2)
    save_checkpoint(root / "c4/checkpoints/imitation", "connect_four")
    (root / "ttt/checkpoints/.half.tmp").mkdir()  # a checkpoint being written: never listed
    return root


def test_expert_specs_get_one_normalised_name():
    ttt, c4 = envs.make("tictactoe"), envs.make("connect_four")
    assert players.check("random", ttt) == "random"
    assert players.check(" minimax:0.3 ", ttt) == players.check("minimax:epsilon=0.3", ttt)
    assert players.check("minimax:0.0", ttt) == "minimax"
    assert players.check("mcts", c4) == players.check("mcts:200", c4) == "mcts:simulations=200"
    assert players.check("alphabeta:2", c4) == "alphabeta:depth=2"
    p = players.make("minimax:0.3", ttt, seed=0)
    assert p.name == "minimax:epsilon=0.3"
    states = [ttt.new_initial_state() for _ in range(4)]
    assert all(a in range(9) for a in p.act(states))


def test_expert_copies_per_game_are_seeded():
    game = envs.make("tictactoe")
    p = players.make("random", game)
    one, two = p.for_game(7), p.for_game(7)
    assert one is not p and one is not two
    states = [game.new_initial_state() for _ in range(20)]
    assert one.act(states) == two.act(states)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nonsense", "unknown player 'nonsense'.*experts for tictactoe: mcts, minimax, random"),
        ("alphabeta:4", "expert 'alphabeta' does not play 'tictactoe'"),
        ("minimax:depth=3", "has no option 'depth'"),
        ("no/such/ckpt", "no such checkpoint directory"),
        ("no/such/ckpt@mcts:8", "no such checkpoint directory"),
        ("", "non-empty string"),
    ],
)
def test_bad_specs_are_clear_errors(spec, message):
    with pytest.raises(PlayerSpecError, match=message):
        players.make(spec, envs.make("tictactoe"))


def test_checkpoint_errors(run, tmp_path):
    ttt = envs.make("tictactoe")
    with pytest.raises(PlayerSpecError, match="plays 'connect_four', not 'tictactoe'"):
        players.check(str(run / "c4/checkpoints/imitation"), ttt)
    with pytest.raises(PlayerSpecError, match="neither a checkpoint"):
        players.check(str(tmp_path), ttt)
    with pytest.raises(PlayerSpecError, match="is a run directory"):
        players.check(str(run / "ttt"), ttt)
    ckpt = str(run / "ttt/checkpoints/imitation")
    with pytest.raises(PlayerSpecError, match="search has no option 'depth'"):
        players.check(ckpt + "@mcts:depth=3", ttt)
    with pytest.raises(PlayerSpecError, match="simulations must be a int"):
        players.check(ckpt + "@mcts:2.5", ttt)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(PlayerSpecError, match=r"no meta\.json"):
        players.check(str(tmp_path), ttt)


def test_checkpoint_players_share_one_policy_and_act_batched(run):
    game = envs.make("tictactoe")
    ckpt = str(run / "ttt/checkpoints/imitation")
    raw = players.make(ckpt, game)
    search = players.make(ckpt + "@mcts:8", game)
    assert isinstance(raw, players.PolicyPlayer) and isinstance(search, players.SearchPlayer)
    assert raw.policy is search.policy  # loaded once per process
    assert raw.for_game(3) is raw  # deterministic: shared by every game in flight
    assert search.name == raw.name + "@mcts:8"
    assert players.make(ckpt + "@mcts:0", game).name == raw.name  # no search is the raw policy
    assert players.check(ckpt + "@mcts:simulations=8,c_puct=2", game).endswith("@mcts:simulations=8,c_puct=2")
    states = [game.new_initial_state() for _ in range(3)]
    states[1].apply_action(4)
    for p in (raw, search):
        actions = p.act(states)
        assert len(actions) == 3 and all(a in s.legal_actions() for a, s in zip(actions, states, strict=True))
    assert raw.act(states) == [e.best() for e in raw.policy.evaluate(states)]


def test_run_directory_expands_to_its_checkpoints_in_training_order(run):
    specs = players.expand(str(run / "ttt"))
    assert [s.rsplit("/", 1)[1] for s in specs] == ["imitation", "b_sooner", "a_later"]
    assert players.expand(str(run / "ttt") + "@mcts:4")[0].endswith("imitation@mcts:4")
    assert players.expand("random") == ["random"]

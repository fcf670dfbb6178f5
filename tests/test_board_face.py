"""The board face: a game's planes through the model's stem as prefix tokens, a bidirectional prompt and
first-token scoring. Scoring in one packed pass equals a plain pass per position; checkpoints record the
face and play with it; imitation, self-play (local, through the inference server) and resume carry the
planes; and the tactics bench shows the face learning what today's text face does not."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import agents
import envs
import selfplay.games.selfplay as learner
from selfplay.config import ConfigError, ModelSection, load_config
from selfplay.run import main

ROOT = Path(__file__).resolve().parents[1]


def board_policy(
    game: str, *, prefix="bidirectional", scoring="first_token", seed=0, merges=True, patch=1
) -> agents.Policy:
    """A tiny untrained board-face policy; its tokenizer has every move as one token (`merges`)."""
    g = envs.make(game)
    h, w, c = g.observation_shape()
    s = g.new_initial_state()
    moves = [s.action_to_text(a) for a in range(g.num_distinct_actions())]
    tok = agents.BPETokenizer.train(moves * 3, merges=200) if merges else agents.CharTokenizer()
    cfg = agents.ModelConfig.preset(
        "nano",
        vocab_size=tok.vocab_size,
        block_size=32,
        planes=c,
        board_height=h,
        board_width=w,
        stem_channels=8,
        stem_layers=2,
        stem_patch=patch,
        prefix=prefix,
        scoring=scoring,
    )
    return agents.new_policy(cfg, tokenizer=tok, device="cpu", seed=seed, meta={"game": game})


def _plain(policy: agents.Policy, state: envs.State) -> tuple[np.ndarray, float]:
    """Every legal move's score and the value from one unpacked pass over this position alone."""
    q = policy.query(state)
    p = policy.encode_prompt(q.prompt)
    T = len(p)
    mask = torch.ones((1, 1, T, T), dtype=torch.bool)
    if policy.model.cfg.prefix == "causal":
        mask = mask.tril()
    planes = torch.from_numpy(q.planes)[None]
    with torch.no_grad():
        hidden, _ = policy.model(torch.tensor([p]), mask=mask, planes=planes)
        lp = F.log_softmax(policy.model.lm_head(hidden[0, -1]), -1)
        value = policy.model.value(hidden[0, -1]).item()
    return np.array([lp[policy.tokenizer.encode(m)[0]].item() for m in q.moves]), value


@pytest.mark.parametrize("prefix,patch", [("bidirectional", 1), ("causal", 1), ("bidirectional", 2)])
@pytest.mark.parametrize("game", ["tictactoe", "connect_four", "othello"])
def test_packed_first_token_scoring_equals_a_plain_pass_per_position(game, prefix, patch):
    policy = board_policy(game, prefix=prefix, patch=patch)
    states = envs.random_states(envs.make(game), 12, seed=1)
    for state, e in zip(states, policy.evaluate(states), strict=True):
        lp, value = _plain(policy, state)
        np.testing.assert_allclose(e.logprobs, lp, atol=1e-4)
        assert abs(e.value - value) < 1e-4


def test_the_board_reaches_the_model_through_the_planes_not_the_text():
    policy = board_policy("connect_four")
    game = envs.make("connect_four")
    a, b = game.new_initial_state(), game.new_initial_state()
    for x in (3, 3, 2):
        a.apply_action(x)
    for x in (0, 0, 1):
        b.apply_action(x)
    qa, qb = policy.query(a), policy.query(b)
    assert qa.prompt == qb.prompt == "O to move\n" and qa.moves == tuple("abcdefg")
    assert qa.planes.shape == (2, 6, 7) and qa.planes[0].sum() == 1 and qa.planes[1].sum() == 2
    ea, eb = policy.evaluate([a, b])
    assert not np.allclose(ea.probs, eb.probs)  # same text, different boards


def test_a_bidirectional_prompt_token_sees_the_later_ones():
    pos = torch.tensor([[0, 1, 2, 3, 3]])
    seg = torch.tensor([[0, 0, 0, 1, 2]])
    causal = agents.policy.tree_mask(pos, seg)[0, 0]
    both = agents.policy.tree_mask(pos, seg, bidirectional_prompt=True)[0, 0]
    assert not causal[0, 2] and both[0, 2]  # the first prompt token sees the last one
    assert not both[0, 3] and both[3, :3].all() and not both[3, 4]  # moves: causal, apart


def test_first_token_scoring_refuses_moves_of_several_tokens():
    policy = board_policy("othello", merges=False)  # `d3` is two characters, not a learned token here
    with pytest.raises(ValueError, match="one token per move; 'd3' is 2 tokens"):
        policy.evaluate([envs.make("othello").new_initial_state()])


def test_a_board_checkpoint_records_its_face_and_plays_with_it(tmp_path):
    policy = board_policy("connect_four")
    agents.save(policy, tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt/config.json").read_text())["model"]
    assert (config["planes"], config["board_height"], config["board_width"]) == (2, 6, 7)
    assert (config["prefix"], config["scoring"]) == ("bidirectional", "first_token")
    loaded = agents.load(tmp_path / "ckpt", device="cpu")
    assert loaded.face == agents.Face(board=True) and agents.read_model_config(tmp_path / "ckpt").planes == 2
    states = envs.random_states(envs.make("connect_four"), 5)
    for a, b in zip(policy.evaluate(states), loaded.evaluate(states), strict=True):
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)


@pytest.mark.parametrize("patch,grid", [(1, (6, 7)), (2, (3, 4)), (3, (2, 3)), (7, (1, 1))])
def test_patches_cover_the_whole_board_with_fewer_tokens(patch, grid):
    policy = board_policy("connect_four", patch=patch)
    assert agents.model.patch_grid(policy.model.cfg) == grid
    planes = torch.zeros((1, 2, 6, 7))
    base = policy.model.stem(planes)
    assert base.shape == (1, grid[0] * grid[1], policy.model.cfg.n_embd)
    planes[0, 0, 5, 6] = 1  # a stone in the last row and column (padding's neighbour) changes a token
    assert not torch.allclose(policy.model.stem(planes), base)


def test_a_checkpoint_with_patches_round_trips_and_a_wrong_grid_is_refused(tmp_path):
    policy = board_policy("connect_four", patch=2)
    agents.save(policy, tmp_path / "ckpt")
    loaded = agents.load(tmp_path / "ckpt", device="cpu")
    assert loaded.model.cfg.stem_patch == 2
    states = envs.random_states(envs.make("connect_four"), 5)
    for a, b in zip(policy.evaluate(states), loaded.evaluate(states), strict=True):
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
    config = json.loads((tmp_path / "ckpt/config.json").read_text())
    config["model"]["board_width"] = 9  # 9 columns in pairs are 5 tokens, the tensors hold 4
    (tmp_path / "ckpt/config.json").write_text(json.dumps(config))
    with pytest.raises(agents.CheckpointError, match=r"patches of 2 is \(3, 5\) tokens a side .* \(3, 4\)"):
        agents.load(tmp_path / "ckpt", device="cpu")


def test_first_token_scoring_with_moves_of_several_tokens_is_refused_before_training(
    tmp_path, capsys, monkeypatch
):
    with pytest.raises(ConfigError, match=r"with model\.tokenizer char, tictactoe's move 'a1' is 2"):
        load_config(ROOT / "configs/tictactoe.yaml", ["model.scoring=first_token", "model.tokenizer=char"])
    monkeypatch.setattr(ModelSection, "merges", 0)  # a tokenizer that keeps `a1` in two pieces
    argv = [str(ROOT / "configs/tictactoe.yaml"), f"run_dir={tmp_path / 'run'}", "transcripts.games=10"]
    argv += ["model.scoring=first_token", "selfplay.algorithm=none", "--no-progress"]
    assert main(argv) == 2
    assert "makes 'a1' 2 tokens (use model.scoring: sequence)" in capsys.readouterr().err
    assert not (tmp_path / "run/checkpoints").exists()


def test_a_board_config_is_refused_where_it_cannot_work(tmp_path):
    cfg = ROOT / "configs/arithmetic.yaml"
    with pytest.raises(ConfigError, match="reward environments generate free text"):
        load_config(cfg, ["model.face=board"])
    with pytest.raises(ConfigError, match=r"imitation\.loss: tokens"):
        load_config(ROOT / "configs/tictactoe.yaml", ["model.face=board", "imitation.loss=tokens"])


BOARD = ["model.face=board", "model.prefix=bidirectional", "model.scoring=first_token"]
TINY = [
    "transcripts.games=40",
    "model.size=nano",
    "model.stem_channels=8",
    "model.stem_layers=2",
    "imitation.max_steps=20",
    "imitation.eval_every=10",
    "selfplay.steps=8",
    "selfplay.checkpoint_every=4",
    "selfplay.games_per_actor=4",
    "selfplay.simulations=4",
    "selfplay.min_replay=16",
    "selfplay.batch_size=8",
    "evaluation.games=2",
    "evaluation.baselines=[random]",
]


FEATURES = ["model.board_features=[threats,playable]"]


@pytest.mark.parametrize(
    ("runtime", "planes"),
    [
        (["selfplay.actors=0", "selfplay.symmetries=true"], 2),
        (
            ["selfplay.actors=2", "runtime.inference_server=on", *FEATURES],
            5,
        ),  # the server's face from the file
    ],
)
def test_the_main_job_trains_plays_and_resumes_with_the_board_face(tmp_path, runtime, planes, capsys):
    run = tmp_path / "run"
    argv = ["--no-progress", str(ROOT / "configs/connect_four_imitation.yaml"), f"run_dir={run}", *BOARD]
    argv += [*TINY, "selfplay.algorithm=alphazero", *runtime]
    assert main(argv) == 0
    ckpt = run / "checkpoints/step_000008"
    assert agents.read_model_config(ckpt).planes == planes and agents.load(ckpt, device="cpu").face.board
    features = ("threats", "playable") if planes == 5 else ()
    assert agents.load(ckpt, device="cpu").face.features == features
    replay = json.loads((run / "selfplay/state/state.json").read_text())["replay"]
    assert replay and all(
        np.asarray(r[8]).shape == (planes, 6, 7) for r in replay
    )  # the planes it learned from
    assert main(["--resume", str(run), "selfplay.steps=12", "--no-progress"]) == 0
    assert "resuming at step 8" in capsys.readouterr().out
    assert agents.read_meta(run / "checkpoints/step_000012")["parent"] == "checkpoints/step_000008"


def test_pg_self_play_with_the_board_face(tmp_path, ttt_nano):
    overrides = [f"run_dir={tmp_path / 'run'}", "selfplay.algorithm=pg", "selfplay.actors=0"]
    overrides += ["selfplay.steps=4", "selfplay.checkpoint_every=4", "selfplay.min_replay=8"]
    overrides += ["selfplay.batch_size=8", "selfplay.games_per_actor=4", "evaluation.games=0"]
    cfg = load_config(ROOT / "configs/tictactoe.yaml", overrides)
    start = tmp_path / "start"
    agents.save(board_policy("tictactoe", scoring="sequence"), start)
    final = learner.train(cfg, tmp_path / "run", start, progress=False)
    assert agents.load(final, device="cpu").face.board


def test_the_tactics_bench_rates_each_face_on_tactics():
    """The bench's path at a tiny fixed budget; what each face learns is the bench's to measure (at 400
    steps of nano over seeds 0-2 x 1 and 2 threads: text 0.43-0.49 wins taken, 0.40-0.50 threats blocked,
    value ROC-AUC 0.64-0.67; board 0.86-0.90, 0.78-0.85, 0.87-0.92; docs/results.md at 4 minutes)."""
    argv = [sys.executable, str(ROOT / "bench/tactics.py"), "--steps", "10", "--positions", "600"]
    argv += ["--size", "nano", "--variants", "text", "board"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    cells = [[c.strip() for c in r.strip("| ").split("|")] for r in out.splitlines() if r.startswith("| ")]
    rows = {c[0]: c for c in cells}
    for variant in ("text", "board"):
        win, block, value = map(float, rows[variant][5:8])
        assert 0 <= win <= 1 and 0 <= block <= 1 and 0 <= value <= 1


# --- board features ------------------------------------------------------------------------------------
def test_connect_four_threat_and_playable_planes():
    game = envs.make("connect_four")
    s = game.new_initial_state()
    for a in (3, 3, 4, 4, 5):  # X on d1 e1 f1, O on d2 e2: O to move, X threatens c1 and g1
        s.apply_action(a)
    p = s.planes(("threats", "playable"))
    assert p.shape == (5, 6, 7) and np.array_equal(p[:2], s.planes())
    bottom, second = 5, 4  # rows from the top
    assert not p[2].any()  # O (to move) has no three
    assert {(r, c) for r, c in zip(*np.nonzero(p[3]), strict=True)} == {(bottom, 2), (bottom, 6)}
    assert {(r, c) for r, c in zip(*np.nonzero(p[4]), strict=True)} == {(bottom, c) for c in (0, 1, 2, 6)} | {
        (second, 5),
        (second - 1, 3),
        (second - 1, 4),
    }
    assert np.array_equal(s.planes(("playable",)), p[[0, 1, 4]])  # each feature's planes, in the order asked
    mirror = s.transformed(game.symmetries()[1])  # the features are the mirror's too (symmetric samples)
    assert np.array_equal(mirror.planes(("threats", "playable")), p[:, :, ::-1])
    s.apply_action(0)
    s.apply_action(2)  # X completes c1-f1: no legal move, nothing playable
    assert s.is_terminal() and not s.planes(("playable",))[2].any()


def test_board_features_are_refused_where_the_game_or_face_has_none():
    cfg = ROOT / "configs/game.yaml"
    with pytest.raises(
        ConfigError,
        match=r"board_features: connect_four offers no board feature 'ladders'; known: threats, playable",
    ):
        load_config(cfg, ["model.board_features=[ladders]"])
    with pytest.raises(
        ConfigError, match=r"model\.board_features: tictactoe offers no board feature 'threats'; known: none"
    ):
        load_config(ROOT / "configs/tictactoe.yaml", [*BOARD, "model.board_features=[threats]"])
    with pytest.raises(ConfigError, match=r"model\.board_features: for model\.face board only"):
        load_config(cfg, ["model.face=text", "model.prefix=causal", "model.scoring=sequence", *FEATURES])
    with pytest.raises(ConfigError, match="named twice"):
        load_config(cfg, ["model.board_features=[threats,threats]"])
    with pytest.raises(ValueError, match="need a board stem"):
        agents.ModelConfig(vocab_size=8, features=("threats",))


# --- symmetries ---------------------------------------------------------------------------------------
def test_a_symmetric_image_is_the_mirrored_game():
    game = envs.make("connect_four")
    s = game.new_initial_state()
    for a in (0, 1, 0):
        s.apply_action(a)
    mirror = s.transformed(game.symmetries()[1])
    assert mirror.history() == [6, 5, 6]
    assert np.array_equal(mirror.planes(), s.planes()[:, :, ::-1])
    assert [len(envs.make(g).symmetries()) for g in ("tictactoe", "connect_four", "othello")] == [8, 2, 4]


def test_imitation_trains_on_the_symmetric_images_of_its_games(tmp_path):
    import selfplay.games.imitate as imitate

    base = ["--no-progress", str(ROOT / "configs/tictactoe.yaml"), "transcripts.games=30", "model.size=nano"]
    base += ["imitation.max_steps=2", "imitation.eval_every=2", "imitation.dedupe=false"]
    counts = {}
    for sym in ("false", "true"):
        run = tmp_path / sym
        assert imitate.main([*base, f"run_dir={run}", f"imitation.symmetries={sym}"]) == 0
        summary = json.loads((run / "imitation.json").read_text())
        counts[sym] = (summary["train_positions"], summary["val_positions"])
    assert counts["true"][0] == 8 * counts["false"][0]  # every training game in all 8 orientations
    assert counts["true"][1] == counts["false"][1]  # held-out games as played


def test_new_model_keys_at_their_defaults_leave_earlier_fingerprints_alone():
    """Run directories written before the board face still reuse their stages: the fingerprint of a
    config that does not use the new keys is what it was (values from before they existed)."""
    import selfplay.games.imitate as imitate
    import selfplay.text.imitate as text_imitate

    text = ["model.face=text", "model.prefix=causal", "model.scoring=sequence"]  # as before the board face
    assert imitate.config_hash(load_config(ROOT / "configs/tictactoe.yaml", text)) == "1cc6fccca4c6bad6"
    assert text_imitate.config_hash(load_config(ROOT / "configs/arithmetic.yaml")) == "c5d655ebff265a5d"
    board = load_config(ROOT / "configs/tictactoe.yaml")
    assert imitate.config_hash(board) != "1cc6fccca4c6bad6"


def test_self_play_learns_from_the_mirror_image_of_each_game():
    from selfplay.games.actor import Actor

    game = envs.make("connect_four")
    cfg = load_config(ROOT / "configs/game.yaml", ["selfplay.simulations=4", "selfplay.games_per_actor=2"])
    actor = Actor(cfg.selfplay, game, board_policy("connect_four"), seed=0)
    finished = []
    while not finished:
        finished = actor.step()
    traj = finished[0]
    played, same, mirror = (
        learner.samples_of(traj),
        *(learner.symmetric_samples(traj, game, agents.Face(board=True), p) for p in game.symmetries()),
    )
    opening = cfg.selfplay.opening_plies  # random moves, not positions to learn from
    assert len(played) == len(same) == len(mirror) == len(traj.moves) - opening > 0
    for a, b, m in zip(played, same, mirror, strict=True):
        assert (a.prompt, a.legal, a.chosen, a.outcome) == (b.prompt, b.legal, b.chosen, b.outcome)
        np.testing.assert_array_equal(a.target, b.target)
        np.testing.assert_array_equal(a.planes, b.planes)
        np.testing.assert_array_equal(m.planes, a.planes[:, :, ::-1])  # the board, mirrored
        mirrored = {t: "abcdefg"[6 - "abcdefg".index(t)] for t in a.legal}
        assert m.legal[m.chosen] == mirrored[a.legal[a.chosen]]
        for text, p in zip(a.legal, a.target, strict=True):
            assert m.target[m.legal.index(mirrored[text])] == p  # each move's search share moves with it


def test_the_tactics_bench_rates_a_checkpoint_on_its_held_out_positions(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import tactics

    policy = board_policy("connect_four")
    agents.save(policy, tmp_path / "ckpt")
    argv = [sys.executable, str(ROOT / "bench/tactics.py"), "--positions", "300", "--checkpoints"]
    out = subprocess.run([*argv, str(tmp_path / "ckpt")], capture_output=True, text=True, check=True).stdout
    row = [c.strip() for c in out.splitlines()[-1].strip("| ").split("|")]
    data = tactics.positions(300, 0)
    tactics.random.Random(0).shuffle(data)
    want = tactics.measure(policy, data[:100])
    assert row[0] == str(tmp_path / "ckpt")
    assert [float(x) for x in row[5:8]] == [round(want[k], 3) for k in ("win", "block", "value_auc")]

"""Correction rounds (DAgger): the policy's games labelled by the expert, imitation continued on them,
each round reused, the last round the start of self-play; bad settings refused at load."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import agents
import envs
from envs.experts.minimax import Minimax
from selfplay.config import ConfigError, load_config
from selfplay.core.transcripts import TranscriptError, load_transcripts
from selfplay.games.corrections import play_and_label
from selfplay.games.imitate import legal_losses
from selfplay.games.imitation_data import build_examples
from selfplay.run import main

ROOT = Path(__file__).resolve().parents[1]
TTT = str(ROOT / "configs/tictactoe.yaml")


def test_the_policys_positions_carry_the_experts_move(ttt_nano, tmp_path):
    config = load_config(TTT, ["corrections.games=10", "corrections.opponent=random"])
    records = play_and_label(agents.load(ttt_nano, device="cpu"), config, seed=0)
    path = tmp_path / "round.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    games = load_transcripts(path, game="tictactoe")  # valid transcripts, labels checked as legal
    solver = Minimax(envs.make("tictactoe"))
    labelled = 0
    for i, t in enumerate(games):
        state = envs.make("tictactoe").new_initial_state()
        for k, m in enumerate(t.moves):
            policy_move = k >= config.corrections.opening_plies and m.player == i % 2  # colours alternate
            assert (m.expert_action is not None) == policy_move and m.explored
            if policy_move:
                assert m.expert_action in solver.optimal_actions(state)  # the expert's own move, no epsilon
                labelled += 1
            state.apply_action(m.action)
    assert labelled >= 10


def test_rounds_continue_imitation_reuse_and_start_self_play(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = [
        TTT,
        f"run_dir={run_dir}",
        "transcripts.games=100",
        "imitation.max_steps=150",
        "imitation.eval_every=50",
        "corrections.games=30",
        "corrections.steps=60",
        "selfplay.steps=4",
        "selfplay.actors=0",
        "selfplay.min_replay=20",
        "evaluation.games=0",
    ]
    assert main([*argv, "corrections.rounds=1", "selfplay.algorithm=none", "--no-progress"]) == 0
    assert (
        main([*argv, "corrections.rounds=2", "--no-progress"]) == 0
    )  # round 1 reused, round 2 made, then self-play
    out = capsys.readouterr().out
    assert "corrections 1: reusing" in out and "corrections 2: reusing" not in out
    meta = {n: agents.read_meta(run_dir / "checkpoints" / n) for n in ("corrections_1", "corrections_2")}
    assert meta["corrections_1"]["parent"] == "checkpoints/imitation"
    assert meta["corrections_2"]["parent"] == "checkpoints/corrections_1"
    assert agents.read_meta(run_dir / "checkpoints/step_000004")["parent"] == "checkpoints/corrections_2"
    assert "## Correction rounds" in (run_dir / "report.md").read_text()

    # the round learned its labels: their loss fell from the imitation checkpoint's
    game = envs.make("tictactoe")
    games = load_transcripts(run_dir / "corrections/round_1.jsonl", game="tictactoe")
    before, after = (
        agents.load(run_dir / "checkpoints" / n, device="cpu") for n in ("imitation", "corrections_1")
    )
    labelled = [e for e in build_examples(games, game, before) if e.imitate]
    with torch.no_grad():
        loss = [float(legal_losses(p, labelled)[0]) for p in (before, after)]
    assert loss[1] < 0.9 * loss[0], loss
    assert not np.allclose(
        before.model.state_dict()["lm_head.weight"].numpy(),
        after.model.state_dict()["lm_head.weight"].numpy(),
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["corrections.rounds=1", "corrections.opponent=nonesuch"], "corrections.opponent: "),
        (["corrections.rounds=1", "corrections.expert=alphabeta:depth=2"], "corrections.expert: "),
        (["corrections.rounds=1", "transcripts.path=games.jsonl"], "corrections.expert: name the expert"),
    ],
)
def test_bad_settings_are_refused_at_load(overrides, message, tmp_path):
    (tmp_path / "games.jsonl").write_text("")
    config = tmp_path / "c.yaml"
    config.write_text(Path(TTT).read_text())
    with pytest.raises(ConfigError, match=message):
        load_config(config, overrides)
    with pytest.raises(ConfigError, match=r"corrections\.opponent: for games"):
        load_config(ROOT / "configs/arithmetic.yaml", ["corrections.rounds=1", "corrections.opponent=random"])


def test_a_label_that_is_not_a_legal_move_is_named(ttt_nano, tmp_path):
    config = load_config(TTT, ["corrections.games=2"])
    records = play_and_label(agents.load(ttt_nano, device="cpu"), config, seed=0)
    move = next(m for m in records[1]["moves"] if "expert_action" in m)
    move["expert_action"] = records[1]["moves"][0]["action"]  # a square taken at the first move
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(TranscriptError, match=r"bad\.jsonl:2: .*expert_action .* is not a legal move"):
        load_transcripts(path)

"""Bad configs are refused when loaded, by `python -m selfplay.run`, with the file and key named and nothing
written: not after transcripts, imitation or the first self-play checkpoint, and never read leniently."""

from pathlib import Path

import pytest
import torch
import yaml
from tiny_runs import copy

import selfplay.games.corrections as game_corrections
import selfplay.games.imitate as game_imitate
import selfplay.text.corrections as text_corrections
import selfplay.text.imitate as text_imitate
from selfplay.config import REMOVED, ConfigError, dump_config, load_config
from selfplay.run import main
from selfplay.text.rl import rl_hash
from selfplay.text.verifier.stage import verifier_hash

ROOT = Path(__file__).resolve().parents[1]
TTT = ROOT / "configs/tictactoe.yaml"
ARITHMETIC = ROOT / "configs/arithmetic.yaml"


def refused(capsys, tmp_path, argv, *needles) -> str:
    """Run the main command; it must exit 2 naming every needle, with no run directory made."""
    run = tmp_path / "run"
    assert main(["--no-progress", *argv[:1], f"run_dir={run}", *argv[1:]]) == 2
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err, err
    assert "Traceback" not in err and not run.exists()
    return err


# --- cross-field checks ------------------------------------------------------------------------------
def test_a_replay_buffer_smaller_than_the_learner_waits_for_is_refused(tmp_path, capsys):
    argv = [str(TTT), "selfplay.min_replay=30000", "selfplay.replay_size=20000"]
    refused(capsys, tmp_path, argv, "tictactoe.yaml", "selfplay.min_replay", "selfplay.replay_size")


def test_an_rl_replay_buffer_smaller_than_the_learner_waits_for_is_refused(tmp_path, capsys):
    refused(capsys, tmp_path, [str(ARITHMETIC), "rl.min_replay=2048"], "rl.min_replay", "rl.replay_size")


def test_a_model_shape_its_heads_cannot_split_is_refused_and_one_that_can_is_built(tmp_path, capsys):
    refused(capsys, tmp_path, [str(ARITHMETIC), "model.n_embd=100", "model.n_head=3"], "model.n_embd (100)")
    refused(capsys, tmp_path, [str(ARITHMETIC), "model.n_embd=91"], "multiple of n_head (2)")  # nano's 2
    refused(
        capsys, tmp_path, [str(TTT), "model.backbone=hf", "model.path=x", "model.n_layer=2"], "model.n_layer"
    )

    config = load_config(ARITHMETIC, ["model.n_layer=3", "model.n_embd=48"])
    cfg = config.model.build(20, "arithmetic")
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd) == (3, 2, 48)  # the head count from the preset (nano)


def test_an_unknown_teacher_or_one_for_a_game_is_refused(tmp_path, capsys):
    err = refused(capsys, tmp_path, [str(ARITHMETIC), "transcripts.teacher=sloppy"], "transcripts.teacher")
    assert "'sloppy'" in err and "known: expert, no_carry" in err
    # arithmetic.yaml has ops "+*": a teacher that never carries only adds
    refused(capsys, tmp_path, [str(ARITHMETIC), "transcripts.teacher=no_carry"], "transcripts.teacher", "'+'")
    refused(capsys, tmp_path, [str(TTT), "transcripts.teacher=no_carry"], "transcripts.teacher", "expert")
    adds = [str(ARITHMETIC), "env_options={digits: 2, ops: '+'}", "transcripts.teacher=no_carry"]
    refused(capsys, tmp_path, [*adds, "transcripts.path=t.jsonl"], "transcripts.teacher", "transcripts.path")


def test_an_odd_number_of_evaluation_games_is_refused(tmp_path, capsys):
    refused(capsys, tmp_path, [str(TTT), "evaluation.games=3"], "evaluation.games", "even")


# --- devices -------------------------------------------------------------------------------------------
def test_a_device_that_is_no_device_is_refused(tmp_path, capsys):
    refused(capsys, tmp_path, [str(TTT), "selfplay.device=gpu7"], "selfplay.device", "'gpu7'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has CUDA")
def test_cuda_on_a_cpu_only_torch_is_refused(tmp_path, capsys):
    refused(capsys, tmp_path, [str(TTT), "imitation.device=cuda"], "imitation.device", "no CUDA device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has CUDA")
def test_cuda_for_a_learner_on_ray_gpus_is_checked_there_not_here():
    from selfplay.config import load_config

    cfg = [
        "runtime.backend=ray",
        "runtime.learner_gpus=1",
        "selfplay.device=cuda",
        "selfplay.actor_device=cuda",
    ]
    assert load_config(TTT, cfg).selfplay.device == "cuda"  # the driver may have no GPU


# --- reading the file ----------------------------------------------------------------------------------
def test_a_config_that_is_not_utf8_is_refused(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("game: tictactoe\n# r\xe9glages\n".encode("latin-1"))
    refused(capsys, tmp_path, [str(path)], "latin1.yaml", "not UTF-8")


def test_a_directory_given_as_the_config_is_refused(tmp_path, capsys):
    refused(capsys, tmp_path, [str(ROOT / "configs")], "configs", "is a directory")


def test_an_empty_config_file_is_refused(tmp_path, capsys):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    refused(capsys, tmp_path, [str(path)], "empty.yaml", "empty")


def test_a_key_given_twice_is_refused(tmp_path, capsys):
    path = tmp_path / "twice.yaml"
    path.write_text("game: tictactoe\nselfplay:\n  steps: 10\n  lr: 0.001\n  steps: 20\n")
    refused(capsys, tmp_path, [str(path)], "twice.yaml", "'steps' is given twice (lines 3 and 5)")


# --- values --------------------------------------------------------------------------------------------
def test_true_is_not_an_integer(tmp_path, capsys):
    refused(capsys, tmp_path, [str(TTT), "selfplay.steps=true"], "selfplay.steps", "valid integer")


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_an_infinite_learning_rate_is_refused(tmp_path, capsys, value):
    refused(capsys, tmp_path, [str(TTT), f"imitation.lr={value}"], "imitation.lr", "finite")


def test_an_empty_run_dir_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--no-progress", str(TTT), "run_dir="]) == 2
    assert "run_dir" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written into the working directory


def test_an_hf_directory_with_only_pickled_weights_is_refused_when_the_config_loads(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    (model / "pytorch_model.bin").write_bytes(b"a pickle, never opened")
    argv = [str(ROOT / "configs/arithmetic_hf.yaml"), f"model.path={model}"]
    refused(
        capsys,
        tmp_path,
        argv,
        "model.path",
        "only pickled weights (pytorch_model.bin)",
        "nothing is unpickled",
    )


def test_resume_refuses_to_move_the_run_directory(game_run, tmp_path, capsys):
    run = copy(game_run, tmp_path / "run")
    assert main(["--resume", str(run), f"run_dir={tmp_path / 'elsewhere'}", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "run_dir cannot be overridden" in err and f"--resume {run}" in err
    assert not (tmp_path / "elsewhere").exists()


# --- removed keys ----------------------------------------------------------------------------------
def test_a_stored_config_holding_removed_keys_at_their_value_loads_and_another_value_is_refused(tmp_path):
    """A run directory's config.yaml written before keys were removed lists them all: it still loads (so
    the run resumes), while a value the removed key can no longer have is named."""
    config = load_config(ARITHMETIC)
    old = yaml.safe_load(dump_config(config))
    for section, keys in REMOVED.items():
        old[section].update(keys)
    stored = tmp_path / "config.yaml"
    stored.write_text(yaml.safe_dump(old))
    assert load_config(stored) == config
    old["rl"]["top_k"] = 5
    stored.write_text(yaml.safe_dump(old))
    with pytest.raises(ConfigError, match=r"config\.yaml: rl\.top_k was removed .* fixed at None, got 5"):
        load_config(stored)
    with pytest.raises(ConfigError, match=r"selfplay\.c_puct was removed"):
        load_config(TTT, ["selfplay.c_puct=2"])


def test_removed_keys_leave_the_fingerprints_of_every_stage_as_they_were():
    """Each stage's fingerprint as the code before the removal computed it (main at edeb2cc): runs
    written then reuse their transcripts, imitation, correction rounds, verifier and RL."""
    from selfplay.config import load_config

    ttt = load_config(TTT, ["corrections.rounds=2"])
    assert game_imitate.config_hash(ttt) == "258cd225234c0d66"
    assert game_corrections.round_hash(ttt, 1) == "e638d8ddb16d8090"
    text = ["verifier.labels=comparisons", "corrections.rounds=1"]
    verifier = load_config(ROOT / "configs/arithmetic_verifier.yaml", text)
    assert text_imitate.config_hash(verifier) == "3fad9bf2920372b5"
    assert verifier_hash(verifier) == "e975d309e7b05574"
    assert rl_hash(verifier) == "efbf3f8dfbcac9ae"
    assert text_corrections.round_hash(verifier, 1) == "d9d264a36ade6758"

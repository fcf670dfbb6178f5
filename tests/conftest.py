"""Shared, expensive fixtures: built once per session (and, under pytest-xdist, once in the worker that
runs the group of tests needing them)."""

import os
from pathlib import Path

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each beats two each
    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ttt_imitation(tmp_path_factory):
    """The tic-tac-toe config's imitation stage, run for real (about 3-4 minutes on one core): its run
    directory, holding `checkpoints/imitation` and `imitation.json`."""
    from selfplay.imitate import main

    run_dir = tmp_path_factory.mktemp("ttt") / "run"
    argv = [
        str(ROOT / "configs/tictactoe.yaml"),
        f"run_dir={run_dir}",
        "imitation.device=cpu",
        "imitation.max_steps=5000",  # the config trains 6000 (99.5%); 5000 reach 99.1% in less time
        "selfplay.algorithm=none",
        "--no-progress",
    ]
    assert main(argv) == 0
    return run_dir


@pytest.fixture(scope="session")
def ttt_nano(tmp_path_factory):
    """An untrained nano tic-tac-toe checkpoint (character tokenizer, context 64)."""
    import agents

    path = tmp_path_factory.mktemp("ckpt") / "policy"
    cfg = agents.ModelConfig.preset("nano", vocab_size=agents.CharTokenizer().vocab_size, block_size=64)
    agents.save(agents.new_policy(cfg, device="cpu", seed=0, meta={"game": "tictactoe", "step": 0}), path)
    return path

"""Shared, expensive fixtures: built once per session (and, under pytest-xdist, once in the worker that
runs the group of tests needing them)."""

import os
from pathlib import Path

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each beats two each
    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]


SLOWEST_FIRST = "test_tictactoe_quality.py"  # its fixture alone takes about a minute


def pytest_collection_modifyitems(items):
    """The slowest file first: with `--dist loadfile` over two workers, the other worker runs the rest of
    the suite meanwhile, instead of the slow file starting last."""
    items.sort(key=lambda item: item.path.name != SLOWEST_FIRST)  # stable: the rest keep their order


@pytest.fixture(scope="session")
def ttt_imitation(tmp_path_factory):
    """The tic-tac-toe config's imitation stage, run for real but shortened (about a minute on one core):
    its run directory, holding `checkpoints/imitation` and `imitation.json`."""
    from selfplay.imitate import main

    run_dir = tmp_path_factory.mktemp("ttt") / "run"
    argv = [
        str(ROOT / "configs/tictactoe.yaml"),
        f"run_dir={run_dir}",
        "imitation.device=cpu",
        # the config trains 6000 steps; 1500 steps reach 99.91-100% optimal moves over seeds 0-2 and 1 or
        # 2 threads with its board face (bench/tictactoe_optimal.py --imitate 1500), clear of the tests' 95%
        "imitation.max_steps=1500",
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

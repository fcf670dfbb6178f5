"""Shared, expensive fixtures: built once per session (and, under pytest-xdist, once in the worker that
runs the group of tests needing them)."""

import os
from pathlib import Path

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each beats two each
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # and so do the commands the tests start

ROOT = Path(__file__).resolve().parents[1]


SLOWEST_FIRST = (  # measured on 2 cores, 2026-12-08: about 110, 105, 80, 70, 50 s each
    "test_doc_commands.py",  # every command the guides show, one after another
    "test_tictactoe_quality.py",
    "test_board_face.py",
    "test_bench.py",
    "test_hf_run.py",
    "test_ray.py",  # a Ray start per test
    "test_selfplay.py",
    "test_restarts.py",
    "test_verifier.py",
    "test_sweep.py",  # sweeps of processes
    "test_label.py",
)


def pytest_collection_modifyitems(items):
    """The slowest files first: with `--dist loadfile --no-loadscope-reorder` (the Makefile's) over two
    workers, each worker takes the next file as it runs dry, longest first, instead of a slow file
    starting last while the other worker idles (xdist's own order, by number of tests, did that)."""
    rank = {name: k for k, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture(scope="session")
def ttt_imitation(tmp_path_factory):
    """The tic-tac-toe config's imitation stage, run for real but shortened (about a minute on one core):
    its run directory, holding `checkpoints/imitation` and `imitation.json`."""
    from selfplay.games.imitate import main

    run_dir = tmp_path_factory.mktemp("ttt") / "run"
    argv = [
        str(ROOT / "configs/tictactoe.yaml"),
        f"run_dir={run_dir}",
        "imitation.device=cpu",
        # the config trains 6000 steps; 1000 steps reach 99.89-100% optimal moves and a value MSE 0.84-0.89
        # of the constant's over seeds 0-2 and 1 or 2 threads with its board face (bench/tictactoe_optimal.py
        # --imitate 1000), clear of the tests' 95% and 0.95 (750 steps: 0.88-0.99 of the constant's)
        "imitation.max_steps=1000",
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


@pytest.fixture(scope="session")
def game_run(tmp_path_factory):
    """A finished tiny tic-tac-toe run (imitation, 12 `pg` steps, gauntlets): copy it before changing it."""
    from tiny_runs import TINY, TTT

    from selfplay.run import main

    run_dir = tmp_path_factory.mktemp("game") / "run"
    assert main(["--no-progress", TTT, f"run_dir={run_dir}", *TINY]) == 0
    return run_dir


@pytest.fixture(scope="session")
def text_run(tmp_path_factory):
    """A finished tiny arithmetic run: imitation, the verifier, 4 RL steps with the verifier's reward."""
    from tiny_runs import ARITHMETIC, TEXT

    from selfplay.run import main

    run_dir = tmp_path_factory.mktemp("text") / "run"
    assert main(["--no-progress", ARITHMETIC, f"run_dir={run_dir}", *TEXT]) == 0
    return run_dir

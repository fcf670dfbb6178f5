"""Stage 1 must really teach: the tic-tac-toe policy imitating the perfect expert plays an optimal move in
nearly every reachable position, and its value head beats a constant. The real config, end to end
(about 3-4 minutes on 2 CPU cores)."""

import json
from pathlib import Path

import pytest

import agents
import envs
from envs.experts import Minimax
from selfplay.imitate import main

ROOT = Path(__file__).resolve().parents[1]


def reachable_positions(game):
    seen, out = set(), []

    def walk(s):
        if s.is_terminal() or s.key() in seen:
            return
        seen.add(s.key())
        out.append(s)
        for a in s.legal_actions():
            child = s.clone()
            child.apply_action(a)
            walk(child)

    walk(game.new_initial_state())
    return out


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tictactoe_imitation_plays_optimally_and_values_beat_a_constant(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = [
        str(ROOT / "configs/tictactoe.yaml"),
        f"run_dir={run_dir}",
        "imitation.device=cpu",
        "imitation.max_steps=5000",  # the config trains 6000 (99.5%); 5000 reach 99.1% in less time
        "selfplay.algorithm=none",
        "--no-progress",
    ]
    assert main(argv) == 0
    policy = agents.load(run_dir / "checkpoints/imitation", device="cpu")
    game = envs.make("tictactoe")
    expert = Minimax(game)
    states = reachable_positions(game)
    assert len(states) == 4520  # every reachable position where someone is to move
    optimal = 0
    for i in range(0, len(states), 512):
        chunk = states[i : i + 512]
        for s, e in zip(chunk, policy.evaluate(chunk), strict=True):
            optimal += e.best() in expert.optimal_actions(s)
    rate = optimal / len(states)
    summary = json.loads((run_dir / "imitation.json").read_text())
    print(
        f"optimal moves: {rate:.4f} of {len(states)}; held-out value MSE {summary['val_value_mse']:.3f} "
        f"vs constant {summary['val_value_mse_constant']:.3f}"
    )
    assert rate >= 0.97
    assert summary["val_value_mse"] < 0.95 * summary["val_value_mse_constant"]

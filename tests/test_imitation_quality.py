"""Stage 1 must really teach: the tic-tac-toe policy imitating the perfect expert plays an optimal move in
nearly every reachable position, and its value head beats a constant. The real config, end to end
(about 3-4 minutes on 2 CPU cores)."""

import json

import pytest

import agents
from selfplay.evaluation import optimal_move_rate


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.xdist_group("ttt_imitation")
def test_tictactoe_imitation_plays_optimally_and_values_beat_a_constant(ttt_imitation):
    policy = agents.load(ttt_imitation / "checkpoints/imitation", device="cpu")
    rate, n = optimal_move_rate(policy, "tictactoe")
    assert n == 4520  # every reachable position where someone is to move
    summary = json.loads((ttt_imitation / "imitation.json").read_text())
    print(
        f"optimal moves: {rate:.4f} of {n}; held-out value MSE {summary['val_value_mse']:.3f} "
        f"vs constant {summary['val_value_mse_constant']:.3f}"
    )
    assert rate >= 0.97
    assert summary["val_value_mse"] < 0.95 * summary["val_value_mse_constant"]

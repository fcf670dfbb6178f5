"""Scaling sweeps: the Chinchilla fit recovers known exponents and predicts held-out points; a sweep runs
its points as run directories, survives being killed and resumes, skipping what finished."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import selfplay.sweep.scaling as scaling
from selfplay.config import ConfigError
from selfplay.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[1]


def synthetic(noise: float, seed: int = 0):
    true = scaling.Law(E=1.2, A=300.0, alpha=0.34, B=900.0, beta=0.28)
    N, D = (x.ravel() for x in np.meshgrid([2e3, 8e3, 3e4, 1e5, 4e5], [1e4, 1e5, 1e6, 1e7]))
    L = true.loss(N, D) * np.exp(np.random.default_rng(seed).normal(0, noise, N.size))
    return true, N, D, L


def test_the_fit_recovers_known_exponents_with_intervals_and_predicts_the_largest_points():
    true, N, D, L = synthetic(0.003)  # 0.3% noise on every loss
    law, iv = scaling.law_intervals(N, D, L, samples=20)
    for k in ("alpha", "beta", "a", "b"):
        assert abs(getattr(law, k) / getattr(true, k) - 1) < 0.05, (k, getattr(law, k))
    for k in ("alpha", "beta"):
        lo, hi = iv[k]
        assert lo <= getattr(law, k) <= hi and hi - lo < 0.2 * getattr(true, k), (k, iv[k])
    _, preds = scaling.predict_largest(N, D, L, k=2)
    assert len(preds) == 2 and all(p.within(0.05, 0.02) for p in preds)
    assert {p.index for p in preds} == set(np.argsort(N * D)[-2:].tolist())
    n_opt, d_opt = true.optimal(1e15)
    assert np.isclose(6 * n_opt * d_opt, 1e15)  # the optimum spends the budget
    with pytest.raises(ValueError, match="at least 5 points"):
        scaling.fit_loss(N[:4], D[:4], L[:4])


def test_elo_lines_and_the_exchange_rate():
    train, test = np.meshgrid([1e12, 1e13, 1e14], [1, 8, 64])
    elo = 100 + 200 * np.log10(train) / 1 + 100 * np.log10(test)
    r = scaling.exchange_rate(train.ravel(), test.ravel(), elo.ravel())
    assert np.isclose(r["rate"], 100.0)  # 10x train compute = 100x search, by construction
    assert np.allclose(scaling.fit_log_linear([1e12, 1e13], [0, 150]), (-1800, 150))


def sweep_file(tmp_path, **extra) -> Path:
    text = {
        "base": str(ROOT / "configs/tictactoe.yaml"),
        "dir": str(tmp_path / "sweep"),
        "overrides": [
            "model.size=nano",
            "model.block_size=64",
            "imitation.epochs=1",
            "imitation.batch_size=16",
            "imitation.eval_every=5",
            "imitation.threads=1",
            "selfplay.algorithm=none",
        ],
        "grid": {  # a width and its learning rate go together
            "width": [
                {"model.n_embd": 16, "imitation.lr": 0.003},
                {"model.n_embd": 32, "imitation.lr": 0.002},
            ],
            "transcripts.games": [20, 40],
        },
        "workers": 1,
        "bootstrap": 0,
        **extra,
    }
    path = tmp_path / "sweep_ttt.yaml"
    path.write_text(json.dumps(text))
    return path


def test_a_sweep_runs_its_points_keeps_a_second_sweep_out_and_resumes_after_a_kill(tmp_path):
    path = sweep_file(tmp_path, workers=2)  # a second point is running when the sweep is killed
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "selfplay.sweep", str(path), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    points = tmp_path / "sweep" / "points"
    deadline = time.time() + 240
    while not list(points.glob("*/point.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    first = list(points.glob("*/point.json"))
    assert first, proc.communicate()[0].decode()[-2000:] if proc.poll() is not None else "no point finished"
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and f"sweep is in use by pid {proc.pid}" in second.stderr, second.stderr
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)
    alive = subprocess.run(["pgrep", "-f", str(points)], capture_output=True, text=True).stdout.split()
    assert not alive  # the running point died with the sweep
    done_before = {p.parent.name: p.read_text() for p in points.glob("*/point.json")}
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"{len(done_before)} of 4 points done before" in out.stdout
    results = {p.parent.name: json.loads(p.read_text()) for p in points.glob("*/point.json")}
    assert len(results) == 4 and all(results[n] == json.loads(t) for n, t in done_before.items())
    small, large = results["width-16_games-20"], results["width-32_games-40"]
    assert small["overrides"] == ["model.n_embd=16", "imitation.lr=0.003", "transcripts.games=20"]
    assert small["N"] < large["N"] and small["D"] > 0 and large["D"] > 0  # D: tokens to the kept step
    processed = json.loads((points / small["name"] / "imitation.json").read_text())["tokens_processed"]
    assert small["C"] == 6 * small["N"] * processed
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in results.values())
    md = (tmp_path / "sweep" / "sweep.md").read_text()
    assert "No fit" in md and md.count("| width-") == 4
    shared = tmp_path / "sweep" / "transcripts" / "transcripts.jsonl"  # made once, 40 games
    assert len(shared.read_text().splitlines()) == 40
    config = yaml.safe_load((points / small["name"] / "config.yaml").read_text())
    assert config["transcripts"]["take"] == 20 and config["transcripts"]["path"] == str(shared.resolve())
    assert list((tmp_path / "sweep" / "tb").glob("*/events*"))


def test_a_bad_sweep_file_names_the_point_or_key(tmp_path):
    with pytest.raises(ConfigError, match="grid"):
        load_sweep(sweep_file(tmp_path, grid=[1]))
    with pytest.raises(ConfigError, match=r"point n_embd-15_games-20: .*multiple of n_head"):
        load_sweep(sweep_file(tmp_path, grid={"model.n_embd": [15], "transcripts.games": [20]}))
    with pytest.raises(ConfigError, match="unknown_key"):
        load_sweep(sweep_file(tmp_path, unknown_key=1))


def test_runs_of_one_n_and_d_are_one_point_of_the_fit():
    from selfplay.sweep import merged

    runs = [
        {"name": "w-8_seed-0", "N": 10, "D": 100, "loss": 1.0},
        {"name": "w-8_seed-1", "N": 10, "D": 100.05, "loss": 2.0},  # a token apart: the last batch
        {"name": "w-16_seed-0", "N": 40, "D": 100, "loss": 0.5},
    ]
    points = merged(runs)
    assert [(p["name"], p["loss"], p["runs"]) for p in points] == [
        ("w-8_seed-0 (mean of 2)", 1.5, 2),
        ("w-16_seed-0", 0.5, 1),
    ]


def test_a_selfplay_sweep_rates_every_checkpoint_at_each_budget_in_one_arena(tmp_path):
    """A self-play point's checkpoints at three search budgets and a baseline in one round robin: every
    player rated, its compute recorded, Elo lines, the exchange rate and the PNGs; run again, nothing is
    played twice."""
    from selfplay.sweep import main

    path = sweep_file(
        tmp_path,
        overrides=[
            "model.size=nano",
            "model.n_embd=16",
            "model.block_size=64",
            "transcripts.games=20",
            "imitation.epochs=1",
            "imitation.batch_size=16",
            "selfplay.checkpoint_every=2",
            "selfplay.games_per_actor=4",
            "selfplay.simulations=4",
            "selfplay.min_replay=16",
            "selfplay.batch_size=8",
            "selfplay.threads=1",
            "evaluation.games=0",
            "evaluation.final_games=0",
        ],
        grid={"selfplay.steps": [4]},
        fit_loss=False,
        arena={
            "checkpoints": "all",
            "simulations": [0, 2, 4],
            "baselines": ["random"],
            "games": 2,
            "workers": 1,
        },
    )
    assert main([str(path), "--no-progress"]) == 0
    out = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["arena"]
    rated = out["players"]
    # the imitation checkpoint self-play started from, steps 2 and 4; each at 0, 2 and 4 simulations
    assert sorted((p["point"], p["step"], p["simulations"]) for p in rated) == [
        ("steps-4", s, b) for s in (0, 2, 4) for b in (0, 2, 4)
    ]
    by = {(p["step"], p["simulations"]): p for p in rated}
    point = tmp_path / "sweep" / "points" / "steps-4"
    c = json.loads((point / "checkpoints" / "step_000004" / "meta.json").read_text())["compute"]
    assert c["positions_trained"] == 4 * 8 and c["positions_evaluated"] > 0 and c["tokens_per_position"] > 0
    assert c["flops"] == 2 * c["non_embedding_parameters"] * c["tokens_per_position"] * (
        c["positions_evaluated"] + 3 * c["positions_trained"]
    )
    imitation = json.loads((point / "imitation.json").read_text())["train_flops"]
    assert by[(0, 0)]["train_flops"] == imitation  # the stage-2 start: its imitation's compute
    assert by[(4, 0)]["train_flops"] == imitation + c["flops"] > by[(2, 0)]["train_flops"] > imitation
    assert by[(2, 4)]["test_flops"] == 4 * by[(2, 0)]["test_flops"] == 2 * by[(2, 2)]["test_flops"]
    games = (tmp_path / "sweep" / "arena" / "matches.jsonl").read_text().splitlines()
    assert len(games) == 2 * 10 * 9 // 2  # a round robin of the 9 players and random, 2 games a pair
    assert all(np.isfinite(p["elo"]) and p["games"] == 2 * 9 for p in rated)
    assert set(out["lines"]) == {"0", "2", "4"} and out["exchange"]["players"] == 6
    assert np.isfinite(out["exchange"]["rate"]) and "rate_interval" in out["exchange"]
    md = (tmp_path / "sweep" / "sweep.md").read_text()
    assert "## Arena" in md and "10x training compute is worth" in md and "No fit" not in md
    for png in ("elo_compute.png", "iso_elo.png"):
        assert (tmp_path / "sweep" / "arena" / png).stat().st_size > 0
    assert main([str(path), "--no-progress"]) == 0  # everything done: no game played again
    assert (tmp_path / "sweep" / "arena" / "matches.jsonl").read_text().splitlines() == games


def test_a_sweep_arena_refuses_a_bad_baseline_before_running(tmp_path):
    with pytest.raises(ConfigError, match=r"arena\.baselines: .*nosuchplayer"):
        load_sweep(sweep_file(tmp_path, arena={"baselines": ["nosuchplayer"]}))
    with pytest.raises(ConfigError, match=r"arena\.games"):
        load_sweep(sweep_file(tmp_path, arena={"games": 3}))

"""The local runtime keeps a run alive: a dead actor or inference server is restarted (up to
`runtime.max_restarts`), the games it had in flight are counted lost, none is counted twice; and a learner
waiting for data says what it waits for."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import selfplay.games.selfplay as learner
from selfplay.config import load_config

ROOT = Path(__file__).resolve().parents[1]

TINY = [
    "transcripts.games=60",
    "model.size=nano",
    "model.block_size=64",
    "imitation.max_steps=30",
    "imitation.eval_every=15",
    "selfplay.actors=1",
    "selfplay.steps=60",
    "selfplay.checkpoint_every=10",
    "selfplay.games_per_actor=8",
    "selfplay.simulations=8",
    "selfplay.min_replay=32",
    "selfplay.batch_size=16",
    "evaluation.games=0",
]


def run_and_kill(run_dir: Path, victim: str, *extra: str, stats: str = "selfplay/stats.json"):
    """Start the main command, SIGKILL the process named `victim` (from `stats.json`'s pids) once the
    first checkpoint is written, and let the run go on; returns (completed process, final stats)."""
    argv = [sys.executable, "-m", "selfplay.run", "--no-progress"]
    argv += [str(ROOT / "configs/tictactoe.yaml"), f"run_dir={run_dir}", *TINY, *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path, deadline = run_dir / stats, time.monotonic() + 240
    while not path.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before anything could be killed"
    pid = json.loads(path.read_text())["pids"][victim]
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    done = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    return done, json.loads(path.read_text())


@pytest.mark.slow
def test_a_killed_actor_is_replaced_and_no_game_counts_twice(tmp_path):
    done, stats = run_and_kill(tmp_path / "run", "actor-0")
    assert done.returncode == 0, done.stderr
    assert "runtime: actor 0 died" in done.stdout
    assert stats["step"] == 60 and stats["actor_restarts"] == 1
    assert stats["games_lost"] >= 1  # its games in flight
    assert stats["games"] == stats["trajectories"] and stats["duplicates_dropped"] == 0


@pytest.mark.slow
def test_a_killed_inference_server_is_replaced(tmp_path):
    extra = ["runtime.inference_server=on", "selfplay.actors=2"]
    done, stats = run_and_kill(tmp_path / "run", "inference-server", *extra)
    assert done.returncode == 0, done.stderr
    assert "inference server died" in done.stdout
    assert stats["step"] == 60 and stats["server_restarts"] == 1 and stats["actor_restarts"] == 0
    assert stats["games"] == stats["trajectories"] and stats["duplicates_dropped"] == 0


@pytest.mark.slow
def test_an_actor_dying_past_max_restarts_stops_the_run_keeping_its_checkpoints(tmp_path):
    done, _ = run_and_kill(tmp_path / "run", "actor-0", "runtime.max_restarts=0")
    assert done.returncode == 1
    assert "actor 0 died" in done.stderr and "runtime.max_restarts = 0" in done.stderr
    assert "--resume" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "run/checkpoints/step_000010").is_dir()


def test_a_waiting_learner_says_what_it_waits_for(tmp_path, ttt_nano, capsys):
    cfg = load_config(
        ROOT / "configs/tictactoe.yaml",
        [
            f"run_dir={tmp_path / 'run'}",
            "selfplay.actors=0",
            "selfplay.games_per_actor=2",
            "selfplay.simulations=0",
            "selfplay.min_replay=20000",
            "selfplay.max_minutes=0.02",
            "evaluation.games=0",
        ],
    )
    learner.train(cfg, tmp_path / "run", ttt_nano, progress=True)
    err = capsys.readouterr().err
    assert "waiting for games: replay " in err and "/20000 positions" in err


def test_an_actor_dying_while_the_learner_looks_away_still_counts_its_games_lost(tmp_path, ttt_nano):
    """Its death is counted when its pipe is read to the end, not when the learner next collects: an actor
    killed in a run's last seconds (the minutes run out, the last checkpoint is written) counts too."""
    import agents
    from selfplay.games.actor import make_actor
    from selfplay.runtime import Actors, make_runtime

    extra = ["selfplay.games_per_actor=4", "selfplay.simulations=2", "selfplay.threads=1"]
    cfg = load_config(ROOT / "configs/tictactoe.yaml", [f"run_dir={tmp_path / 'run'}", *extra])
    model = agents.load(ttt_nano, device="cpu").model
    runtime = make_runtime(Actors(cfg, make_actor, str(ttt_nano), 2), model, version=0)
    runtime.start()
    try:
        deadline, players = time.monotonic() + 120, set()
        while 0 not in players and time.monotonic() < deadline:  # until actor 0 has delivered a game
            players |= {actor for actor, _, _ in runtime.collect(timeout=1.0)}
        os.kill(runtime.pids()["actor-0"], signal.SIGKILL)
        time.sleep(1.0)  # no collect: the learner is busy, or done
        assert runtime.stats()["games_lost"] >= 1  # its 4 games in flight, at least one begun
    finally:
        runtime.close()

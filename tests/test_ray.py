"""The Ray backend on a local 2-CPU Ray: the same training code as the local backend, actors that die are
replaced without any game counted twice, and the tic-tac-toe config gets the same result on both.
Skipped when Ray is not installed (`pip install -e .[ray]`)."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import agents  # noqa: E402
import selfplay.games.selfplay as learner  # noqa: E402
from selfplay.config import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        ray.shutdown()
    # A GPU resource Ray can schedule against, though there is no GPU: torch still finds none, so
    # `device: auto` stays on the CPU and the placement logic is what gets tested.
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


def ttt_config(run_dir, *extra):
    return load_config(ROOT / "configs/tictactoe.yaml", [f"run_dir={run_dir}", "evaluation.games=0", *extra])


def stats_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "selfplay/stats.json").read_text())


def kill_actor_when(ready: Path, name_prefix: str, killed: list) -> None:
    """Once `ready` exists, SIGKILL the process of the live Ray actor whose name starts `name_prefix`."""
    deadline = time.monotonic() + 120
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
    victim = next(n for n in names if n.startswith(name_prefix))
    pid = ray.get(ray.get_actor(victim).pid.remote())
    os.kill(pid, signal.SIGKILL)
    killed.append(victim)


@pytest.mark.timeout(300)
def test_killed_actor_is_replaced_and_no_trajectory_is_counted_twice(tmp_path, ttt_nano):
    run_dir = tmp_path / "run"
    cfg = ttt_config(
        run_dir,
        "runtime.backend=ray",
        "runtime.actor_cpus=0.5",
        "selfplay.actors=2",
        "selfplay.games_per_actor=4",
        "selfplay.simulations=8",
        "selfplay.steps=60",
        "selfplay.checkpoint_every=10",
        "selfplay.min_replay=32",
        "selfplay.batch_size=16",
        "selfplay.replay_ratio=1",  # every step waits for fresh games, so the run outlives the kill
        "selfplay.publish_every=2",
    )
    killed: list = []
    killer = threading.Thread(
        target=kill_actor_when, args=(run_dir / "checkpoints/step_000010", "selfplay-actor-0-", killed)
    )
    killer.start()
    final = learner.train(cfg, run_dir, ttt_nano, progress=False)
    killer.join()
    assert killed and final.name == "step_000060"
    stats = stats_of(run_dir)
    assert stats["actor_restarts"] == 1
    assert stats["duplicates_dropped"] == 0
    assert stats["games"] == stats["trajectories"] > 0  # every game the learner counted is a distinct one
    for step in range(10, 70, 10):
        agents.load(run_dir / f"checkpoints/step_{step:06d}", device="cpu")


def test_ray_runs_actors_through_the_inference_server(tmp_path, ttt_nano):
    run_dir = tmp_path / "run"
    cfg = ttt_config(
        run_dir,
        "runtime.backend=ray",
        "runtime.inference_server=on",
        "runtime.actor_cpus=0.5",
        "selfplay.actors=2",
        "selfplay.games_per_actor=4",
        "selfplay.simulations=8",
        "selfplay.steps=6",
        "selfplay.checkpoint_every=6",
        "selfplay.min_replay=32",
        "selfplay.batch_size=16",
    )
    assert learner.train(cfg, run_dir, ttt_nano, progress=False).name == "step_000006"
    stats = stats_of(run_dir)
    assert stats["server_forwards"] > 0 and stats["duplicates_dropped"] == 0
    assert stats["games"] == stats["trajectories"] > 0


def test_learner_runs_as_a_ray_task_holding_its_gpus(tmp_path, ttt_nano):
    from selfplay.run import selfplay_stage

    run_dir = tmp_path / "run"
    cfg = ttt_config(
        run_dir,
        "runtime.backend=ray",
        "runtime.learner_gpus=1",
        "runtime.actor_cpus=0.5",
        "selfplay.actors=1",
        "selfplay.games_per_actor=4",
        "selfplay.simulations=8",
        "selfplay.steps=4",
        "selfplay.checkpoint_every=4",
        "selfplay.min_replay=32",
        "selfplay.batch_size=16",
    )
    assert selfplay_stage(cfg, run_dir, ttt_nano, progress=False).name == "step_000004"
    stats = stats_of(run_dir)
    assert stats["learner"].split(":")[1] != str(os.getpid())  # a Ray worker, not this driver
    assert stats["games"] == stats["trajectories"] > 0


def test_resources_a_local_ray_cannot_give_are_an_error(tmp_path, ttt_nano):
    cfg = ttt_config(tmp_path / "run", "runtime.backend=ray", "selfplay.actors=2", "runtime.actor_gpus=1")
    with pytest.raises(RuntimeError, match=r"runtime\.actor_gpus"):
        learner.train(cfg, tmp_path / "run", ttt_nano, progress=False)


def test_reward_env_rl_runs_on_ray(tmp_path, capsys):
    from selfplay.run import main

    run_dir = tmp_path / "run"
    argv = [
        str(ROOT / "configs/arithmetic.yaml"),
        f"run_dir={run_dir}",
        "env_options={digits: 1, ops: '+'}",
        "transcripts.games=200",
        "model.size=nano",
        "model.block_size=16",
        "imitation.max_steps=10",
        "imitation.eval_every=10",
        "imitation.eval_positions=10",
        "rl.max_new_tokens=3",
        "rl.steps=4",
        "rl.checkpoint_every=2",
        "rl.eval_every=2",
        "rl.eval_tasks=10",
        "rl.prompts_per_step=8",
        "rl.group_size=4",
        "rl.batch_size=16",
        "rl.min_replay=8",
        "rl.actors=2",
        "runtime.backend=ray",
        "runtime.actor_cpus=0.5",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "rl: final checkpoint" in capsys.readouterr().out
    assert agents.read_meta(run_dir / "checkpoints/step_000004")["stage"] == "rl/programmatic"


def test_a_sweep_runs_its_points_as_ray_tasks(tmp_path):
    from test_sweep import sweep_file

    from selfplay.sweep import load_sweep, report, run_sweep

    grid = {"model.n_embd": [16], "transcripts.games": [20, 30]}
    sweep, points = load_sweep(sweep_file(tmp_path, backend="ray", workers=2, grid=grid))
    results = run_sweep(sweep, points, progress=False)
    assert [r["name"] for r in results] == [n for n, _ in points] and len(results) == 2
    assert all(r["runner"].split(":")[1] != str(os.getpid()) for r in results)  # in Ray workers
    assert "No fit" in report(sweep, results)

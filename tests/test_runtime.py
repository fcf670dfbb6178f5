"""The runtime layer on CPU: the batched inference server answers exactly what the policy would, merges
actors' requests, follows published weights; the ledger drops a trajectory delivered twice; self-play
runs end to end through the server."""

import json
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

import agents
import envs
import selfplay.games.selfplay as learner
from agents.policy import queries
from selfplay.config import load_config
from selfplay.games.actor import Trajectory
from selfplay.runtime import Ledger, SharedWeights
from selfplay.runtime.inference import LocalServer, RemotePolicy, gather, serve, use_server

ROOT = Path(__file__).resolve().parents[1]


def config(tmp_path, *extra):
    return load_config(ROOT / "configs/tictactoe.yaml", [f"run_dir={tmp_path / 'run'}", *extra])


def test_serve_splits_one_forward_pass_back_per_request(ttt_nano):
    policy = agents.load(ttt_nano, device="cpu")
    states = envs.random_states(envs.make("tictactoe"), 10)
    direct = policy.evaluate(states)
    requests = [queries(chunk)[1] for chunk in (states[:3], states[3:4], states[4:])]
    replies = serve(policy, requests, version=7)
    assert [len(r[0]) for r in replies] == [3, 1, 6] and all(r[2] == 7 for r in replies)
    lps = [lp for r in replies for lp in r[0]]
    values = np.concatenate([r[1] for r in replies])
    for e, lp, v in zip(direct, lps, values, strict=True):
        np.testing.assert_allclose(e.logprobs, lp, atol=1e-5)
        assert abs(e.value - v) < 1e-5


def test_gather_stops_when_every_client_waits_or_the_batch_is_full():
    import queue

    q = queue.Queue()
    for item in [(1, ["a"] * 4, None), (2, ["b"] * 4, None), (0, ["c"] * 4, None)]:
        q.put(item)

    def get(t):
        return q.get(timeout=t) if t > 0 else q.get_nowait()

    first = (0, ["x"] * 4, None)
    assert len(gather(get, first, max_positions=100, wait_s=5.0, clients=2)) == 2  # clients 0 and 1
    assert len(gather(get, first, max_positions=8, wait_s=5.0, clients=9)) == 2  # 8 positions
    assert len(gather(get, first, max_positions=100, wait_s=0.0, clients=9)) == 2  # what was there


def test_local_server_answers_two_clients_and_follows_published_weights(ttt_nano):
    # the server on the CPU like the reference beside it (on a GPU the two differ by ~1e-4: other kernels)
    overrides = ["runtime.server_wait_ms=200", "selfplay.threads=1", "selfplay.actor_device=cpu"]
    cfg = load_config(ROOT / "configs/tictactoe.yaml", overrides)
    policy = agents.load(ttt_nano, device="cpu")
    ctx = mp.get_context("spawn")
    weights = SharedWeights(policy.model, ctx)
    server = LocalServer(ctx, cfg, str(ttt_nano), weights, n_clients=2)
    server.start()
    try:
        remote = [RemotePolicy(server.client(i), policy.face) for i in range(2)]
        states = envs.random_states(envs.make("tictactoe"), 6)
        for e, r in zip(policy.evaluate(states), remote[0].evaluate(states), strict=True):
            assert e.actions == r.actions
            np.testing.assert_allclose(e.probs, r.probs, atol=1e-5)
        assert remote[0].version == 0
        # two clients at once: one forward pass serves both
        import threading

        before = server.stats()["server_forwards"]
        out = [None, None]
        threads = [
            threading.Thread(target=lambda i=i: out.__setitem__(i, remote[i].evaluate(states[i * 3 :][:3])))
            for i in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert server.stats()["server_forwards"] == before + 1
        assert all(len(o) == 3 for o in out)
        # new weights: the server picks them up before its next batch and says which version answered
        with torch.no_grad():
            for p in policy.model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        weights.publish(policy.model, 3)
        r = remote[1].evaluate(states)
        assert remote[1].version == 3
        for e, x in zip(policy.evaluate(states), r, strict=True):
            np.testing.assert_allclose(e.probs, x.probs, atol=1e-5)
    finally:
        server.close()


def test_ledger_drops_a_trajectory_delivered_twice():
    ledger = Ledger()
    a, b = Trajectory(uid="r.0.0.0"), Trajectory(uid="r.0.0.1")
    first = ledger.admit([(0, [a, b], None)])
    again = ledger.admit([(0, [Trajectory(uid="r.0.0.1"), Trajectory(uid="r.0.1.0")], None)])
    assert [t.uid for t in first[0][1]] == ["r.0.0.0", "r.0.0.1"]
    assert [t.uid for t in again[0][1]] == ["r.0.1.0"]
    assert ledger.stats() == {"trajectories": 3, "duplicates_dropped": 1}


def test_use_server_follows_the_config(tmp_path):
    assert use_server(config(tmp_path, "runtime.inference_server=on"), 2)
    assert not use_server(config(tmp_path, "runtime.inference_server=off"), 4)
    auto = config(tmp_path, "selfplay.actor_device=cpu")
    assert not use_server(auto, 4)  # auto: only when the actors would share a GPU


def test_selfplay_through_the_inference_server(tmp_path, ttt_nano):
    cfg = config(
        tmp_path,
        "runtime.inference_server=on",
        "selfplay.actors=2",
        "selfplay.games_per_actor=4",
        "selfplay.simulations=8",
        "selfplay.steps=6",
        "selfplay.checkpoint_every=3",
        "selfplay.min_replay=32",
        "selfplay.batch_size=16",
        "selfplay.publish_every=2",
        "evaluation.games=0",
    )
    run_dir = tmp_path / "run"
    final = learner.train(cfg, run_dir, ttt_nano, progress=False)
    assert final.name == "step_000006"
    stats = json.loads((run_dir / "selfplay/stats.json").read_text())
    assert stats["games"] == stats["trajectories"] > 0 and stats["duplicates_dropped"] == 0
    assert stats["server_forwards"] > 0 and stats["server_positions"] >= stats["positions"]


def test_actors_play_on_while_the_learner_is_busy(tmp_path, ttt_nano):
    """A learner busy elsewhere (a checkpoint's evaluation gauntlet) does not hold the actors back: their
    games wait in the runtime's inbox, far more than the pipe between the processes holds (64 KiB)."""
    import pickle
    import time

    from selfplay.games.actor import make_actor
    from selfplay.runtime import Actors, LocalRuntime

    cfg = config(tmp_path, "selfplay.actors=1", "selfplay.games_per_actor=8", "selfplay.simulations=2")
    runtime = LocalRuntime(Actors(cfg, make_actor, str(ttt_nano), 1), agents.load(ttt_nano).model, version=0)
    runtime.start()
    try:
        deadline = time.monotonic() + 60
        while runtime.started[0].value < 600 and time.monotonic() < deadline:  # nothing collected meanwhile
            time.sleep(0.2)
        time.sleep(0.5)
        batch = runtime.collect(timeout=1.0)
    finally:
        runtime.close()
    games = sum(len(items) for _, items, _ in batch)
    size = sum(len(pickle.dumps(entry)) for entry in batch)
    assert games >= 500 and size > 4 * 65536, (games, size)

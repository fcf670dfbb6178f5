"""Scale-out figures on whatever device is present: learner samples/s (the self-play loss, forward and
backward) and inference positions/s, called directly at batch 1 and 256, and through the batched
inference server with several actor processes sending it `--request` positions at a time.

    python bench/scale.py [--game connect_four] [--size small] [--device auto] [--seconds 5] [--clients 4]

All figures come from one run on one device, so their ratios compare across machines.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

import agents
import envs
from agents.policy import queries
from selfplay.config import Config
from selfplay.games.selfplay import Sample, losses
from selfplay.runtime import SharedWeights
from selfplay.runtime.inference import LocalServer, serve


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def learner_rate(policy: agents.Policy, states: list[envs.State], config: Config, seconds: float) -> float:
    """Self-play learner samples/s: `alphazero` loss on batches of `selfplay.batch_size` positions."""
    cfg = config.selfplay
    rng = np.random.default_rng(0)
    samples = []
    for s in states:
        legal = tuple(s.legal_texts())
        target = rng.dirichlet(np.ones(len(legal))).astype(np.float32)
        samples.append(Sample(s.prompt(), legal, 0, target, float(rng.choice([-1, 1])), 0.0, 0.0, 0))
    opt = torch.optim.AdamW(policy.model.parameters(), lr=1e-4)
    policy.model.train()
    done, start = 0, None
    for i in itertools.count():
        batch = [samples[(i * cfg.batch_size + k) % len(samples)] for k in range(cfg.batch_size)]
        with policy.autocast():
            loss, _ = losses(policy, batch, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if start is None:  # the first step warms up (allocations, kernels)
            _sync(policy.device)
            start = time.perf_counter()
            continue
        done += len(batch)
        if time.perf_counter() - start > seconds:
            break
    _sync(policy.device)
    policy.model.eval()
    return done / (time.perf_counter() - start)


def _rate(call, qs: list[agents.Query], batch: int, seconds: float) -> float:
    """Positions/s of `call(queries)` on batches of `batch` positions, cycling through them."""
    done, i, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call([qs[(i + k) % len(qs)] for k in range(batch)])
        done += batch
        i += batch
    return done / (time.perf_counter() - start)


def direct_rate(policy: agents.Policy, states: list[envs.State], batch: int, seconds: float) -> float:
    """Positions/s of one process calling the network itself (what the server does per batch)."""
    _, qs = queries(states, policy.face)
    return _rate(lambda r: serve(policy, [r], 0), qs, batch, seconds)


def _client(client, qs, request: int, seconds: float, results) -> None:
    torch.set_num_threads(1)
    results.put(_rate(client, qs, request, seconds))


def server_rate(
    ckpt: Path, config: Config, states: list[envs.State], clients: int, request: int, seconds: float
) -> tuple[float, float]:
    """Positions/s through one inference server with `clients` processes; and its mean batch."""
    ctx = mp.get_context("spawn")
    policy = agents.load(ckpt, device="cpu")
    weights = SharedWeights(policy.model, ctx)
    server = LocalServer(ctx, config, str(ckpt), weights, clients)
    server.start()
    _, qs = queries(states, policy.face)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_client, args=(server.client(i), qs, request, seconds, results))
        for i in range(clients)
    ]
    try:
        for p in procs:
            p.start()
        rate = sum(results.get(timeout=seconds + 300) for _ in procs)
        for p in procs:
            p.join()
        stats = server.stats()
    finally:
        server.close()
    return rate, stats["server_positions"] / max(1.0, stats["server_forwards"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--game", default="connect_four")
    p.add_argument("--size", default="small")
    p.add_argument("--device", default="auto")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--request", type=int, default=64, help="positions per client request (games per actor)")
    args = p.parse_args()

    game = envs.make(args.game)
    states = envs.random_states(game, 1024)
    config = Config.model_validate(
        {
            "game": args.game,
            "selfplay": {"actor_device": args.device, "device": args.device, "batch_size": 128, "threads": 0},
        }
    )
    tok = agents.CharTokenizer()
    cfg = agents.ModelConfig.preset(args.size, vocab_size=tok.vocab_size, block_size=256)
    policy = agents.new_policy(cfg, device=args.device, seed=0, meta={"game": args.game})
    device = policy.device
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(f"model {args.size}, game {args.game}, device {device}: {name}")
    rows = [
        (
            "learner (alphazero loss, batch 128)",
            "samples/s",
            learner_rate(policy, states, config, args.seconds),
        )
    ]
    for batch in (1, 256):
        rows.append(
            (
                f"inference, direct, batch {batch}",
                "positions/s",
                direct_rate(policy, states, batch, args.seconds),
            )
        )
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = agents.save(policy, Path(tmp) / "policy")
        rate, mean_batch = server_rate(ckpt, config, states, args.clients, args.request, args.seconds)
    rows.append(
        (
            f"inference, server, {args.clients} clients x {args.request} (mean batch {mean_batch:.0f})",
            "positions/s",
            rate,
        )
    )
    print("| what | unit | rate |\n|---|---|---:|")
    for what, unit, rate in rows:
        print(f"| {what} | {unit} | {rate:,.0f} |")


if __name__ == "__main__":
    main()

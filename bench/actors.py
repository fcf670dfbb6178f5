"""Self-play throughput: games/s with 1 and 2 actor processes, and the share of actor time spent in the
network (target: at least 70%), measured side by side in one run.

    python bench/actors.py [--game connect_four] [--size small] [--simulations 32] [--games-per-actor 32]
                             [--seconds 60] [--checkpoint PATH]

Actors run exactly as in training (spawned processes, shared weights, a pipe each) with no learner beside
them, so the figures are the actors' own. Without --checkpoint an untrained policy of --size is used;
its games are longer or shorter than a trained one's, so compare ratios, not games/s across runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import agents
from selfplay.config import Config
from selfplay.runtime import LocalRuntime


def measure(config: Config, ckpt: Path, seconds: float, warmup: float) -> dict[str, float]:
    policy = agents.load(ckpt, device="cpu")
    runtime = LocalRuntime(config, ckpt, policy.model, version=0, pool=None)
    runtime.start()
    try:
        t_end_warm = time.perf_counter() + warmup
        while time.perf_counter() < t_end_warm:
            runtime.collect(timeout=0.5)
        games = moves = sims = 0
        net = busy = 0.0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for _, trajs, stats in runtime.collect(timeout=0.5):
                games += len(trajs)
                moves += stats.moves
                sims += stats.simulations
                net += stats.net_seconds
                busy += stats.seconds
        dt = time.perf_counter() - t0
    finally:
        runtime.close()
    return {
        "games_per_s": games / dt,
        "moves_per_s": moves / dt,
        "sims_per_s": sims / dt,
        "net_share": net / busy if busy else 0.0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--game", default="connect_four")
    p.add_argument("--size", default="small", choices=list(agents.PRESETS))
    p.add_argument("--checkpoint", help="a trained checkpoint instead of an untrained --size policy")
    p.add_argument("--simulations", type=int, default=32)
    p.add_argument("--games-per-actor", type=int, default=32)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=15.0)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(args.checkpoint) if args.checkpoint else Path(tmp) / "policy"
        if not args.checkpoint:
            cfg = agents.ModelConfig.preset(
                args.size, vocab_size=agents.CharTokenizer().vocab_size, block_size=256
            )
            agents.save(agents.new_policy(cfg, device="cpu", seed=0, meta={"game": args.game}), ckpt)
        rows = []
        for actors in (1, 2):
            config = Config.model_validate(
                {
                    "game": args.game,
                    "selfplay": {
                        "actors": actors,
                        "simulations": args.simulations,
                        "games_per_actor": args.games_per_actor,
                        "threads": 1,
                    },
                }
            )
            rows.append((actors, measure(config, ckpt, args.seconds, args.warmup)))
    name = args.checkpoint or f"untrained {args.size}"
    print(
        f"{args.game}, {name}, {args.simulations} simulations/move, {args.games_per_actor} games per actor, "
        f"{os.cpu_count()} cores, {args.seconds:.0f} s each\n"
    )
    print("| actors | games/s | moves/s | simulations/s | time in network |")
    print("|---:|---:|---:|---:|---:|")
    for actors, r in rows:
        print(
            f"| {actors} | {r['games_per_s']:.2f} | {r['moves_per_s']:.1f} | {r['sims_per_s']:.0f} "
            f"| {100 * r['net_share']:.0f}% |"
        )
    ratio = rows[1][1]["games_per_s"] / max(1e-9, rows[0][1]["games_per_s"])
    print(f"\n2 actors / 1 actor: {ratio:.2f}x games/s")


if __name__ == "__main__":
    main()

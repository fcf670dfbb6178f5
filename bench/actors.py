"""Self-play throughput: moves searched per second with each face of the policy (today's text face and
the board face) and 1 and 2 actor processes, and the share of actor time spent in the network, measured
side by side in one run at equal model size.

    python bench/actors.py [--game connect_four] [--size small] [--faces text board] [--actors 1 2]
                           [--simulations 32] [--games-per-actor 32] [--seconds 60] [--checkpoint PATH]

Actors run exactly as in training (spawned processes, shared weights, a pipe each) with no learner beside
them, so the figures are the actors' own. Without --checkpoint an untrained policy of --size is used per
face, a variant as in bench/tactics.py (`text`: the game's prompt, causal, each move scored as text;
`board`: configs/game.yaml's, the planes through the stem in 3 x 3 patches, a bidirectional prompt,
first-token scoring; `board:stem_patch=1`: a token per cell), its tokenizer learned from random
positions' text as imitation would; untrained games are longer or shorter than trained ones, so compare
ratios. Each face's rates are also given as ratios to the first one's; positions evaluated per second
is the network's own rate (a leaf reached twice in one wave is evaluated once).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from tactics import variant  # this folder's: one definition of the faces compared

import agents
import envs
from selfplay.config import Config, ModelSection
from selfplay.games.actor import make_actor
from selfplay.runtime import Actors, LocalRuntime


def measure(config: Config, ckpt: Path, seconds: float, warmup: float) -> dict[str, float]:
    policy = agents.load(ckpt, device="cpu")
    runtime = LocalRuntime(
        Actors(config, make_actor, str(ckpt), config.selfplay.actors), policy.model, version=0
    )
    runtime.start()
    try:
        t_end_warm = time.perf_counter() + warmup
        while time.perf_counter() < t_end_warm:
            runtime.collect(timeout=0.5)
        games = moves = sims = positions = 0
        net = busy = 0.0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for _, trajs, stats in runtime.collect(timeout=0.5):
                games += len(trajs)
                moves += stats.moves
                sims += stats.simulations
                positions += stats.positions
                net += stats.net_seconds
                busy += stats.seconds
        dt = time.perf_counter() - t0
    finally:
        runtime.close()
    return {
        "games_per_s": games / dt,
        "moves_per_s": moves / dt,
        "sims_per_s": sims / dt,
        "positions_per_s": positions / dt,
        "net_share": net / busy if busy else 0.0,
    }


def untrained(game: str, size: str, options: dict, path: Path) -> Path:
    """An untrained policy of `size` with the face `options`, its tokenizer learned from random positions'
    text."""
    section = ModelSection(size=size, **options)
    states = envs.random_states(envs.make(game), 500, seed=0)
    face_of = agents.Face.of(section.build(100, game))
    texts = [face_of.query(s, ()).prompt for s in states] + [t for s in states for t in s.legal_texts()]
    tokenizer = agents.BPETokenizer.train(texts, merges=section.merges)
    policy = agents.new_policy(
        section.build(tokenizer.vocab_size, game),
        tokenizer=tokenizer,
        device="cpu",
        seed=0,
        meta={"game": game},
    )
    return agents.save(policy, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--game", default="connect_four")
    p.add_argument("--size", default="small", choices=list(agents.PRESETS))
    p.add_argument(
        "--faces",
        nargs="+",
        default=["text", "board"],
        help="variants as in bench/tactics.py, e.g. board:stem_patch=1",
    )
    p.add_argument("--actors", nargs="+", type=int, default=[1, 2])
    p.add_argument("--checkpoint", help="a trained checkpoint instead of untrained policies of --size")
    p.add_argument("--simulations", type=int, default=32)
    p.add_argument("--games-per-actor", type=int, default=32)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=15.0)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint:
            ckpts = {"checkpoint": Path(args.checkpoint)}
        else:
            ckpts = {}
            for i, spec in enumerate(args.faces):
                name, options = variant(spec)
                ckpts[name] = untrained(args.game, args.size, options, Path(tmp) / str(i))
        for name, ckpt in ckpts.items():
            for actors in args.actors:
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
                rows.append((name, actors, measure(config, ckpt, args.seconds, args.warmup)))
    what = args.checkpoint or f"untrained {args.size}"
    print(
        f"{args.game}, {what}, {args.simulations} simulations/move, {args.games_per_actor} games per actor, "
        f"{os.cpu_count()} cores, {args.seconds:.0f} s each\n"
    )
    print("| face | actors | games/s | moves/s | simulations/s | positions evaluated/s | time in network |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, actors, r in rows:
        print(
            f"| {name} | {actors} | {r['games_per_s']:.2f} | {r['moves_per_s']:.1f} | {r['sims_per_s']:.0f} "
            f"| {r['positions_per_s']:.0f} "
            f"| {100 * r['net_share']:.0f}% |"
        )
    by = {(n, a): r for n, a, r in rows}
    print()
    for name in dict.fromkeys(n for n, _, _ in rows):
        if 1 in args.actors and 2 in args.actors:
            ratio = by[name, 2]["games_per_s"] / max(1e-9, by[name, 1]["games_per_s"])
            print(f"{name}: 2 actors / 1 actor: {ratio:.2f}x games/s")
    first, *others = ckpts
    for name in others:
        for actors in args.actors:
            ratio = by[name, actors]["moves_per_s"] / max(1e-9, by[first, actors]["moves_per_s"])
            evaluated = by[name, actors]["positions_per_s"] / max(1e-9, by[first, actors]["positions_per_s"])
            print(
                f"{actors} actor(s): {name} / {first}: {ratio:.2f}x moves searched per second, "
                f"{evaluated:.2f}x positions evaluated per second"
            )


if __name__ == "__main__":
    main()

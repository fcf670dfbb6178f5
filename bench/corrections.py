"""Do correction rounds pay? Connect Four imitation of the main job's teacher, with and without them.

    python bench/corrections.py [--steps 3000] [--rounds 4] [--games 400] [--round-steps 750] [KEY=VALUE ...]
    python bench/corrections.py --rate RUN/checkpoints/imitation RUN/checkpoints/corrections_4 ...

Arms (each a real `selfplay.run` of `configs/game.yaml` with self-play off and its own rounds, on one
shared file of the teacher's games): imitation for `--steps`; the same followed by `--rounds` correction
rounds against the teacher and against itself (the teacher labels every position the policy reached);
and imitation for as many steps as imitation and rounds together; `KEY=VALUE` changes the config of every
arm (`model.board_features=[]`: the stones alone, as before the board features). Every checkpoint is
then rated the same way: agreement with the teacher on its held-out games (the imitation split), score
(win 1, draw 1/2) of the greedy policy over `--games` games against the teacher (2 random opening plies,
colours swapped per pair), and the share of immediate wins taken and single threats blocked on positions from
random play, with the value head's ROC-AUC at telling the win positions (`bench/tactics.py`). Prints
a Markdown table.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import agents
import envs
from selfplay.arena.cli import gauntlet
from selfplay.core.transcripts import load_transcripts
from selfplay.games.imitate import evaluate_examples
from selfplay.games.imitation_data import build_examples, split_games

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tactics

ROOT = Path(__file__).resolve().parents[1]
TEACHER = "alphabeta:depth=2"


def run(run_dir: Path, data: Path, *overrides: str) -> float:
    """`selfplay.run` of the main job's config without self-play; its wall-clock seconds."""
    t0 = time.perf_counter()
    argv = [str(ROOT / "configs/game.yaml"), f"run_dir={run_dir}", f"transcripts.path={data}"]
    argv += [
        "selfplay.algorithm=none",
        "imitation.max_minutes=60",
        f"corrections.expert={TEACHER}",
        *overrides,
    ]
    subprocess.run([sys.executable, "-m", "selfplay.run", *argv, "--no-progress"], check=True, cwd=ROOT)
    return time.perf_counter() - t0


def rate(ckpt: Path, data: Path, held, games: int, out: Path) -> dict[str, float]:
    policy = agents.load(ckpt, device="cpu")
    transcripts = load_transcripts(data, game="connect_four")
    _, val = split_games(len(transcripts), 0.1, 0)  # the imitation stage's held-out games (seed 0)
    examples = build_examples(transcripts, envs.make("connect_four"), policy, games=val)
    agreement = evaluate_examples(policy, examples, loss="legal")["action_accuracy"]
    records = gauntlet(str(ckpt), [TEACHER], "connect_four", games=games, seed=0, out_dir=out)
    score = sum(r["score"] if r["players"][0] != TEACHER else 1 - r["score"] for r in records) / len(records)
    return {"agreement": agreement, "score": score, **tactics.measure(policy, held)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3000, help="imitation steps before the rounds")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--games", type=int, default=400, help="games per round")
    p.add_argument("--round-steps", type=int, default=750, help="imitation steps per round")
    p.add_argument("--arena-games", type=int, default=200)
    p.add_argument("--positions", type=int, default=20000, help="random-play positions for the tactics")
    p.add_argument("--rate", nargs="*", type=Path, help="only rate these checkpoints (with --data)")
    p.add_argument("--data", type=Path, help="the teacher's games (default: generated, 3000)")
    p.add_argument("--work", type=Path, help="where the runs go (default: a temporary directory)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every arm")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="corrections-"))
    data = args.data or work / "teacher.jsonl"
    if not data.exists():
        subprocess.run(
            [sys.executable, "-m", "selfplay.core.transcripts", "--game", "connect_four", "--expert", TEACHER,
             "--games", "3000", "--opening-plies", "2", "--out", str(data), "--no-progress"],
            check=True,
        )  # fmt: skip
    held = tactics.positions(args.positions, 0)
    random.Random(0).shuffle(held)  # the held-out positions of `bench/tactics.py --seed 0`
    held = held[: max(100, len(held) // 10)]
    arms: list[tuple[str, Path, float | None]] = [(str(c), c, None) for c in args.rate or []]
    if not args.rate:
        rounds = [f"corrections.rounds={args.rounds}", f"corrections.games={args.games}"]
        rounds.append(f"corrections.steps={args.round_steps}")
        total = args.steps + args.rounds * args.round_steps
        first, none = f"imitation.max_steps={args.steps}", ["corrections.rounds=0"]
        for name, extra in [
            ("imitation", [first, *none]),
            ("rounds against the teacher", [first, *rounds, f"corrections.opponent={TEACHER}"]),
            ("rounds against itself", [first, *rounds, "corrections.opponent=self"]),
            (
                "as many imitation steps",
                [f"imitation.max_steps={total}", "imitation.patience=100", "corrections.rounds=0"],
            ),
        ]:
            run_dir = work / name.replace(" ", "_")
            seconds = run(run_dir, data, *extra, *args.overrides)
            last = f"corrections_{args.rounds}" if "rounds" in name else "imitation"
            arms.append((name, run_dir / "checkpoints" / last, seconds))
    head = "| arm | seconds | agreement with the teacher | score against it | wins taken | threats blocked"
    print(head + " | value ROC-AUC |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, ckpt, seconds in arms:
        r = rate(
            ckpt, data, held, args.arena_games, work / "arena" / name.replace(" ", "_").replace("/", "_")
        )
        took = "-" if seconds is None else f"{seconds:.0f}"
        print(
            f"| {name} | {took} | {r['agreement']:.3f} | {r['score']:.3f} | {r['win']:.3f} | "
            f"{r['block']:.3f} | {r['value_auc']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

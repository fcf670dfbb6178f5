"""Tiny runs shared by the tests of run directories, resume states and refusals: their overrides and
helpers (the finished runs themselves are fixtures in conftest.py: `game_run`, `text_run`)."""

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TTT = str(ROOT / "configs/tictactoe.yaml")
ARITHMETIC = str(ROOT / "configs/arithmetic.yaml")

TINY = [
    "transcripts.games=60",
    "model.size=nano",
    "model.block_size=64",
    "imitation.max_steps=30",
    "imitation.eval_every=15",
    "selfplay.algorithm=pg",
    "selfplay.actors=0",
    "selfplay.steps=12",
    "selfplay.checkpoint_every=6",
    "selfplay.games_per_actor=8",
    "selfplay.min_replay=32",
    "selfplay.batch_size=16",
    "evaluation.games=4",
    "evaluation.baselines=[random]",
    "evaluation.recent=2",
]

TEXT = [
    "env_options={digits: 1, ops: '+'}",
    "transcripts.games=200",
    "model.size=nano",
    "model.block_size=16",
    "imitation.max_steps=20",
    "imitation.eval_every=10",
    "imitation.eval_positions=20",
    "rl.reward=verifier",
    "rl.max_new_tokens=3",
    "rl.steps=4",
    "rl.checkpoint_every=2",
    "rl.eval_every=2",
    "rl.eval_tasks=20",
    "rl.prompts_per_step=8",
    "rl.group_size=4",
    "rl.batch_size=16",
    "rl.min_replay=8",
    "rl.replay_size=64",
    "rl.actors=0",
    "verifier.tasks=20",
    "verifier.samples=2",
    "verifier.steps=4",
    "verifier.batch_size=16",
    "verifier.eval_tasks=10",
    "verifier.best_of=2",
]


def files_of(run_dir: Path) -> dict:
    """Every file of a run directory: its bytes and when it was last written (the lock file aside)."""
    return {
        p.relative_to(run_dir): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def copy(run_dir: Path, to: Path) -> Path:
    shutil.copytree(run_dir, to)
    return to

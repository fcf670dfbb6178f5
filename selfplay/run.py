"""The main job: `python -m selfplay.run CONFIG [key=value ...]`.

Everything lands in the run directory: the resolved config and the stage outputs. Stages so far:
expert transcripts (generated if missing, validated either way), then imitation (supervised
fine-tuning of the policy, checkpoint in `checkpoints/imitation`). Self-play follows.

When `game` names a reward environment the text stages run instead (`selfplay.text_rl.run`): expert
episodes, text imitation, the verifier when `rl.reward` needs it, then RL with group-relative PPO.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import agents
from selfplay import imitate
from selfplay.config import Config, ConfigError, dump_config, load_config
from selfplay.io import atomic_write_text
from selfplay.transcripts import TranscriptError, generate, load_transcripts


def transcripts_stage(config: Config, run_dir: Path, *, progress: bool = True) -> Path:
    """The imitation data: the user's file if configured, else generated into the run directory once."""
    tc = config.transcripts
    if tc.path is not None:
        games = load_transcripts(tc.path, game=config.game)
        print(f"transcripts: {len(games)} games from {tc.path}")
        return Path(tc.path)
    out = run_dir / "transcripts.jsonl"
    meta_path = run_dir / "transcripts.meta.json"
    wanted = {"game": config.game, **tc.model_dump(exclude={"workers", "path"})}
    if out.exists() and meta_path.exists() and json.loads(meta_path.read_text()) == wanted:
        games = load_transcripts(out, game=config.game)
        print(f"transcripts: reusing {len(games)} games in {out}")
        return out
    print(f"transcripts: generating {tc.games} {config.game} games with {tc.expert}")
    summary = generate(
        config.game,
        tc.expert,
        tc.games,
        out,
        seed=tc.seed,
        workers=tc.workers,
        opening_plies=tc.opening_plies,
        progress=progress,
    )
    atomic_write_text(meta_path, json.dumps(wanted, indent=2) + "\n")
    print(f"transcripts: {summary}")
    return out


def imitation_stage(config: Config, data: Path, run_dir: Path, *, progress: bool = True) -> Path:
    """The imitation checkpoint: trained once per configuration, reused when the run is started again."""
    ckpt = run_dir / "checkpoints" / "imitation"
    if (run_dir / "imitation.json").exists() and ckpt.exists():
        try:
            done = agents.read_meta(ckpt).get("config_hash") == imitate.config_hash(config)
        except agents.CheckpointError:
            done = False
        if done:
            print(f"imitation: reusing {ckpt}")
            return ckpt
    ckpt = imitate.train(config, data, run_dir, progress=progress)
    print(f"imitation: {imitate.describe(run_dir)}")
    return ckpt


def selfplay_stage(
    config: Config, run_dir: Path, start: Path, *, resume: bool = False, progress: bool = True
) -> Path | None:
    """Stage 2: self-play from `start` (or a fresh network) for the configured budget."""
    from selfplay import learner

    if config.selfplay.algorithm == "none":
        return None
    if config.selfplay.start == "scratch":
        start = scratch_checkpoint(config, run_dir, start)
    if config.runtime.backend == "ray" and config.runtime.learner_gpus > 0:
        from selfplay.ray_runtime import on_ray

        final = on_ray(learner.train, config, run_dir, start, resume=resume, progress=progress)
    else:
        final = learner.train(config, run_dir, start, resume=resume, progress=progress)
    print(f"selfplay: final checkpoint {final}")
    return final


def scratch_checkpoint(config: Config, run_dir: Path, imitation: Path) -> Path:
    """Fresh weights with the imitation checkpoint's tokenizer and shape (so both stages read alike)."""
    ckpt = run_dir / "checkpoints" / "scratch"
    if not ckpt.exists():
        template = agents.load(imitation, device="cpu")
        fresh = agents.new_policy(
            template.model.cfg, tokenizer=template.tokenizer, device="cpu", seed=config.selfplay.seed
        )
        agents.save(fresh, ckpt, meta={"game": config.game, "stage": "scratch", "step": 0, "parent": None})
    return ckpt


def prepare_run_dir(config: Config) -> Path:
    """Create the run directory and snapshot the resolved config in it."""
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", dump_config(config))
    return run_dir


def write_report(config: Config, run_dir: Path, final: Path | None) -> Path:
    """RUN/report.md: what each stage produced, the league table and the Elo plot."""
    from selfplay import learner

    lines = [f"# Run report: {config.game}", "", f"Config: `config.yaml`. Run directory: `{run_dir}`.", ""]
    if (run_dir / "imitation.json").exists():
        lines += ["## Imitation", "", imitate.describe(run_dir), ""]
    state = learner.load_state(run_dir) if (run_dir / learner.STATE_FILE).exists() else None
    if final is not None and state is not None:
        lines += [
            "## Self-play",
            "",
            f"`{config.selfplay.algorithm}`: {state['step']} learner steps on {state['games']} games "
            f"({state['positions']} positions) in {state['elapsed'] / 60:.1f} minutes; "
            f"final checkpoint `{final}`.",
            "",
        ]
    table = run_dir / "arena" / "ratings.md"
    if table.exists():
        lines += ["## League table (evaluation gauntlets)", "", table.read_text().strip(), ""]
    if (run_dir / "arena" / "elo_by_step.png").exists():
        lines += ["![Elo by training step](arena/elo_by_step.png)", ""]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def run(config: Config, *, resume: bool = False, progress: bool = True) -> Path:
    run_dir = prepare_run_dir(config)
    if config.is_reward_env:  # a reward environment: text imitation, verifier, RL (selfplay.text_rl)
        from selfplay import text_rl

        text_rl.run(config, run_dir, resume=resume, progress=progress)
        return run_dir
    data = transcripts_stage(config, run_dir, progress=progress)
    start = imitation_stage(config, data, run_dir, progress=progress)
    final = selfplay_stage(config, run_dir, start, resume=resume, progress=progress)
    print(f"report: {write_report(config, run_dir, final)}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m selfplay.run", description="Run the selfplay pipeline.")
    p.add_argument("config", nargs="?", help="YAML config, e.g. configs/game.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. transcripts.games=100")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.resume and args.config and "=" in args.config:  # `--resume RUN k=v`: no config positional
        args.overrides.insert(0, args.config)
        args.config = None
    if bool(args.resume) == bool(args.config):
        p.error("give a CONFIG or --resume RUN_DIR (not both)")
    try:
        if args.resume:
            saved = Path(args.resume) / "config.yaml"
            if not saved.exists():
                raise ConfigError(f"{args.resume}: not a run directory (no config.yaml in it)")
            config = load_config(saved, args.overrides)
            if Path(config.run_dir).resolve() != Path(args.resume).resolve():
                config = config.model_copy(update={"run_dir": str(args.resume)})
        else:
            config = load_config(args.config, args.overrides)
        run_dir = run(config, resume=bool(args.resume), progress=not args.no_progress)
    except (ConfigError, TranscriptError, imitate.ImitationError, agents.CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"run directory: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

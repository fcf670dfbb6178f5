"""The main job: `python -m selfplay.run CONFIG [key=value ...]`.

Everything lands in the run directory: the resolved config and each stage's outputs. The two pipelines,
side by side (each stage reuses its output when this configuration made it, so a run started again
skips what is done):

    game                                           reward environment (`game` names one)
    transcripts   expert games                     transcripts   expert episodes
    imitation     selfplay.games.imitate           imitation     selfplay.text.imitate
    corrections   selfplay.games.corrections       verifier      selfplay.text.verifier.stage (`rl.reward`)
    self-play     selfplay.games.selfplay          RL            selfplay.text.rl (stage 2)
    report        RUN/report.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import agents
import selfplay.core.rundir as rundir
import selfplay.games.imitate as imitate
import selfplay.games.selfplay as learner
import selfplay.text.imitate as text_imitate
import selfplay.text.rl as text_rl
from selfplay.config import Config, ConfigError, load_config
from selfplay.core.loop import Diverged
from selfplay.core.resume import RL_DIR, SELFPLAY_DIR
from selfplay.core.transcript_stage import transcripts_stage
from selfplay.core.transcripts import TranscriptError
from selfplay.games.corrections import corrections_outputs, corrections_stage
from selfplay.io import atomic_write_text
from selfplay.runtime import RuntimeFailure
from selfplay.runtime.ray_backend import on_ray
from selfplay.text.corrections import text_corrections_outputs, text_corrections_stage
from selfplay.text.verifier.data import VerifierDataError
from selfplay.text.verifier.stage import verifier_outputs, verifier_stage


def outputs(config: Config, run_dir: Path, resume: bool) -> list[rundir.Output]:
    """Everything the pipeline of `config` writes that an earlier run may have left, and when it may stay."""
    out = imitate.stage1_outputs(config, run_dir)
    if config.is_reward_env:
        out += text_corrections_outputs(config, run_dir)
        if config.rl.algorithm != "none" and config.rl.reward != "programmatic":
            out += verifier_outputs(config, run_dir)
        return [*out, *rundir.stage2_outputs(run_dir, RL_DIR, what="an RL run", keep=resume)]

    out += corrections_outputs(config, run_dir)
    return [*out, *rundir.stage2_outputs(run_dir, SELFPLAY_DIR, what="a self-play run", keep=resume)]


def selfplay_stage(
    config: Config, run_dir: Path, start: Path, *, resume: bool = False, progress: bool = True
) -> Path | None:
    """Stage 2: self-play from `start` (or a fresh network) for the configured budget."""

    if config.selfplay.algorithm == "none":
        return None
    if config.selfplay.start == "scratch":
        start = scratch_checkpoint(config, run_dir, start)
    if config.runtime.backend == "ray" and config.runtime.learner_gpus > 0:
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


def write_report(config: Config, run_dir: Path, final: Path | None) -> Path:
    """RUN/report.md: what each stage produced, the league table and the Elo plot."""

    lines = [
        f"# Run report: {config.game}",
        "",
        "Config: `config.yaml`; paths are relative to this directory.",
        "",
    ]
    if (run_dir / "imitation.json").exists():
        lines += ["## Imitation", "", imitate.describe(run_dir), ""]
    rounds = [run_dir / f"corrections_{r}.json" for r in range(1, config.corrections.rounds + 1)]
    if rounds and all(p.exists() for p in rounds):
        lines += [
            "## Correction rounds",
            "",
            "| round | games | labelled | policy = expert | held-out agreement |",
        ]
        lines += ["|---:|---:|---:|---:|---:|"]
        for r, path in enumerate(rounds, 1):
            s = rundir.read_json(path)
            p, agree = s["played"], s["val_action_accuracy"]
            lines.append(f"| {r} | {p['games']} | {p['labels']} | {p['agreement']:.3f} | {agree:.3f} |")
        lines.append("")
    state = learner.load_state(run_dir)
    if final is not None and state is not None:
        lines += [
            "## Self-play",
            "",
            f"`{config.selfplay.algorithm}`: {state['step']} learner steps on {state['games']} games "
            f"({state['positions']} positions) in {state['elapsed'] / 60:.1f} minutes; "
            f"final checkpoint `{rundir.rel(final, run_dir)}`.",
            "",
        ]
    final_md = run_dir / "arena" / "final.md"
    if final_md.exists():
        lines += ["## The final checkpoint", "", final_md.read_text().strip(), ""]
    table = run_dir / "arena" / "ratings.md"
    if table.exists():
        lines += ["## League table (evaluation gauntlets)", "", table.read_text().strip(), ""]
    if (run_dir / "arena" / "elo_by_step.png").exists():
        lines += ["![Elo by training step](arena/elo_by_step.png)", ""]
    scores = run_dir / "arena" / "scores_by_step.md"
    if scores.exists():
        body = scores.read_text().strip().partition("\n\n")[2]  # without its own title
        lines += ["## Scores against the baselines by step", "", body, ""]
        lines += ["![Scores by training step](arena/scores_by_step.png)", ""]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def game_pipeline(config: Config, run_dir: Path, *, resume: bool, progress: bool) -> None:
    data = transcripts_stage(config, run_dir, progress=progress)
    start = imitate.imitation_stage(config, data, run_dir, progress=progress)
    start = corrections_stage(config, run_dir, data, start, progress=progress)
    final = selfplay_stage(config, run_dir, start, resume=resume, progress=progress)
    print(f"report: {write_report(config, run_dir, final)}")


def text_pipeline(config: Config, run_dir: Path, *, resume: bool, progress: bool) -> None:
    data = transcripts_stage(config, run_dir, progress=progress)
    start = text_imitate.imitation_stage(config, data, run_dir, progress=progress)
    start = text_corrections_stage(config, run_dir, data, start, progress=progress)
    if config.rl.algorithm == "none":
        return
    if config.rl.reward != "programmatic":
        verifier_stage(config, run_dir, start, progress=progress)
    final = text_rl.train(config, run_dir, start, resume=resume, progress=progress)
    s = rundir.read_json(run_dir / "rl.json")
    print(
        f"rl: final checkpoint {final}: held-out true accuracy {s['final_accuracy']:.3f} "
        f"(imitation {s['start_accuracy']:.3f}, best {s['best_accuracy']:.3f}) after {s['steps']} steps"
    )


def run(config: Config, *, resume: bool = False, progress: bool = True) -> Path:
    """Every stage of `config` in its run directory (see `selfplay.core.rundir` for what is refused first)."""
    pipeline = text_pipeline if config.is_reward_env else game_pipeline
    with rundir.opened(config, resume=resume, outputs=outputs) as run_dir:
        pipeline(config, run_dir, resume=resume, progress=progress)
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
            moved = [o for o in args.overrides if o.partition("=")[0].strip() == "run_dir"]
            if moved:
                raise ConfigError(
                    f"{moved[0]!r}: --resume {args.resume} continues the run where it is; run_dir cannot be "
                    "overridden (copy or move the directory, then --resume it there)"
                )
            saved = Path(args.resume) / rundir.CONFIG
            if not saved.exists():
                raise ConfigError(f"{args.resume}: not a run directory (no config.yaml in it)")
            config = load_config(saved, args.overrides)
            config = config.model_copy(update={"run_dir": str(args.resume)})  # where it is now
        else:
            config = load_config(args.config, args.overrides)
        run_dir = run(config, resume=bool(args.resume), progress=not args.no_progress)
    except (
        ConfigError,
        TranscriptError,
        imitate.ImitationError,
        agents.CheckpointError,
        rundir.RunDirError,
        VerifierDataError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (RuntimeFailure, Diverged) as e:  # not bad input: the run broke down, and can be resumed
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"run directory: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

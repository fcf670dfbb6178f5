"""The transcripts stage of a run: the user's file (checked against the config), or the expert's or
teacher's transcripts generated into the run directory once per setting (`wanted`, recorded in
`RUN/transcripts.meta.json`). The formats and their generation are `selfplay.core.transcripts`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import envs
import selfplay.core.rundir as rundir
from selfplay.core.rundir import same_json
from selfplay.core.transcripts import (
    TextTranscriptError,
    TranscriptError,
    expert_transcripts,
    generate,
    load_text_transcripts,
    load_transcripts,
)
from selfplay.io import atomic_write_text


def wanted(config) -> dict:
    """What generated transcripts depend on, as their meta file `RUN/transcripts.meta.json` records it."""
    tc = config.transcripts
    if config.is_reward_env:
        options = envs.make(config.game, **config.env_options).options
        want = {"game": config.game, "options": options, "episodes": tc.games, "seed": tc.seed}
        return want if tc.teacher == "expert" else {**want, "teacher": tc.teacher}
    return {"game": config.game, **tc.model_dump(exclude={"workers", "path"})}


def transcripts_output(config, run_dir: Path) -> list:
    """The generated transcripts as an output of the run directory (`selfplay.core.rundir.Output`), allowed to
    stay if this config made them; none when the config names its own file."""

    if config.transcripts.path is not None:
        return []
    meta, want = run_dir / "transcripts.meta.json", wanted(config)
    made = lambda: rundir.same_json(meta, want)  # noqa: E731
    return [rundir.Output("transcripts", run_dir / "transcripts.jsonl", made)]


def load_for(config, path: str | os.PathLike) -> list:
    """The transcripts at `path`, checked against the config: its game, or its environment and options;
    the first `transcripts.take` of them when it is set."""
    take = config.transcripts.take
    if not config.is_reward_env:
        records = load_transcripts(path, game=config.game)
        error = TranscriptError
    else:
        records, error = load_text_transcripts(path, env=config.game), TextTranscriptError
        options = envs.make(config.game, **config.env_options).options
        for i, r in enumerate(records, 1):
            if r["options"] != options:
                raise error(
                    f"{path}: record {i} has options {r['options']}, the config's env_options give {options}"
                )
    if take is not None and len(records) < take:
        raise error(f"{path}: transcripts.take is {take} but the file holds {len(records)} episodes")
    return records if take is None else records[:take]


def transcripts_stage(config, run_dir: Path, *, progress: bool = True) -> Path:
    """The imitation data: the user's file if configured (checked), else generated into the run directory
    once per setting (`wanted`)."""

    tc, what = config.transcripts, f"{config.game} episodes" if config.is_reward_env else "games"
    if tc.path is not None:
        n = len(load_for(config, tc.path))
        print(f"transcripts: {n} {what} from {tc.path}")
        return Path(tc.path)
    out, meta_path, want = run_dir / "transcripts.jsonl", run_dir / "transcripts.meta.json", wanted(config)
    if out.exists() and same_json(meta_path, want):
        n = len(load_for(config, out))
        print(f"transcripts: reusing {n} {what} in {out}")
        return out
    atomic_write_text(meta_path, json.dumps(want, indent=2) + "\n")  # first: a kill leaves no stray file
    if config.is_reward_env:
        whose = "expert " if tc.teacher == "expert" else ""
        by = "" if tc.teacher == "expert" else f" by teacher {tc.teacher}"
        print(f"transcripts: {tc.games} {whose}{config.game} episodes{by}")
        env = envs.make(config.game, **config.env_options)
        records = expert_transcripts(env, tc.games, seed=tc.seed, teacher=tc.teacher)
        atomic_write_text(out, "".join(json.dumps(r) + "\n" for r in records))
        return out
    print(f"transcripts: generating {tc.games} {config.game} games with {tc.expert}")
    kw = {"seed": tc.seed, "workers": tc.workers, "opening_plies": tc.opening_plies, "progress": progress}
    print(f"transcripts: {generate(config.game, tc.expert, tc.games, out, **kw)}")
    return out

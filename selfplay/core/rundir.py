"""The run directory: everything one run writes, opened the same way by every command that writes into it.

`opened(config, resume=..., outputs=...)` is how a command starts writing. Before anything is written it
refuses a directory that holds something else (files but no `config.yaml`), a run another process is
writing (an exclusive lock on `RUN/.lock`, let go when the process ends, however it ends), and any output
of an earlier run that this config would overwrite rather than reuse (`Output`). Only then does it clear
what killed writes left behind (temporary files, a checkpoint moved aside) and snapshot the config.

Paths a run directory stores about itself (resume state, checkpoint parents, the opponent pool, arena
player names) are relative to it (`rel`, `resolve`), so a moved or copied run resumes from its own files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import agents
from envs import files
from selfplay.config import Config, ConfigError, dump_config, load_config
from selfplay.core.resume import RL_DIR, SELFPLAY_DIR
from selfplay.io import LOCK, InUseError, atomic_write_text, cannot_write, exclusive

CONFIG = "config.yaml"


class RunDirError(ValueError):
    """A run directory that this command must not write into; the message says why and what to do."""


class RunFileError(agents.CheckpointError):
    """A file of a run directory (a stage's summary, a pointer file) that cannot be read; names the file."""


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in a run directory's file `path`, through the project's one reader
    (`envs.files`); `RunFileError` naming the file when it is missing or holds no JSON object."""
    return files.read_object(path, RunFileError)


@dataclass(frozen=True)
class Output:
    """Something a stage writes into the run directory, and whether what is there now may stay: it was made
    by this same configuration (reused or redone alike), or it is what `--resume` continues."""

    what: str  # e.g. "the imitation checkpoint"
    path: Path
    ok: Callable[[], bool]


Outputs = Callable[[Config, Path, bool], Sequence[Output]]  # (config, run_dir, resume) -> outputs


# --- paths stored in a run directory ---------------------------------------------------------------
def rel(path: str | os.PathLike, run_dir: str | os.PathLike) -> str:
    """`path` relative to `run_dir` when inside it (as the run directory stores it), else absolute."""
    full, home = Path(path).resolve(), Path(run_dir).resolve()
    try:
        return full.relative_to(home).as_posix()
    except ValueError:
        return str(full)


def resolve(stored: str, run_dir: str | os.PathLike) -> Path:
    """A path the run directory stored (`rel`), as a path usable from here."""
    return Path(run_dir) / stored  # an absolute `stored` stays itself


# --- what earlier runs left ------------------------------------------------------------------------
def same_json(path: Path, wanted: Any) -> bool:
    """Whether the JSON file at `path` holds exactly `wanted` (False when there is none; a file that is
    there but unreadable is a `RunFileError` naming it)."""
    if not path.exists():
        return False
    return read_json(path) == wanted


def made_with(ckpt: Path, config_hash: str) -> bool:
    """Whether the checkpoint at `ckpt` was made with this configuration (its meta's `config_hash`)."""
    try:
        return agents.read_meta(ckpt).get("config_hash") == config_hash
    except agents.CheckpointError:
        return False


def made_output(what: str, ckpt: Path, config_hash: str) -> Output:
    """A stage's checkpoint as an output that may stay when this configuration made it."""
    return Output(what, ckpt, lambda: made_with(ckpt, config_hash))


def reuse_or_make(stage: str, ckpt: Path, summary: Path, config_hash: str, make: Callable[[], Path]) -> Path:
    """A finished stage's checkpoint, reused when this configuration made it and its summary was written
    (a killed stage is made again), else `make()`'s."""
    if summary.exists() and made_with(ckpt, config_hash):
        read_json(summary)  # a summary that cannot be read is named now, not when the report reads it
        print(f"{stage}: reusing {ckpt}")
        return ckpt
    return make()


def stage2_outputs(run_dir: Path, state: str, *, what: str, keep: bool) -> list[Output]:
    """A stage-2 run (its resume state and step checkpoints), which may stay when `keep` (for `--resume`,
    or for a command that leaves stage 2 alone and brings the config it ran with); an old pickled resume
    state never stays."""
    hint = f"continue it with --resume {run_dir}"
    return [
        Output(f"{what} ({hint})", run_dir / state, lambda: keep),
        *(
            Output(f"{what}'s {p.parent.name}/{p.name} ({hint})", p, lambda: keep)
            # the verifier's refreshes during RL, and what was labelled for them
            for pattern in ("checkpoints/step_*", "checkpoints/verifier_step_*", "labels/refresh_*")
            for p in sorted(run_dir.glob(pattern))
        ),
        Output(
            "a resume state in the old pickle format, which selfplay never loads (a pickle can run code)",
            run_dir / f"{state}.pt",
            lambda: False,
        ),
    ]


def stage2_kind(config: Config, run_dir: Path) -> tuple[str, str]:
    """(where its resume state lives, what it is called) of the stage-2 run in `run_dir`: the one found
    there, else the one `config` would run."""
    for state, what in ((RL_DIR, "an RL run"), (SELFPLAY_DIR, "a self-play run")):
        if (run_dir / state).exists():
            return state, what
    return (RL_DIR, "an RL run") if config.is_reward_env else (SELFPLAY_DIR, "a self-play run")


def same_config(run_dir: Path, config: Config) -> bool:
    """Whether `run_dir` was last written with this very config (the run directory aside)."""

    try:
        saved = load_config(run_dir / CONFIG)
    except ConfigError:
        return False
    return _comparable(saved) == _comparable(config)


def _comparable(config: Config) -> str:
    return dump_config(config.model_copy(update={"run_dir": "."}))


# --- opening ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def opened(config: Config, *, resume: bool, outputs: Outputs) -> Iterator[Path]:
    """The run directory of `config`, checked, locked, cleaned of partial writes and holding the config
    snapshot; `RunDirError` (nothing written) when the command must not write there."""
    run_dir = Path(config.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run_dir {str(run_dir)!r} is a file, not a directory")
    if why := cannot_write(run_dir):
        raise RunDirError(f"run_dir {why}; nothing was done")
    foreign = run_dir.is_dir() and not (run_dir / CONFIG).exists()
    if foreign and any(p.name != LOCK for p in run_dir.iterdir()):
        raise RunDirError(
            f"run_dir {str(run_dir)!r} holds files but no {CONFIG}: it is no run directory, and "
            "selfplay does not write into it; choose a new or empty directory"
        )
    if resume and not (run_dir / CONFIG).exists():
        raise RunDirError(f"{run_dir}: not a run directory (no {CONFIG} in it)")
    with _lock(run_dir) as sign:
        stale = [o for o in outputs(config, run_dir, resume) if o.path.exists() and not o.ok()]
        if stale:
            raise RunDirError(
                f"{run_dir} already holds "
                + "; ".join(f"{o.what} ({o.path})" for o in stale)
                + ", which this config would overwrite: nothing was written; use another run_dir"
            )
        sign()
        clear_partial_writes(run_dir)
        atomic_write_text(run_dir / CONFIG, dump_config(config))
        yield run_dir


@contextlib.contextmanager
def _lock(run_dir: Path) -> Iterator[Callable[[], None]]:
    try:
        with exclusive(run_dir, "run_dir") as sign:
            yield sign
    except InUseError as e:
        raise RunDirError(str(e)) from None


def clear_partial_writes(run_dir: Path) -> None:
    """What a killed write leaves: temporary files and directories (`.NAME.*.tmp`, never read) and a
    checkpoint moved aside while its successor was renamed in (`.NAME.old`, put back if NAME is gone)."""
    for tmp in sorted(run_dir.rglob(".*.tmp")):
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    for old in sorted(run_dir.rglob(".*.old")):
        new = old.with_name(old.name[1 : -len(".old")])
        if new.exists():
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            os.replace(old, new)

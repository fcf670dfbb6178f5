"""The resume state of a stage-2 run: a directory written atomically after each checkpoint.

    RUN/selfplay/state/   (or RUN/rl/state/)
      state.json             counters, replay buffer, RNG state, paths (relative to the run directory)
      optimizer.safetensors  the optimizer's tensors; its other settings are in state.json

Plain JSON and tensors, never a pickle: a run directory can be shared (Ray needs shared storage), and a
pickle found in one could run any code when loaded. Anything else there is refused with the file named.
"""

from __future__ import annotations

import json
import math
import random
import reprlib
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from safetensors.torch import save_file

import agents
from agents.checkpoint import atomic_dir
from agents.tensorfile import read_tensors
from envs import files

FORMAT = "selfplay.state/1"
STATE, OPTIMIZER = "state.json", "optimizer.safetensors"
SELFPLAY_DIR, RL_DIR = "selfplay/state", "rl/state"  # where in a run directory each stage 2 keeps it


class ResumeError(agents.CheckpointError):
    """A resume state that cannot be read; the message names the file."""


def _optimizer_parts(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's `state_dict()` as named tensors plus a JSON description that refers to them."""
    tensors: dict[str, torch.Tensor] = {}
    entries = []
    for index, per_param in state_dict["state"].items():
        entry = {}
        for key, value in per_param.items():
            if torch.is_tensor(value):
                name = f"{index}.{key}"
                tensors[name] = value.detach().to("cpu").contiguous()
                entry[key] = {"tensor": name}
            else:
                entry[key] = value
        entries.append([index, entry])
    return tensors, {"state": entries, "param_groups": state_dict["param_groups"]}


def _optimizer_state(described: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state = {}
    for index, entry in described["state"]:
        state[int(index)] = {
            k: tensors[v["tensor"]] if isinstance(v, dict) and "tensor" in v else v for k, v in entry.items()
        }
    return {"state": state, "param_groups": described["param_groups"]}


def save(directory: Path, optimizer: dict[str, Any], data: dict[str, Any]) -> None:
    """Write the resume state (`optimizer`: an optimizer's `state_dict()`; `data`: JSON values) as one
    atomic directory: a reader sees the old state or the new one, never a mix."""
    tensors, described = _optimizer_parts(optimizer)
    with atomic_dir(directory) as tmp:
        save_file(tensors, tmp / OPTIMIZER, metadata={"format": FORMAT})
        text = json.dumps({"format": FORMAT, "optimizer": described, **data})
        (tmp / STATE).write_text(text + "\n", encoding="utf-8")


def load(directory: Path) -> dict[str, Any] | None:
    """The resume state in `directory` (None if there is none), its optimizer state under `optimizer`
    (every tensor read back and finite); what the fields hold is checked by `check_fields`."""
    if not directory.exists():
        return None
    path = directory / STATE
    try:
        data = files.read_json(path, ResumeError)
    except FileNotFoundError:
        raise ResumeError(f"{path}: missing (not a complete resume state)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ResumeError(f"{path}: format {got!r}, expected {FORMAT!r}")
    tensors = read_tensors(directory / OPTIMIZER, ResumeError)
    try:
        data["optimizer"] = _optimizer_state(data["optimizer"], tensors)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ResumeError(f"{path}: optimizer: the description does not fit {OPTIMIZER} ({e!r})") from None
    return data


# --- what a resume state must hold -----------------------------------------------------------------
Count = Annotated[int, Field(strict=True, ge=0)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Stored = Annotated[str, Field(strict=True, min_length=1)]  # a path relative to the run directory
Number = Annotated[int, Field(strict=True)] | Annotated[float, Field(allow_inf_nan=False)]  # ints stay ints


class Fields(BaseModel):
    """The fields every stage-2 resume state holds; a stage adds its own (`fields_of`)."""

    model_config = ConfigDict(extra="forbid")

    format: str
    optimizer: dict[str, Any]  # checked against the optimizer by `check_optimizer`
    checkpoint: Stored  # the checkpoint the run continues from: the last of `history`
    history: list[Stored] = Field(min_length=1)  # checkpoints, the start first
    replay: list[list[Any]]  # each row checked by the stage's sample class
    rng: tuple[Annotated[int, Field(strict=True)], list[Annotated[int, Field(strict=True)]], float | None]
    step: Count
    version: Count
    elapsed: Seconds
    runtime: dict[str, Number]  # the runtime's counters


def fields_of(name: str, counts: tuple[str, ...], extra: dict[str, Any]) -> type[Fields]:
    """The fields of one stage's resume state: `Fields`, its two `counts` and its `extra` fields."""
    own = {k: (Count, ...) for k in counts}
    return create_model(f"{name}ResumeState", __base__=Fields, **own, **extra)


def check_fields(data: dict[str, Any], model: type[Fields], where: Path) -> Fields:
    """`data` as `model`; `ResumeError` naming the file and each key at fault."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = [
            f"{'.'.join(map(str, err['loc'])) or 'the file'}: {err['msg']} (got {reprlib.repr(err['input'])})"
            if err["type"] != "extra_forbidden"
            else f"{'.'.join(map(str, err['loc']))}: not a key of this resume state"
            for err in e.errors()
        ]
        raise ResumeError(f"{where}: " + "; ".join(problems)) from None


def inside(stored: str, run_dir: Path, key: str, where: Path) -> Path:
    """The path `stored` under `key`, which must name something inside the run directory (a resume state
    never points at another run's files); `ResumeError` naming the key otherwise."""
    if Path(stored).is_absolute():
        raise ResumeError(
            f"{where}: {key}: {stored!r} is an absolute path; a resume state names its run's own files"
        )
    path = run_dir / stored
    try:
        path.resolve().relative_to(run_dir.resolve())
    except ValueError:
        raise ResumeError(f"{where}: {key}: {stored!r} is outside the run directory {run_dir}") from None
    return path


def check_history(state: dict[str, Any], run_dir: Path, where: Path) -> tuple[Path, list[Path]]:
    """The checkpoint and history a resume state names, checked: each inside the run directory, the
    checkpoint the last of the history, each checkpoint's parent (its meta.json) the one before it, the
    last one's step the state's step. `ResumeError` names the key at fault."""
    checkpoint = inside(state["checkpoint"], run_dir, "checkpoint", where)
    history = [inside(p, run_dir, f"history[{i}]", where) for i, p in enumerate(state["history"])]
    stored = state["history"]
    if checkpoint.resolve() != history[-1].resolve():
        last = stored[-1]
        raise ResumeError(f"{where}: checkpoint: {state['checkpoint']!r}, but its history ends at {last!r}")
    metas = []
    for i, path in enumerate(history):
        try:
            metas.append(agents.read_meta(path))
        except agents.CheckpointError as e:
            raise ResumeError(f"{where}: history[{i}]: {e}") from None
    for i in range(1, len(history)):
        parent = metas[i].get("parent")
        if not isinstance(parent, str) or (run_dir / parent).resolve() != history[i - 1].resolve():
            raise ResumeError(
                f"{where}: history[{i}]: {stored[i]!r} has parent {parent!r} in its meta.json, not "
                f"{stored[i - 1]!r}: the history does not hold together"
            )
    if len(history) > 1 and metas[-1].get("step") != state["step"]:
        step = metas[-1].get("step")
        raise ResumeError(f"{where}: step: {state['step']}, but {state['checkpoint']} is step {step!r}")
    return checkpoint, history


def is_count(x: Any) -> bool:
    """Whether `x` (read from JSON) is an integer >= 0."""
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def finite_array(x: Any, name: str, *, shape: tuple[int, ...] | None = None, ndim: int | None = None):
    """`x` (numbers read from JSON) as a float32 array, which must be finite and of `shape` (or `ndim`
    dimensions); a `ValueError` naming `name` otherwise."""

    try:
        a = np.asarray(x)  # no dtype: strings, None and booleans must not pass as numbers
    except (TypeError, ValueError):  # ragged lists
        a = None
    if a is None or a.dtype.kind not in "iuf" or (a.size == 0 and shape != (0,)):
        raise ValueError(f"{name}: numbers, got {reprlib.repr(x)}")
    a = a.astype(np.float32)
    if (shape is not None and a.shape != shape) or (ndim is not None and a.ndim != ndim):
        raise ValueError(f"{name}: shape {a.shape}, expected {shape or f'{ndim} dimensions'}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: not finite (NaN or inf)")
    return a


def check_rng(saved: Any, where: Path) -> None:
    try:
        set_rng_state(random.Random(), saved)
    except (TypeError, ValueError, OverflowError) as e:
        raise ResumeError(f"{where}: rng: not the state of a random generator ({e})") from None


def check_optimizer(saved: dict[str, Any], opt: torch.optim.Optimizer, where: Path) -> None:
    """`saved` (an optimizer's `state_dict()` as `load` read it) fits `opt`: the same groups and settings
    (finite numbers), a state per parameter whose tensors have that parameter's shape; `ResumeError`
    naming the entry at fault otherwise. Torch itself would take moments of any shape and fail later."""
    fresh = opt.state_dict()
    groups = saved.get("param_groups")
    if not isinstance(groups, list) or len(groups) != len(fresh["param_groups"]):
        raise ResumeError(
            f"{where}: optimizer.param_groups: not the {len(fresh['param_groups'])} groups of this model"
        )
    shapes = {}
    for k, (group, want, live) in enumerate(
        zip(groups, fresh["param_groups"], opt.param_groups, strict=True)
    ):
        at = f"{where}: optimizer.param_groups[{k}]"
        # a setting an older torch did not save is torch's to default; one this torch does not know is not
        if not isinstance(group, dict) or "params" not in group or set(group) - set(want):
            got = sorted(group) if isinstance(group, dict) else group
            raise ResumeError(f"{at}: keys {got!r}, expected {sorted(want)}")
        if group["params"] != want["params"]:
            raise ResumeError(
                f"{at}.params: {reprlib.repr(group['params'])}, expected {reprlib.repr(want['params'])}"
            )
        for key, value in group.items():
            if key != "params" and not _same_kind(value, want[key]):
                raise ResumeError(f"{at}.{key}: {value!r}, expected a value like {want[key]!r}")
        shapes.update({i: tuple(p.shape) for i, p in zip(want["params"], live["params"], strict=True)})
    for index, entry in saved["state"].items():
        if index not in shapes:
            raise ResumeError(f"{where}: optimizer.state: parameter {index} is not one of this model's")
        for key, value in entry.items():
            if torch.is_tensor(value):
                shape = tuple(value.shape)
                if shape not in ((), shapes[index]):
                    at = f"{where}: optimizer.state[{index}].{key}"
                    raise ResumeError(f"{at}: shape {shape}, but the parameter's is {shapes[index]}")
                if key == "exp_avg_sq" and (value < 0).any():
                    raise ResumeError(f"{where}: optimizer.state[{index}].{key}: negative second moments")
            elif not _same_kind(value, 0.0):
                raise ResumeError(f"{where}: optimizer.state[{index}].{key}: {reprlib.repr(value)}")


def _same_kind(value: Any, like: Any) -> bool:
    """Whether a JSON-read optimizer setting `value` is of the kind of `like` (a fresh optimizer's): the
    same JSON type (tuples read back as lists), numbers finite."""
    if isinstance(like, bool) or like is None:  # flags, and those torch leaves unset (None) until asked
        return value is None or isinstance(value, bool)
    if isinstance(like, int | float):
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if isinstance(like, list | tuple):
        return isinstance(value, list) and len(value) == len(like) and all(map(_same_kind, value, like))
    return type(value) is type(like)


def rng_state(rng) -> list:
    """A `random.Random`'s state as JSON."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_rng_state(rng, saved: list) -> None:
    version, internal, gauss = saved
    rng.setstate((version, tuple(internal), gauss))

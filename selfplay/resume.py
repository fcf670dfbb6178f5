"""The resume state of a stage-2 run: a directory written atomically after each checkpoint.

    RUN/selfplay/state/   (or RUN/rl/state/)
      state.json             counters, replay buffer, RNG state, paths (relative to the run directory)
      optimizer.safetensors  the optimizer's tensors; its other settings are in state.json

Plain JSON and tensors, never a pickle: a run directory can be shared (Ray needs shared storage), and a
pickle found in one could run any code when loaded. Anything else there is refused with the file named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import agents
from agents.checkpoint import atomic_dir

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


def load(directory: Path, keys: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The resume state in `directory` (None if there is none), its optimizer state under `optimizer`;
    every one of `keys` must be there."""
    if not directory.exists():
        return None
    path = directory / STATE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResumeError(f"{path}: missing (not a complete resume state)") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ResumeError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ResumeError(f"{path}: format {got!r}, expected {FORMAT!r}")
    missing = [k for k in ("optimizer", *keys) if k not in data]
    if missing:
        raise ResumeError(f"{path}: missing {', '.join(missing)}")
    try:
        tensors = load_file(directory / OPTIMIZER)
    except (SafetensorError, OSError, ValueError) as e:
        raise ResumeError(f"{directory / OPTIMIZER}: unreadable or truncated ({e})") from None
    try:
        data["optimizer"] = _optimizer_state(data["optimizer"], tensors)
    except (KeyError, TypeError, ValueError) as e:
        raise ResumeError(f"{path}: the optimizer description does not fit {OPTIMIZER} ({e!r})") from None
    return data


def rng_state(rng) -> list:
    """A `random.Random`'s state as JSON."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_rng_state(rng, saved: list) -> None:
    version, internal, gauss = saved
    rng.setstate((version, tuple(internal), gauss))

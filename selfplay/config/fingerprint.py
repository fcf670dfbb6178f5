"""What a stage's output depends on: a short hash of config sections (`fingerprint`), which leaves out
keys added after outputs were made while they hold their default (`ADDED_LATER`) and counts removed keys
at the one value they could still have had (`REMOVED`), so those outputs stay reusable."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from typing import Any

from pydantic import BaseModel

# Keys added after run directories already existed: left out of `fingerprint` while at these values, so
# the stages those directories hold stay reusable (their checkpoints record the older fingerprint).
ADDED_LATER = {
    "model": {
        "backbone": "native",
        "path": None,
        "dtype": "float32",
        "lora": None,
        "copy_base": False,
        "chat_template": False,
        "face": "text",
        "stem_channels": 64,
        "stem_layers": 4,
        "stem_patch": 2,
        "prefix": "causal",
        "scoring": "sequence",
        "board_features": [],
        "n_layer": None,
        "n_head": None,
        "n_embd": None,
    },
    "imitation": {"symmetries": False, "epochs": None},
    "transcripts": {"teacher": "expert", "corrections": [], "take": None},
    "rl": {
        "think_budget": None,
        "verifier_refresh_every": 0,
        "verifier_refresh_tasks": 1000,
        "verifier_refresh_steps": 300,
        "scale_rewards": "group",
    },
    "verifier": {"labels": "env"},
    "judge": {"kind": "env", "path": None, "noise": 0.0, "seed": 0},
    "corrections": {"share": 0.5},
}

# Keys removed from the config (no shipped config set them, no measured result used another value, no
# open issue named them): each now a fixed value at its last default, where its section declares it. A
# stored config.yaml may still hold them at these values (`load_config` drops them, any other value is an
# error), and `fingerprint` counts them at these values, so run directories written before still resume.
REMOVED: dict[str, dict[str, Any]] = {
    "model": {"copy_base": False, "merges": 200, "dropout": 0.0},
    "imitation": {"min_lr_ratio": 0.1, "weight_decay": 0.01, "grad_clip": 1.0, "value_weight": 0.5},
    "corrections": {"opening_plies": 2, "lr": None},
    "selfplay": {
        "grad_clip": 1.0,
        "leaves_per_tree": 1,
        "c_puct": 1.25,
        "dirichlet_alpha": 0.5,
        "dirichlet_frac": 0.25,
        "temperature": 1.0,
        "warmup_steps": 20,
        "weight_decay": 0.01,
        "value_weight": 1.0,
    },
    "rl": {
        "grad_clip": 1.0,
        "min_lr_ratio": 1.0,
        "temperature": 1.0,
        "top_k": None,
        "warmup_steps": 10,
        "weight_decay": 0.0,
        "entropy_weight": 0.0,
        "skip_uniform_groups": True,
        "publish_every": 2,
    },
    "verifier": {"size": None, "val_fraction": 0.1},
    "judge": {"path": None},
}


def section_dump(section: BaseModel, name: str, exclude: Collection[str] = ()) -> dict[str, Any]:
    """`section.model_dump(exclude=...)` with the keys removed from section `name` at their last value,
    as a stage's fingerprint hashed them."""
    removed = {k: v for k, v in REMOVED.get(name, {}).items() if k not in exclude}
    return {**section.model_dump(exclude=set(exclude)), **removed}


def fingerprint(config: BaseModel, sections: set[str], **extra: Any) -> str:
    """A short hash of what a stage's output depends on: the config's `sections` (and `extra` values);
    a stage is reused when its checkpoint records the same fingerprint."""
    relevant = config.model_dump(include=sections)
    for section, removed in REMOVED.items():
        if isinstance(relevant.get(section), dict):
            relevant[section].update(removed)
    if "transcripts" in relevant:
        relevant["transcripts"].pop("workers", None)  # how fast, not what
    for section, added in ADDED_LATER.items():
        for key, value in added.items():
            if key in relevant.get(section, {}) and relevant[section][key] == value:
                del relevant[section][key]
    relevant.update(extra)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]

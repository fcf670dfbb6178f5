"""What a stage's output depends on: a short hash of config sections (`fingerprint`), which leaves out
keys added after outputs were made while they hold their default (`ADDED_LATER`), so those outputs stay
reusable."""

from __future__ import annotations

import hashlib
import json
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


def fingerprint(config: BaseModel, sections: set[str], **extra: Any) -> str:
    """A short hash of what a stage's output depends on: the config's `sections` (and `extra` values);
    a stage is reused when its checkpoint records the same fingerprint."""
    relevant = config.model_dump(include=sections)
    if "transcripts" in relevant:
        relevant["transcripts"].pop("workers", None)  # how fast, not what
    for section, added in ADDED_LATER.items():
        for key, value in added.items():
            if key in relevant.get(section, {}) and relevant[section][key] == value:
                del relevant[section][key]
    relevant.update(extra)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]

"""Checkpoints: a directory with `model.safetensors`, `config.json` (model + tokenizer) and `meta.json`.

Written atomically (a temporary directory, fsync, rename), so a killed run never leaves a half
checkpoint under the final name. Loading checks every file and every tensor, and names the file at fault.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from agents.model import GPT, ModelConfig
from agents.policy import Policy
from agents.tokenizer import CharTokenizer

FORMAT = "selfplay.checkpoint/1"
WEIGHTS, CONFIG, META = "model.safetensors", "config.json", "meta.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated or does not fit its own configuration."""


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_model_dir(
    path: str | os.PathLike,
    model: GPT,
    tokenizer: CharTokenizer,
    *,
    fmt: str,
    meta: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a model directory atomically (replacing an older one there): weights, config, meta.
    Every kind of checkpoint (policy, verifier) is this layout with its own `fmt` and `extra` config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a checkpoint should be readable like any directory
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        state.pop("lm_head.weight", None)  # tied to tok_emb.weight
        save_file(state, tmp / WEIGHTS, metadata={"format": fmt})
        config = {
            "format": fmt,
            **(extra or {}),
            "model": model.cfg.to_dict(),
            "tokenizer": tokenizer.to_dict(),
        }
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / META).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        for f in (WEIGHTS, CONFIG, META):
            _fsync(tmp / f)
        _fsync(tmp)
        old = None
        if path.exists():  # move the old one aside first: rename cannot replace a non-empty directory
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def save(policy: Policy, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write `policy` to the directory `path` atomically (replacing an older one there)."""
    return write_model_dir(
        path, policy.model, policy.tokenizer, fmt=FORMAT, meta={**policy.meta, **(meta or {})}
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (not a complete checkpoint directory)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of the checkpoint at `path` (step, stage, game, parent, config hash, ...)."""
    return _read_json(Path(path) / META)


def read_model_dir(
    path: str | os.PathLike, check: Callable[[Path, dict[str, Any]], None]
) -> tuple[GPT, CharTokenizer, dict[str, Any]]:
    """Model, tokenizer and meta of the directory at `path`, after `check(path, config)` has vetted its
    format; raises `CheckpointError` naming the file for anything amiss, never loading partial weights."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no checkpoint directory there")
    config = _read_json(path / CONFIG)
    check(path, config)
    try:
        cfg = ModelConfig(**config["model"])
        tokenizer = CharTokenizer.from_dict(config["tokenizer"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path / CONFIG}: bad model or tokenizer configuration ({e})") from None
    meta = _read_json(path / META)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing (not a complete checkpoint directory)")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: unreadable or truncated ({e})") from None
    if cfg.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(
            f"{path / CONFIG}: vocab_size {cfg.vocab_size} does not match "
            f"the tokenizer's {tokenizer.vocab_size}"
        )
    model = GPT(cfg)
    expected = {k: v.shape for k, v in model.state_dict().items() if k != "lm_head.weight"}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k]))
    if missing or extra or wrong:
        raise CheckpointError(
            f"{weights}: does not match {path / CONFIG}: "
            f"missing {missing[:3]}, unexpected {extra[:3]}, wrong shape {wrong[:3]}"
        )
    model.load_state_dict(state, strict=False)  # only the tied lm_head.weight is absent
    return model, tokenizer, meta


def _check_policy_format(path: Path, config: dict[str, Any]) -> None:
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{path / CONFIG}: format {config.get('format')!r}, expected {FORMAT!r}")


def load(path: str | os.PathLike, *, device: str = "auto") -> Policy:
    """The policy stored at `path`; raises `CheckpointError` naming the file for anything amiss."""
    model, tokenizer, meta = read_model_dir(path, _check_policy_format)
    return Policy(model, tokenizer, device=device, meta=meta)


def new_policy(
    cfg: ModelConfig,
    *,
    tokenizer: CharTokenizer | None = None,
    device: str = "auto",
    seed: int | None = None,
    meta=None,
) -> Policy:
    """A freshly initialised policy (seeded for reproducibility); characters unless `tokenizer` is given."""
    tokenizer = tokenizer or CharTokenizer()
    if cfg.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"model vocab_size {cfg.vocab_size} != tokenizer vocabulary {tokenizer.vocab_size}")
    if seed is not None:
        torch.manual_seed(seed)
    return Policy(GPT(cfg), tokenizer, device=device, meta=meta)

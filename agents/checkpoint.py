"""Checkpoints: a directory with `model.safetensors`, `config.json` (model + tokenizer) and `meta.json`.

Written atomically (a temporary directory, fsync, rename), so a killed run never leaves a half
checkpoint under the final name. Loading checks every file and every tensor, and names the file at fault.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from agents.model import GPT, ModelConfig, patch_grid
from agents.policy import Policy
from agents.tensorfile import read_tensors
from agents.tokenizer import CharTokenizer
from envs.files import read_object

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


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Fill the yielded temporary directory; on success it is fsynced and renamed to `path` (an older one
    there is moved aside to `.NAME.old` first, then removed), so a reader sees the old directory or the
    new one, never a mix. On an exception the temporary directory is removed and `path` left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the result should read like any directory
    try:
        yield tmp
        for f in tmp.rglob("*"):
            _fsync(f)
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
    Every kind of checkpoint (policy, verifier) is this layout with its own `fmt` and `extra` config; a
    Hugging Face model (`agents.hf`) writes its own weights' layout under the same config and meta."""
    if getattr(model.cfg, "backbone", "native") == "hf":
        import agents.hf as hf

        with atomic_dir(path) as tmp:
            config = {"format": fmt, **(extra or {}), **hf.write_dir(tmp, model, tokenizer, Path(path))}
            (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
            (tmp / META).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        return Path(path)
    with atomic_dir(path) as tmp:
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
    return Path(path)


def save(policy: Policy, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write `policy` to the directory `path` atomically (replacing an older one there)."""
    return write_model_dir(
        path, policy.model, policy.tokenizer, fmt=FORMAT, meta={**policy.meta, **(meta or {})}
    )


def _read_json(path: Path) -> dict[str, Any]:
    return read_object(path, CheckpointError, missing="missing (not a complete checkpoint directory)")


def backbone(path: str | os.PathLike) -> str:
    """`native` or `hf`: which kind of network the checkpoint at `path` holds (from its config alone)."""
    config = _read_json(Path(path) / CONFIG)
    _refuse_plain_hf(Path(path), config)
    kind = config.get("backbone", "native")
    if kind not in ("native", "hf"):
        raise CheckpointError(f"{Path(path) / CONFIG}: backbone {kind!r}, expected native or hf")
    return kind


def read_model_config(path: str | os.PathLike) -> ModelConfig:
    """The model configuration of the checkpoint at `path` (its face, shape), without loading weights
    (an `agents.hf.HFConfig` for a Hugging Face backbone)."""
    config = Path(path) / CONFIG
    try:
        if backbone(path) == "hf":
            from agents.hf import HFConfig

            return HFConfig.from_dict(_read_json(config).get("model"))
        return ModelConfig.from_dict(_read_json(config).get("model"))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{config}: {e}") from None


def _refuse_plain_hf(path: Path, config: dict[str, Any]) -> None:
    """A model directory as `save_pretrained` writes it is not a selfplay checkpoint: say what it is."""
    if "format" not in config and "model_type" in config:
        raise CheckpointError(
            f"{path}: a Hugging Face model directory ({config['model_type']}), not a selfplay checkpoint; "
            "train from it with model.backbone: hf and model.path: " + str(path)
        )


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of the checkpoint at `path` (step, stage, game, parent, config hash, ...)."""
    return _read_json(Path(path) / META)


def _check_header(weights: Path, config: Path, cfg: ModelConfig) -> None:
    """Refuse a config that disagrees with the tensors' shapes, read from the safetensors header alone,
    before building anything: a corrupt `n_layer: 1000000` would otherwise allocate a huge model first."""
    try:
        with safe_open(weights, "pt") as f:  # the header only: no tensor data is read
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: unreadable or truncated ({e})") from None
    emb, pos = shapes.get("tok_emb.weight", ()), shapes.get("pos_emb.weight")
    if len(emb) != 2:
        raise CheckpointError(f"{weights}: no tok_emb.weight matrix (shape {emb}), not a model of this kind")
    layers = [int(m[1]) for k in shapes if (m := re.match(r"blocks\.(\d+)\.", k))]
    implied = {  # what the shapes say of the config; n_head (and a rotary block_size) leave no trace
        "vocab_size": emb[0],
        "n_embd": emb[1],
        "n_layer": max(layers, default=-1) + 1,
        "positions": "rope" if pos is None else "learned",
        **({"block_size": pos[0]} if pos else {}),
        "planes": 0,
    }
    stem = shapes.get("stem.inp.weight")
    if stem is not None and len(stem) == 4:  # a board stem: (channels, planes, 3, 3) and its embeddings
        convs = [int(m[1]) for k in shapes if (m := re.match(r"stem\.convs\.(\d+)\.", k))]
        implied.update(
            planes=stem[1],
            stem_channels=stem[0],
            stem_layers=max(convs, default=-1) + 2,
            stem_patch=shapes.get("stem.patch.weight", (0, 0, 1))[2],
        )
    wrong = [
        f"model.{k} is {getattr(cfg, k)!r} but the tensors say {v!r}"
        for k, v in implied.items()
        if getattr(cfg, k) != v
    ]
    if wrong:
        raise CheckpointError(f"{weights}: does not match {config}: {'; '.join(wrong)}")
    if cfg.planes:  # the stem's embeddings are sized by its patch grid
        grid = (shapes.get("stem.row_emb.weight", (0,))[0], shapes.get("stem.col_emb.weight", (0,))[0])
        if patch_grid(cfg) != grid:
            raise CheckpointError(
                f"{weights}: does not match {config}: a {cfg.board_height} x {cfg.board_width} board in "
                f"patches of {cfg.stem_patch} is {patch_grid(cfg)} tokens a side but the tensors say {grid}"
            )


def read_model_dir(
    path: str | os.PathLike, check: Callable[[Path, dict[str, Any]], None]
) -> tuple[GPT, CharTokenizer, dict[str, Any]]:
    """Model, tokenizer and meta of the directory at `path`, after `check(path, config)` has vetted its
    format; raises `CheckpointError` naming the file for anything amiss, never loading partial weights.
    The config is checked against the weights' header before the model is built, and every tensor must
    be finite."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no checkpoint directory there")
    config = _read_json(path / CONFIG)
    _refuse_plain_hf(path, config)
    check(path, config)
    if backbone(path) == "hf":
        try:
            import agents.hf as hf
        except ImportError as e:
            raise CheckpointError(
                f"{path}: a Hugging Face (backbone: hf) checkpoint; reading it needs "
                f"pip install -e '.[hf]' ({e})"
            ) from None
        meta = _read_json(path / META)
        try:
            model, tokenizer = hf.read_dir(path, config)
        except hf.HFError as e:
            raise CheckpointError(str(e)) from None
        return model, tokenizer, meta
    try:
        cfg = ModelConfig.from_dict(config.get("model"))
        tokenizer = CharTokenizer.from_dict(config.get("tokenizer"))
    except ValueError as e:  # both name the key at fault
        raise CheckpointError(f"{path / CONFIG}: {e}") from None
    if cfg.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(
            f"{path / CONFIG}: model.vocab_size {cfg.vocab_size} does not match "
            f"the tokenizer's {tokenizer.vocab_size}"
        )
    meta = _read_json(path / META)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing (not a complete checkpoint directory)")
    _check_header(weights, path / CONFIG, cfg)
    state = read_tensors(weights, CheckpointError)
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

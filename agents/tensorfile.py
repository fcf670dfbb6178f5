"""Reading a safetensors file of a checkpoint: every tensor, all finite, or an error naming the file."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file


def read_tensors(file: Path, error: type[ValueError] = ValueError) -> dict[str, torch.Tensor]:
    """The tensors of `file`; raises `error` naming the file if it is missing, unreadable or truncated, or
    holds NaN or inf (overwritten bytes can decode as either, and would play on silently)."""
    if not file.is_file():
        raise error(f"{file}: missing (not a complete checkpoint directory)")
    try:
        state = load_file(file)
    except (SafetensorError, OSError, ValueError) as e:
        raise error(f"{file}: unreadable or truncated ({e})") from None
    bad = sorted(k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise error(f"{file}: non-finite values (NaN or inf) in {', '.join(bad[:5])}{more}")
    return state

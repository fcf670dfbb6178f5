"""A Hugging Face causal LM behind the policy's model interface (the `hf` extra).

`Policy` reads a model through four things: `model(idx, positions=, mask=, cache=)` giving the last
hidden states and a KV cache, `model.lm_head(hidden)`, `model.value(hidden)` and `model.cfg` (how moves
are scored, the context length); and a tokenizer with `encode`, `decode` and the `bos_id`, `eos_id`,
`pad_id` ids. `HFModel` and `HFTokenizer` give those over `transformers`' Auto classes, so scoring legal
moves in one packed tree-attention pass, search and generation with the KV cache work unchanged. The
value head is ours (a linear read of the last hidden state, as OpenRLHF's critic heads are). Weights
come from safetensors only and no remote code is ever run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class HFConfig:
    """What the policy asks of a model's config, for an HF backbone: moves scored as text sequences,
    read causally, no board stem."""

    block_size: int  # positions the model reads
    scoring: str = "sequence"
    prefix: str = "causal"
    planes: int = 0
    features: tuple[str, ...] = ()


class HFTokenizer:
    """An HF tokenizer as the policy uses one: plain text to ids without added special tokens; the
    model's own bos, eos and pad (pad falls back to eos, as for GPT-2 and Llama checkpoints)."""

    def __init__(self, tokenizer) -> None:
        self.hf = tokenizer
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError(f"{tokenizer.name_or_path}: the tokenizer has no end-of-sequence token")
        self.eos_id = eos
        self.bos_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        self.vocab_size = len(tokenizer)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.hf.decode(ids)


class HFModel(nn.Module):
    """An `AutoModelForCausalLM` with our value head, called as the native `GPT` is."""

    def __init__(self, lm) -> None:
        super().__init__()
        self.lm = lm
        cfg = lm.config
        context = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 2048
        self.cfg = HFConfig(block_size=int(context))
        self.value_head = nn.Linear(cfg.get_text_config().hidden_size, 1)

    def forward(self, idx, positions=None, mask=None, planes=None, cache=None):
        """`mask`: bool (B, 1, T, T_past + T), True where a query may attend (the packed tree mask, or a
        padding mask over the cache); `positions`: explicit position ids (candidates share theirs)."""
        if planes is not None:
            raise ValueError("a Hugging Face backbone reads text only: no board stem")
        if mask is not None:  # as an additive float mask: what every attention implementation accepts
            mask = torch.zeros(mask.shape, dtype=self.lm.dtype, device=idx.device).masked_fill(
                ~mask, torch.finfo(self.lm.dtype).min
            )
        out = self.lm.base_model(
            input_ids=idx, position_ids=positions, attention_mask=mask, cache=cache, use_cache=True
        )
        return out.last_hidden_state, out["cache"]

    def lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm.get_output_embeddings()(hidden)

    def value(self, hidden: torch.Tensor) -> torch.Tensor:
        """Expected return in [-1, 1] for the player to move."""
        return torch.tanh(self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1))


def load_pretrained(path: str | os.PathLike, *, dtype: str = "float32"):
    """The model and tokenizer at `path` (a local directory, or a hub name where a hub is reachable):
    safetensors weights only, never remote code. A fresh value head (zero, so values start at 0)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(path)
    if local.is_dir() and not list(local.glob("*.safetensors")):
        pickled = [p.name for p in local.glob("*.bin")] + [p.name for p in local.glob("*.pt")]
        what = f"only pickled weights ({', '.join(pickled)})" if pickled else "no safetensors weights"
        raise ValueError(f"{local}: {what}; selfplay loads safetensors only (nothing is unpickled)")
    lm = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=getattr(torch, dtype), use_safetensors=True, trust_remote_code=False
    )
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    model = HFModel(lm)
    nn.init.zeros_(model.value_head.weight)
    nn.init.zeros_(model.value_head.bias)
    return model, HFTokenizer(tokenizer)


def policy_from_pretrained(path: str | os.PathLike, *, device: str = "auto", dtype: str = "float32"):
    """An `agents.Policy` over the HF model at `path`."""
    from agents.policy import Policy

    model, tokenizer = load_pretrained(path, dtype=dtype)
    return Policy(model, tokenizer, device=device, meta={"backbone": "hf", "base": str(path)})

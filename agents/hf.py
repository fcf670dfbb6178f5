"""A Hugging Face causal LM behind the policy's model interface (the `hf` extra).

`Policy` reads a model through four things: `model(idx, positions=, mask=, cache=)` giving the last
hidden states and a KV cache, `model.lm_head(hidden)`, `model.value(hidden)` and `model.cfg` (how moves
are scored, the context length); and a tokenizer with `encode`, `decode` and the `bos_id`, `eos_id`,
`pad_id` ids. `HFModel` and `HFTokenizer` give those over `transformers`' Auto classes, so scoring legal
moves in one packed tree-attention pass, search and generation with the KV cache work unchanged. The
value head is ours (a linear read of the last hidden state, as OpenRLHF's critic heads are). With LoRA
(`peft`'s adapters injected in place) only the adapters and the value head train, and only they are
saved and published. Weights come from safetensors only and no remote code is ever run.

A checkpoint of this backbone (`write_dir` / `read_dir`, called through `agents.checkpoint`) is the
selfplay `config.json` (with `"backbone": "hf"`) and `meta.json`, `value_head.safetensors`, and either
`lm/` (the whole model and its tokenizer, as `save_pretrained` writes them: `from_pretrained` reads it) or
`adapter/` (the LoRA adapter as `peft` writes it, and the tokenizer), which names its base model and the
hash of the base's weights; loading refuses a missing or different base.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from agents.tensorfile import read_tensors

BACKBONE = "hf"
VALUE_HEAD = "value_head.safetensors"
DTYPES = ("float32", "bfloat16", "float16")


class HFError(ValueError):
    """An HF model or checkpoint that cannot be used; the message names the file or directory."""


@dataclass(frozen=True)
class HFConfig:
    """What the policy asks of a model's config, for an HF backbone: how moves are scored, how the prompt
    is read, the context length; no board stem."""

    block_size: int  # positions the model reads
    vocab_size: int = 0
    scoring: str = "sequence"
    prefix: str = "causal"
    dtype: str = "float32"
    chat_template: bool = False  # prompts framed as a user's turn by the tokenizer's chat template
    planes: int = 0
    features: tuple[str, ...] = ()
    backbone: str = BACKBONE

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("planes", "features", "backbone")}

    @classmethod
    def from_dict(cls, data: Any) -> HFConfig:
        known = {"block_size", "vocab_size", "scoring", "prefix", "dtype", "chat_template"}
        if not isinstance(data, dict) or not isinstance(data.get("block_size"), int):
            raise ValueError("model: expected an object with an integer block_size")
        if unknown := sorted(set(data) - known):
            raise ValueError(f"model: unknown key(s) {', '.join(unknown)} for an hf backbone")
        cfg = cls(**data)
        if cfg.scoring not in ("sequence", "first_token") or cfg.prefix not in ("causal", "bidirectional"):
            raise ValueError(f"model: scoring {cfg.scoring!r} / prefix {cfg.prefix!r} not known")
        if cfg.dtype not in DTYPES:
            raise ValueError(f"model.dtype: {cfg.dtype!r}, expected one of {', '.join(DTYPES)}")
        if not isinstance(cfg.chat_template, bool):
            raise ValueError(f"model.chat_template: {cfg.chat_template!r}, expected true or false")
        return cfg


@dataclass(frozen=True)
class Lora:
    """LoRA adapters (`peft`): rank, scale `alpha / r`, dropout, and the module names to adapt (None:
    `peft`'s default for the architecture, e.g. q_proj and v_proj for Llama, c_attn for GPT-2)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] | None = None

    def peft_config(self, lm):
        from peft import LoraConfig

        targets = list(self.target_modules) if self.target_modules else None
        # GPT-2 keeps its projections as Conv1D (weights transposed): peft must be told
        conv1d = getattr(lm.config, "model_type", "") == "gpt2"
        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=targets,
            fan_in_fan_out=conv1d,
        )


class HFTokenizer:
    """An HF tokenizer as the policy uses one: plain text to ids without added special tokens; the
    model's own bos, eos and pad (pad falls back to eos, as for GPT-2 and Llama checkpoints)."""

    def __init__(self, tokenizer) -> None:
        self.hf = tokenizer
        eos = tokenizer.eos_token_id
        if eos is None:
            raise HFError(f"{tokenizer.name_or_path}: the tokenizer has no end-of-sequence token")
        self.eos_id = eos
        self.bos_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        self.vocab_size = len(tokenizer)
        self.vocab = list(tokenizer.get_vocab())  # token strings: bounds the characters one token covers
        self.chars = ()  # byte-level: every string encodes, no character is ever dropped
        self._chat: dict[str, list[int]] = {}

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False)

    def chat_prompt(self, prompt: str) -> list[int]:
        """`prompt` as a user's turn of the tokenizer's chat template, up to where the assistant's answer
        starts (its system prompt, if the template adds one, included): what an instruct model expects."""
        ids = self._chat.get(prompt)
        if ids is None:
            if not self.hf.chat_template:
                raise HFError(f"{self.hf.name_or_path}: the tokenizer has no chat template")
            turn = [{"role": "user", "content": prompt}]
            out = self.hf.apply_chat_template(turn, add_generation_prompt=True, tokenize=True)
            ids = self._chat[prompt] = list(out["input_ids"] if hasattr(out, "keys") else out)
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.hf.decode(ids)

    def to_dict(self) -> dict[str, Any]:
        """What tells two tokenizers apart (compared, never loaded from)."""
        text = self.hf.backend_tokenizer.to_str() if hasattr(self.hf, "backend_tokenizer") else ""
        return {
            "kind": "hf",
            "vocab_size": self.vocab_size,
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
        }


@dataclass
class Base:
    """Where the pretrained weights came from: `path` as given (a directory or a hub name) and the
    sha256 of its weights (LoRA checkpoints hold only the adapter, so the base must be found again)."""

    path: str
    sha256: str


class HFModel(nn.Module):
    """An `AutoModelForCausalLM` (LoRA adapters optional) with our value head, called as `GPT` is."""

    def __init__(self, lm, cfg: HFConfig, *, base: Base | None = None, lora: Lora | None = None) -> None:
        super().__init__()
        self.lm = lm
        self.cfg = cfg
        self.base = base
        self.lora = lora
        # float32 whatever the model's dtype: what trains keeps full precision (mixed precision over a
        # bfloat16 model, as peft's adapters below)
        self.value_head = nn.Linear(lm.config.get_text_config().hidden_size, 1, dtype=torch.float32)
        if lora is not None:
            self.attach_lora(lora, base)

    def attach_lora(self, lora: Lora, base: Base | None) -> None:
        """Inject LoRA adapters (B = 0: the model is unchanged) and freeze all but them and the value
        head; `base` names the weights they sit on."""
        from peft import inject_adapter_in_model

        if base is None:
            raise ValueError("LoRA adapters need their base named (Base(path, weights_hash))")
        inject_adapter_in_model(lora.peft_config(self.lm), self.lm)  # in place
        for name, p in self.lm.named_parameters():
            p.requires_grad_("lora_" in name)
            if "lora_" in name:  # float32 adapters over a bfloat16 base: AdamW's small steps are kept
                p.data = p.data.float()
        self.lora, self.base = lora, base

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

    def new_cache(self, capacity: int):
        """An empty KV cache for generation: `transformers`' dynamic one (measured against its static
        one in `bench/generation.py`)."""
        from transformers import DynamicCache

        return DynamicCache(config=self.lm.config)

    def lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm.get_output_embeddings()(hidden)

    def value(self, hidden: torch.Tensor) -> torch.Tensor:
        """Expected return in [-1, 1] for the player to move."""
        return torch.tanh(self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1))

    def completion_logits(self, hidden, items):
        from agents.model import GPT

        return GPT.completion_logits(self, hidden, items)  # it reads `lm_head` alone

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- what training changes: published to actors, saved in checkpoints ---------------------------
    def trained_state(self) -> dict[str, torch.Tensor]:
        """With LoRA the adapters and the value head (the base never changes); else everything."""
        if self.lora is None:
            return self.state_dict()
        return {k: v for k, v in self.state_dict().items() if "lora_" in k or k.startswith("value_head.")}

    def load_trained(self, state: dict[str, torch.Tensor]) -> None:
        if self.lora is None:
            self.load_state_dict(state)
            return
        result = self.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if "lora_" in k or k.startswith("value_head.")]
        if result.unexpected_keys or missing:
            raise ValueError(
                f"not this model's adapters: unexpected {result.unexpected_keys[:3]}, missing {missing[:3]}"
            )


def weights_hash(lm) -> str:
    """sha256 of a model's weights (names and bytes, LoRA adapters left out): what identifies a base."""
    h = hashlib.sha256()
    for name, t in sorted(lm.state_dict().items()):
        if "lora_" in name:
            continue
        h.update(name.replace(".base_layer", "").encode())  # a layer's name once adapters wrap it
        h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _quiet():
    with contextlib.suppress(ImportError):
        from transformers.utils import logging

        logging.disable_progress_bar()


def refuse_pickles(local: Path) -> None:
    if local.is_dir() and not list(local.glob("*.safetensors")):
        pickled = [p.name for p in local.glob("*.bin")] + [p.name for p in local.glob("*.pt")]
        what = f"only pickled weights ({', '.join(pickled)})" if pickled else "no safetensors weights"
        raise HFError(f"{local}: {what}; selfplay loads safetensors only (nothing is unpickled)")


def declares_chat_template(directory: Path) -> bool:
    """Whether the model directory's tokenizer has a chat template (read from its files alone)."""
    if (directory / "chat_template.jinja").is_file():
        return True
    try:
        return bool(json.loads((directory / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def from_pretrained(path: str | os.PathLike, dtype: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet()
    refuse_pickles(Path(path))
    if dtype not in DTYPES:
        raise HFError(f"model.dtype: {dtype!r}, expected one of {', '.join(DTYPES)}")
    try:
        lm = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=getattr(torch, dtype), use_safetensors=True, trust_remote_code=False
        )
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise HFError(f"{path}: not a Hugging Face causal LM that loads here ({e})") from None
    _check_finite(lm, Path(path))
    return lm, HFTokenizer(tokenizer)


def _check_finite(module: nn.Module, where: Path) -> None:
    bad = sorted(
        n for n, p in module.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()
    )
    if bad:
        raise HFError(f"{where}: non-finite values (NaN or inf) in {', '.join(bad[:5])}")


def load_pretrained(
    path: str | os.PathLike,
    *,
    dtype: str = "float32",
    lora: Lora | None = None,
    scoring: str = "sequence",
    prefix: str = "causal",
    block_size: int | None = None,
    chat_template: bool = False,
):
    """The model and tokenizer at `path` (a local directory, or a hub name where a hub is reachable):
    safetensors weights only, never remote code. A fresh value head (zero, so values start at 0);
    `block_size` caps the context the policy uses (default: the model's); `chat_template` frames every
    prompt as a user's turn of the tokenizer's chat template."""
    lm, tokenizer = from_pretrained(path, dtype)
    if chat_template and not tokenizer.hf.chat_template:
        raise HFError(f"{path}: model.chat_template is set, but the tokenizer has no chat template")
    c = lm.config.get_text_config()
    context = getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None) or 2048
    cfg = HFConfig(
        block_size=min(int(context), block_size or int(context)),
        vocab_size=tokenizer.vocab_size,
        scoring=scoring,
        prefix=prefix,
        dtype=dtype,
        chat_template=chat_template,
    )
    base = Base(str(path), weights_hash(lm)) if lora is not None else None
    model = HFModel(lm, cfg, base=base, lora=lora)
    nn.init.zeros_(model.value_head.weight)
    nn.init.zeros_(model.value_head.bias)
    return model, tokenizer


def policy_from_pretrained(path: str | os.PathLike, *, device: str = "auto", meta=None, **kwargs):
    """An `agents.Policy` over the HF model at `path` (keywords: those of `load_pretrained`)."""
    from agents.policy import Policy

    model, tokenizer = load_pretrained(path, **kwargs)
    return Policy(
        model, tokenizer, device=device, meta={"backbone": BACKBONE, "base": str(path), **(meta or {})}
    )


# --- checkpoints --------------------------------------------------------------------------------------
def write_dir(tmp: Path, model: HFModel, tokenizer: HFTokenizer, final: Path) -> dict[str, Any]:
    """Fill the checkpoint's temporary directory `tmp` (to be renamed to `final`); the entries the
    checkpoint's `config.json` adds for this backbone."""
    from peft import get_peft_model_state_dict

    save_file(
        {k: v.detach().to("cpu").contiguous() for k, v in model.value_head.state_dict().items()},
        tmp / VALUE_HEAD,
    )
    extra: dict[str, Any] = {"backbone": BACKBONE, "model": model.cfg.to_dict(), "lora": None, "base": None}
    if model.lora is None:
        model.lm.save_pretrained(tmp / "lm", safe_serialization=True)
        tokenizer.hf.save_pretrained(tmp / "lm")
        return extra
    out = tmp / "adapter"
    out.mkdir()
    state = {k: v.detach().to("cpu").contiguous() for k, v in get_peft_model_state_dict(model.lm).items()}
    save_file(state, out / "adapter_model.safetensors", metadata={"format": "pt"})
    targets = sorted(_targets(model.lm))
    pc = model.lora.peft_config(model.lm).to_dict()
    pc.update(base_model_name_or_path=model.base.path, target_modules=targets)
    (out / "adapter_config.json").write_text(json.dumps(pc, indent=2, default=list) + "\n")
    tokenizer.hf.save_pretrained(out)
    base = Path(model.base.path)
    relative = os.path.relpath(base.resolve(), final.resolve()) if base.is_dir() else None
    path = str(base.resolve()) if base.is_dir() else model.base.path
    extra.update(
        lora=asdict(model.lora) | {"target_modules": targets},
        base={"path": path, "relative": relative, "sha256": model.base.sha256},
    )
    return extra


def _targets(lm) -> set[str]:
    return {n.split(".lora_A.")[0].rsplit(".", 1)[-1] for n, _ in lm.named_parameters() if ".lora_A." in n}


def read_dir(path: Path, config: dict[str, Any]) -> tuple[HFModel, HFTokenizer]:
    """The model and tokenizer of the checkpoint at `path` (its `config.json` already read); raises
    `HFError` naming the file for anything amiss."""
    where = path / "config.json"
    try:
        cfg = HFConfig.from_dict(config.get("model"))
    except (TypeError, ValueError) as e:
        raise HFError(f"{where}: {e}") from None
    lora_cfg, base_cfg = config.get("lora"), config.get("base")
    if lora_cfg is None:
        lm_dir = path / "lm"
        if not lm_dir.is_dir():
            raise HFError(f"{lm_dir}: missing (not a complete checkpoint directory)")
        lm, tokenizer = from_pretrained(lm_dir, cfg.dtype)
        model = HFModel(lm, cfg)
    else:
        if not isinstance(lora_cfg, dict) or not isinstance(base_cfg, dict):
            raise HFError(f"{where}: a LoRA checkpoint needs 'lora' and 'base' objects")
        try:
            lora = Lora(**{**lora_cfg, "target_modules": tuple(lora_cfg.get("target_modules") or ())})
        except TypeError as e:
            raise HFError(f"{where}: lora: {e}") from None
        lm, tokenizer = from_pretrained(_find_base(path, base_cfg), cfg.dtype)
        digest = weights_hash(lm)
        if digest != base_cfg.get("sha256"):
            raise HFError(
                f"{path}: its base model {base_cfg.get('path')} has different weights now (sha256 "
                f"{digest[:12]}, the adapter was trained on {str(base_cfg.get('sha256'))[:12]}); "
                "restore that base"
            )
        model = HFModel(lm, cfg, base=Base(str(base_cfg["path"]), digest), lora=lora)
        weights = path / "adapter" / "adapter_model.safetensors"
        state = read_tensors(weights, HFError)
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model.lm, state)
        if result.unexpected_keys:
            raise HFError(f"{weights}: does not fit {where}: unexpected {result.unexpected_keys[:3]}")
        with contextlib.suppress(OSError, ValueError):  # the adapter's own copy, if it is intact
            from transformers import AutoTokenizer

            tokenizer = HFTokenizer(AutoTokenizer.from_pretrained(str(path / "adapter")))
    head = read_tensors(path / VALUE_HEAD, HFError)
    want = {k: tuple(v.shape) for k, v in model.value_head.state_dict().items()}
    if {k: tuple(v.shape) for k, v in head.items()} != want:
        raise HFError(f"{path / VALUE_HEAD}: expected tensors {want}")
    model.value_head.load_state_dict({k: v.to(model.value_head.weight.dtype) for k, v in head.items()})
    if cfg.vocab_size and cfg.vocab_size != tokenizer.vocab_size:
        raise HFError(
            f"{where}: model.vocab_size {cfg.vocab_size} but the tokenizer has {tokenizer.vocab_size}"
        )
    return model, tokenizer


def _find_base(path: Path, base: dict[str, Any]) -> str:
    """The base a LoRA checkpoint names: beside it as it was (a copy in its run directory), at its
    absolute path, or a hub name."""
    relative, given = base.get("relative"), base.get("path")
    if relative and (path / relative).is_dir():
        return str((path / relative).resolve())
    if not isinstance(given, str) or not given:
        raise HFError(f"{path / 'config.json'}: base.path missing")
    if Path(given).is_absolute() and not Path(given).is_dir():
        raise HFError(
            f"{path}: its base model {given} is not there; the adapter alone cannot be used "
            "(restore the base at that path)"
        )
    return given

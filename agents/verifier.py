"""The learned verifier (reward model): a transformer with a scalar head scoring (prompt, completion).

`<bos> prompt completion <eos>` goes through the same `GPT` the policy uses (same encoding, so a verifier
can start from a policy's weights: `Verifier.from_policy`, the RLHF practice of starting the reward model
from the SFT model). The logit r(prompt, completion) is the value head's output before its tanh, read at
the final `<eos>`; `score` is its sigmoid, the estimated probability that the completion is right.
Training (pointwise on environment scores, pairwise on comparisons) lives in `selfplay.verifier`.

>>> import agents
>>> verifier = agents.load_verifier("runs/arith/verifier")  # doctest: +SKIP
>>> verifier.score(["2+3="], ["5"])  # doctest: +SKIP
array([0.98])

Anything is scored without raising, since completions come from a sampling policy: a non-string
completion is scored as its `str` (None as the empty string), characters outside the vocabulary are
dropped, and a sequence longer than the context is cut to fit: the completion is truncated from the
right (its end is lost), but keeps at least half the context; a prompt that leaves it less loses its start
instead. The `<eos>` the logit is read at is always kept.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents import checkpoint
from agents.checkpoint import CONFIG, CheckpointError
from agents.model import GPT, ModelConfig
from agents.policy import Policy, resolve_device
from agents.tokenizer import CharTokenizer, TokenizerError

FORMAT = "selfplay.verifier/1"  # a policy loader refuses it (its format differs), and vice versa
KIND = "verifier"


class Verifier:
    """A `GPT` plus its tokenizer, scoring completions of prompts; the value head is the logit head."""

    def __init__(
        self, model: GPT, tokenizer: CharTokenizer, *, device: str | torch.device = "auto", meta=None
    ):
        if model.cfg.vocab_size != tokenizer.vocab_size:
            raise ValueError(
                f"model vocab_size {model.cfg.vocab_size} != tokenizer vocabulary {tokenizer.vocab_size}"
            )
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.meta = dict(meta or {})
        self._known = frozenset(tokenizer.chars)
        # no token covers more characters than the longest vocabulary entry: longer text cannot fit anyway
        self._max_chars = model.cfg.block_size * max(len(t) for t in tokenizer.vocab)

    @classmethod
    def from_policy(cls, policy: Policy, *, seed: int | None = None, meta=None) -> Verifier:
        """A verifier starting from a copy of `policy`'s weights, with a fresh head (the policy's value
        head predicts game outcomes, not correctness)."""
        model = copy.deepcopy(policy.model)
        if seed is not None:
            torch.manual_seed(seed)
        GPT._init(model.value_head)
        parent = {k: policy.meta[k] for k in ("game", "stage", "step") if k in policy.meta}
        return cls(model, policy.tokenizer, device=policy.device, meta={"init": parent, **(meta or {})})

    # --- encoding -------------------------------------------------------------------------------
    def _tokens(self, text: Any, *, keep_end: bool, strict: bool) -> list[int]:
        text = "" if text is None else text if isinstance(text, str) else str(text)
        if len(text) > self._max_chars:
            text = text[-self._max_chars :] if keep_end else text[: self._max_chars]
        try:
            return self.tokenizer.encode(text)
        except TokenizerError:
            if strict:
                raise
            return self.tokenizer.encode("".join(ch for ch in text if ch in self._known))

    def encode(self, prompt: Any, completion: Any, *, strict: bool = False) -> list[int]:
        """`<bos> prompt completion <eos>` as token ids, cut to the context (see the module docstring).

        strict: raise `TokenizerError` for a character outside the vocabulary instead of dropping it.
        """
        p = self._tokens(prompt, keep_end=True, strict=strict)
        c = self._tokens(completion, keep_end=False, strict=strict)
        room = self.model.cfg.block_size - 2  # <bos> and <eos>
        c = c[: max(room - len(p), room // 2)]
        p = p[max(0, len(p) - (room - len(c))) :]
        return [self.tokenizer.bos_id, *p, *c, self.tokenizer.eos_id]

    def autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # --- scoring ----------------------------------------------------------------------------------
    def forward_ids(self, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
        """Differentiable logits (B,) of encoded sequences (from `encode`), read at each one's last token."""
        if not seqs:
            return torch.zeros(0, device=self.device)
        B, T = len(seqs), max(len(s) for s in seqs)
        x = np.full((B, T), self.tokenizer.pad_id, dtype=np.int64)
        for i, s in enumerate(seqs):
            x[i, : len(s)] = s
        idx = torch.as_tensor(x, device=self.device)  # (B, T), right-padded
        last = torch.as_tensor([len(s) - 1 for s in seqs], device=self.device)  # (B,)
        with self.autocast():
            hidden, _ = self.model(idx)  # (B, T, C); causal, so padding after a row's end is unseen
            return self.model.value_head(hidden[torch.arange(B, device=self.device), last]).float()[:, 0]

    def logits(self, prompts: Sequence[Any], completions: Sequence[Any]) -> torch.Tensor:
        """Differentiable logits r(prompt, completion), shape (B,)."""
        return self.forward_ids([self.encode(p, c) for p, c in zip(prompts, completions, strict=True)])

    @torch.no_grad()
    def score(
        self, prompts: Sequence[Any], completions: Sequence[Any], *, batch_size: int = 256
    ) -> np.ndarray:
        """Probability in [0, 1] that each completion is right: sigmoid of its logit, shape (B,).
        One forward pass per `batch_size` pairs; never raises on a bad completion."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        seqs = [self.encode(p, c) for p, c in zip(prompts, completions, strict=True)]
        out = [
            torch.sigmoid(self.forward_ids(seqs[i : i + batch_size])).cpu().numpy()
            for i in range(0, len(seqs), batch_size)
        ]
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def new_verifier(
    cfg: ModelConfig,
    *,
    tokenizer: CharTokenizer | None = None,
    device: str = "auto",
    seed: int | None = None,
    meta=None,
) -> Verifier:
    """A freshly initialised verifier (seeded for reproducibility); characters unless `tokenizer` is given."""
    tokenizer = tokenizer or CharTokenizer()
    if seed is not None:
        torch.manual_seed(seed)
    return Verifier(GPT(cfg), tokenizer, device=device, meta=meta)


# --- checkpoints: the layout of agents.checkpoint, with its own format and "kind" ------------------
def save_verifier(verifier: Verifier, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write `verifier` to the directory `path` atomically (replacing an older one there)."""
    return checkpoint.write_model_dir(
        path,
        verifier.model,
        verifier.tokenizer,
        fmt=FORMAT,
        meta={**verifier.meta, **(meta or {})},
        extra={"kind": KIND},
    )


def _check_verifier_format(path: Path, config: dict[str, Any]) -> None:
    if config.get("format") == checkpoint.FORMAT:
        raise CheckpointError(
            f"{path}: a policy checkpoint, not a verifier (load it with agents.load; "
            "Verifier.from_policy starts a verifier from it)"
        )
    if config.get("format") != FORMAT or config.get("kind") != KIND:
        raise CheckpointError(
            f"{path / CONFIG}: format {config.get('format')!r}, kind {config.get('kind')!r}; "
            f"expected {FORMAT!r}, {KIND!r}"
        )


def load_verifier(path: str | os.PathLike, *, device: str = "auto") -> Verifier:
    """The verifier stored at `path`; raises `CheckpointError` naming the file for anything amiss,
    including a policy checkpoint given in its place."""
    model, tokenizer, meta = checkpoint.read_model_dir(path, _check_verifier_format)
    return Verifier(model, tokenizer, device=device, meta=meta)

"""The learned verifier (reward model): a transformer with a scalar head scoring (prompt, completion).

`<bos> prompt completion <eos>` goes through the same `GPT` the policy uses (same encoding, so a verifier
can start from a policy's weights: `Verifier.from_policy`, the RLHF practice of starting the reward model
from the SFT model). The logit r(prompt, completion) is the value head's output before its tanh, read at
the final `<eos>`; `score` is its sigmoid, the estimated probability that the completion is right.
Training (pointwise on environment scores, pairwise on comparisons) lives in `selfplay.text.verifier`.

A verifier made with `likelihood=` adds to its logit a learned weight times its own language model's
log-likelihood of the completion (every completion token and `<eos>`, after the prompt). A small network
can tell what the right answer is at the position that predicts it long before the head at `<eos>` learns
to compare it with what was written; the likelihood term hands that knowledge to the logit directly.
Train such a verifier with `lm_weight > 0` (see `selfplay.text.verifier.train`) so that its language model
stays one of right answers.

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
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import agents.checkpoint as checkpoint
from agents.checkpoint import CONFIG, CheckpointError
from agents.model import GPT, ModelConfig
from agents.policy import Policy, resolve_device
from agents.tokenizer import CharTokenizer, TokenizerError

Encoded = tuple[list[int], int]  # `<bos> prompt completion <eos>` ids, and where the completion starts
FORMAT = "selfplay.verifier/1"  # a policy loader refuses it (its format differs), and vice versa
KIND = "verifier"


class Verifier:
    """A `GPT` plus its tokenizer, scoring completions of prompts; the value head is the logit head."""

    def __init__(
        self,
        model: GPT,
        tokenizer: CharTokenizer,
        *,
        device: str | torch.device = "auto",
        meta=None,
        likelihood: float | None = None,
    ):
        """likelihood: the starting weight of the completion's log-likelihood in the logit (a parameter,
        trained with the network); None leaves the logit to the head alone."""
        if model.cfg.vocab_size != tokenizer.vocab_size:
            raise ValueError(
                f"model vocab_size {model.cfg.vocab_size} != tokenizer vocabulary {tokenizer.vocab_size}"
            )
        if likelihood is not None and not math.isfinite(likelihood):
            raise ValueError(f"likelihood weight must be a finite number, got {likelihood!r}")
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.likelihood_weight = (
            None
            if likelihood is None
            else torch.nn.Parameter(torch.tensor(float(likelihood), device=self.device))
        )
        self.tokenizer = tokenizer
        self.meta = dict(meta or {})
        self._known = frozenset(tokenizer.chars)
        # no token covers more characters than the longest vocabulary entry: longer text cannot fit anyway
        self._max_chars = model.cfg.block_size * max(len(t) for t in tokenizer.vocab)

    @classmethod
    def from_policy(
        cls, policy: Policy, *, seed: int | None = None, meta=None, likelihood: float | None = None
    ) -> Verifier:
        """A verifier starting from a copy of `policy`'s weights, with a fresh head (the policy's value
        head predicts game outcomes, not correctness)."""
        model = copy.deepcopy(policy.model)
        if seed is not None:
            torch.manual_seed(seed)
        GPT._init(model.value_head)
        parent = {k: policy.meta[k] for k in ("game", "stage", "step") if k in policy.meta}
        meta = {"init": parent, **(meta or {})}
        return cls(model, policy.tokenizer, device=policy.device, meta=meta, likelihood=likelihood)

    def parameters(self) -> list[torch.nn.Parameter]:
        """Everything training updates: the network's and the likelihood weight, when there is one."""
        extra = [] if self.likelihood_weight is None else [self.likelihood_weight]
        return [*self.model.parameters(), *extra]

    def state(self) -> dict[str, torch.Tensor]:
        """A copy of every trained tensor (for keeping the best weights), restored by `load_state`."""
        out = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if self.likelihood_weight is not None:
            out["likelihood_weight"] = self.likelihood_weight.detach().clone()
        return out

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        if self.likelihood_weight is not None:
            with torch.no_grad():
                self.likelihood_weight.copy_(state.pop("likelihood_weight"))
        self.model.load_state_dict(state)

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
        return self.encode_parts(prompt, completion, strict=strict)[0]

    def encode_parts(self, prompt: Any, completion: Any, *, strict: bool = False) -> tuple[list[int], int]:
        """`encode`'s ids and the index of the completion's first token in them."""
        p = self._tokens(prompt, keep_end=True, strict=strict)
        c = self._tokens(completion, keep_end=False, strict=strict)
        room = self.model.cfg.block_size - 2  # <bos> and <eos>
        c = c[: max(room - len(p), room // 2)]
        p = p[max(0, len(p) - (room - len(c))) :]
        return [self.tokenizer.bos_id, *p, *c, self.tokenizer.eos_id], 1 + len(p)

    def autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # --- scoring ----------------------------------------------------------------------------------
    def forward(self, items: Sequence[Encoded]) -> torch.Tensor:
        """Differentiable logits (B,) of encoded sequences (`encode_parts`)."""
        if not items:
            return torch.zeros(0, device=self.device)
        return self.head(self.hidden([ids for ids, _ in items]), items)

    def hidden(self, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
        """Final hidden states (B, T, C) of encoded sequences, right-padded (causal: padding is unseen)."""
        B, T = len(seqs), max(len(s) for s in seqs)
        x = np.full((B, T), self.tokenizer.pad_id, dtype=np.int64)
        for i, s in enumerate(seqs):
            x[i, : len(s)] = s
        with self.autocast():
            return self.model(torch.as_tensor(x, device=self.device))[0]

    def head(self, hidden: torch.Tensor, items: Sequence[Encoded]) -> torch.Tensor:
        """The logits (B,) from `hidden` (of `items`): the head at each sequence's last token, plus the
        weighted log-likelihood of its completion when the verifier has one."""
        last = torch.as_tensor([len(ids) - 1 for ids, _ in items], device=self.device)  # (B,)
        rows = torch.arange(len(items), device=self.device)
        head = self.model.value_head
        with self.autocast():  # the head may be float32 over a bfloat16 model (an HF model's is)
            r = head(hidden[rows, last].to(head.weight.dtype)).float()[:, 0]
        if self.likelihood_weight is None:
            return r
        return r + self.likelihood_weight * self.completion_logprob(hidden, items)

    def completion_logprob(self, hidden: torch.Tensor, items: Sequence[Encoded]) -> torch.Tensor:
        """Log-likelihood (B,) of each completion (its tokens and `<eos>`) after its prompt, from `hidden`."""
        with self.autocast():
            logits, targets, rows = self.model.completion_logits(hidden, items)
        logp = torch.log_softmax(logits.float(), -1).gather(1, targets[:, None])[:, 0]
        return torch.zeros(len(items), device=self.device).index_add(0, rows, logp)

    def logits(self, prompts: Sequence[Any], completions: Sequence[Any]) -> torch.Tensor:
        """Differentiable logits r(prompt, completion), shape (B,)."""
        return self.forward([self.encode_parts(p, c) for p, c in zip(prompts, completions, strict=True)])

    @torch.no_grad()
    def score(
        self, prompts: Sequence[Any], completions: Sequence[Any], *, batch_size: int = 256
    ) -> np.ndarray:
        """Probability in [0, 1] that each completion is right: sigmoid of its logit, shape (B,).
        One forward pass per `batch_size` pairs; never raises on a bad completion."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        items = [self.encode_parts(p, c) for p, c in zip(prompts, completions, strict=True)]
        out = [
            torch.sigmoid(self.forward(items[i : i + batch_size])).cpu().numpy()
            for i in range(0, len(items), batch_size)
        ]
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def new_verifier(cfg: ModelConfig, *, likelihood: float | None = None, **kwargs) -> Verifier:
    """A freshly initialised verifier: the network and tokenizer `new_policy` makes (same keywords:
    tokenizer, device, seed, meta), judging with its scalar head."""
    policy = checkpoint.new_policy(cfg, **kwargs)
    return Verifier(
        policy.model, policy.tokenizer, device=policy.device, meta=policy.meta, likelihood=likelihood
    )


# --- checkpoints: the layout of agents.checkpoint, with its own format and "kind" ------------------
def save_verifier(verifier: Verifier, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write `verifier` to the directory `path` atomically (replacing an older one there)."""
    return checkpoint.write_model_dir(
        path,
        verifier.model,
        verifier.tokenizer,
        fmt=FORMAT,
        meta={**verifier.meta, **(meta or {})},
        extra={
            "kind": KIND,
            "likelihood_weight": None
            if verifier.likelihood_weight is None
            else float(verifier.likelihood_weight.detach()),
        },
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
    config: dict[str, Any] = {}

    def check(where: Path, c: dict[str, Any]) -> None:
        _check_verifier_format(where, c)
        w = c.get("likelihood_weight")
        if w is not None and (isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w)):
            raise CheckpointError(f"{where / CONFIG}: likelihood_weight must be a number or null, got {w!r}")
        config.update(c)

    model, tokenizer, meta = checkpoint.read_model_dir(path, check)
    return Verifier(model, tokenizer, device=device, meta=meta, likelihood=config.get("likelihood_weight"))

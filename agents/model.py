"""A small decoder-only transformer with an LM head and a value head (nanoGPT-shaped).

Pre-norm blocks, causal attention through `scaled_dot_product_attention`, and positions either learned
(an embedding per position, as in GPT-2) or rotary (RoPE, as in Llama: queries and keys rotated by their
position, so attention sees offsets between tokens, the same at every position). Three ways in: plain
causal (training), an explicit attention mask with explicit positions (scoring many continuations of one
prompt in one pass), and a KV cache (generation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

PRESETS: dict[str, dict[str, int]] = {
    "nano": {"n_layer": 2, "n_head": 2, "n_embd": 64},
    "micro": {"n_layer": 3, "n_head": 4, "n_embd": 96},
    "small": {"n_layer": 4, "n_head": 4, "n_embd": 128},
    "medium": {"n_layer": 6, "n_head": 6, "n_embd": 192},
}


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    block_size: int = 256  # context length: the largest position id + 1
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    positions: str = "learned"  # or "rope"
    # The board encoder (0 planes: none): a convolutional stem over the position's planes (C, H, W) whose
    # H x W cell features, with row and column embeddings, are prefix tokens the LM reads before the text.
    planes: int = 0
    board_height: int = 0
    board_width: int = 0
    stem_channels: int = 96
    stem_layers: int = 6
    stem_patch: int = 1  # cells per token along each side: 2 reads a 6 x 7 board as 3 x 4 tokens
    features: tuple[str, ...] = ()  # the game's board features after the stones (`Game.board_features`)
    prefix: str = "causal"  # "bidirectional": the prompt's tokens see each other, the move stays causal
    scoring: str = "sequence"  # "first_token": a move scored by its first token, read after the prompt

    def __post_init__(self) -> None:
        # Types checked strictly: a config read from JSON (2.5, 1e6, true) must fail here, not in GPT().
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"model.{name} must be an integer >= 1, got {v!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"model.n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        d = self.dropout
        if isinstance(d, bool) or not isinstance(d, int | float) or not 0.0 <= d < 1.0:
            raise ValueError(f"model.dropout must be a number in [0, 1), got {d!r}")
        if not isinstance(self.positions, str) or self.positions not in ("learned", "rope"):
            raise ValueError(f"model.positions must be 'learned' or 'rope', got {self.positions!r}")
        if self.positions == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"rope needs an even head size, got {self.n_embd // self.n_head}")
        for name in ("planes", "board_height", "board_width", "stem_channels", "stem_layers", "stem_patch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"model.{name} must be an integer >= 0, got {v!r}")
        if self.planes and not (
            self.board_height
            and self.board_width
            and self.stem_channels
            and self.stem_layers
            and self.stem_patch
        ):
            raise ValueError(
                "model.planes > 0 needs board_height, board_width, stem_channels, stem_layers and "
                "stem_patch >= 1"
            )
        if not isinstance(self.features, tuple) or not all(isinstance(f, str) for f in self.features):
            raise ValueError(f"model.features must be a list of feature names, got {self.features!r}")
        if self.features and not self.planes:
            raise ValueError(f"model.features {list(self.features)} need a board stem (model.planes > 0)")
        for name, allowed in (
            ("prefix", ("causal", "bidirectional")),
            ("scoring", ("sequence", "first_token")),
        ):
            v = getattr(self, name)
            if not isinstance(v, str) or v not in allowed:
                raise ValueError(f"model.{name} must be one of {', '.join(allowed)}, got {v!r}")

    @classmethod
    def preset(cls, name: str, **overrides) -> ModelConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown model size {name!r}; presets: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ModelConfig:
        """The config `to_dict` described; `ValueError` naming any unknown or missing key. Keys with a
        default may be absent (older checkpoints predate `positions`)."""
        if not isinstance(data, dict):
            raise ValueError(f"model must be an object of model settings, got {data!r:.40}")
        known = {f.name: f for f in fields(cls)}
        wrong = [f"model.{k}: unknown key" for k in sorted(set(data) - set(known))]
        wrong += [f"model.{k}: missing" for k, f in known.items() if f.default is MISSING and k not in data]
        if wrong:
            raise ValueError("; ".join(wrong))
        if isinstance(data.get("features"), list):  # JSON has no tuples
            data = {**data, "features": tuple(data["features"])}
        return cls(**data)


Rotary = tuple[torch.Tensor, torch.Tensor]  # cos, sin (B, 1, T, hs / 2)


class KVCache:
    """Keys and values of the tokens read so far, per layer (B, n_head, T, head_size), written in place.

    With a `capacity` the buffers are allocated once for the whole generation and each step writes its
    token into them (no copy of the past per step); without one they grow to fit exactly (what a
    scoring pass leaves). `reorder_cache(rows)` keeps the given rows only (finished rows leave the batch),
    named as `transformers`' caches name it so that a policy treats both alike."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.length = 0  # tokens written, in every layer

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new keys and values (B, nh, T, hs) of `layer` after the past; all of them, as views."""
        n, T = self.length, k.shape[2]
        if layer == len(self.keys):  # the first pass through this layer
            if self.capacity is None or self.capacity < n + T:
                self.keys.append(k)
                self.values.append(v)
                return k, v
            shape = (*k.shape[:2], self.capacity, k.shape[3])
            self.keys.append(k.new_zeros(shape))
            self.values.append(v.new_zeros(shape))
        K, V = self.keys[layer], self.values[layer]
        if n + T > K.shape[2]:  # no room: grow to fit (a cache made without a capacity)
            K = self.keys[layer] = torch.cat((K[:, :, :n], k), 2)
            V = self.values[layer] = torch.cat((V[:, :, :n], v), 2)
            return K, V
        K[:, :, n : n + T] = k
        V[:, :, n : n + T] = v
        return K[:, :, : n + T], V[:, :, : n + T]

    def advance(self, tokens: int) -> None:
        self.length += tokens

    def get_seq_length(self) -> int:
        return self.length

    def reorder_cache(self, rows: torch.Tensor) -> None:
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]


def rotary(positions: torch.Tensor, head_size: int, base: float = 10000.0) -> Rotary:
    """cos and sin of each position's angles, for `rotate`."""
    inv_freq = base ** (
        -torch.arange(0, head_size, 2, device=positions.device, dtype=torch.float32) / head_size
    )
    angles = positions.float()[:, None, :, None] * inv_freq  # (B, 1, T, hs / 2)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, rope: Rotary) -> torch.Tensor:
    """Queries or keys (B, nh, T, hs) rotated by their positions (the half-split form of RoPE)."""
    cos, sin = rope
    a, b = x.float().chunk(2, dim=-1)
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1).to(x.dtype)


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache,
        layer: int,
        rope: Rotary | None = None,
    ) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (
            t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v)
        )  # (B, nh, T, hs)
        if rope is not None:  # the cache keeps keys rotated
            q, k = rotate(q, rope), rotate(k, rope)
        first = cache.length == 0
        k, v = cache.update(layer, k, v)
        p = self.dropout if self.training else 0.0
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=first, dropout_p=p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd),
            nn.GELU(),
            nn.Linear(4 * cfg.n_embd, cfg.n_embd),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x, mask, cache, layer, rope=None):
        x = x + self.attn(self.ln1(x), mask, cache, layer, rope)
        return x + self.mlp(self.ln2(x))


def patch_grid(cfg: ModelConfig) -> tuple[int, int]:
    """Rows and columns of the board stem's tokens: the board in patches of `stem_patch` cells a side."""
    return -(-cfg.board_height // cfg.stem_patch), -(-cfg.board_width // cfg.stem_patch)


class BoardStem(nn.Module):
    """Planes (B, C, H, W) -> tokens (B, rows * cols, n_embd): a small residual convnet over the cells,
    then one token per cell or, with `stem_patch` p > 1, per p x p patch (a strided convolution, as a
    vision transformer's patches: fewer tokens for the LM to read), projected, plus row and column
    embeddings (their 2-D positions)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        k, p = cfg.stem_channels, cfg.stem_patch
        self.inp = nn.Conv2d(cfg.planes, k, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(k, k, 3, padding=1) for _ in range(cfg.stem_layers - 1))
        self.patch = nn.Conv2d(k, k, p, stride=p) if p > 1 else None
        self.out = nn.Linear(k, cfg.n_embd)
        rows, cols = patch_grid(cfg)
        self.row_emb = nn.Embedding(rows, cfg.n_embd)
        self.col_emb = nn.Embedding(cols, cfg.n_embd)

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        # channels last: the CPU's convolutions (oneDNN) run 1.7x faster in it; the same values
        h = F.gelu(self.inp(planes.contiguous(memory_format=torch.channels_last)))  # (B, K, H, W)
        for conv in self.convs:
            h = h + F.gelu(conv(h))
        if self.patch is not None:  # pad to whole patches (bottom, right), then one vector per patch
            p = self.patch.stride[0]
            h = F.gelu(self.patch(F.pad(h, (0, -h.shape[3] % p, 0, -h.shape[2] % p))))
        H, W = h.shape[2:]
        cells = self.out(h.permute(0, 2, 3, 1).flatten(1, 2))  # (B, H * W, C)
        rows = torch.arange(H, device=h.device).repeat_interleave(W)
        cols = torch.arange(W, device=h.device).repeat(H)
        return cells + self.row_emb(rows) + self.col_emb(cols)


class GPT(nn.Module):
    """Token + position embeddings, `n_layer` blocks, final norm; `lm_head` and `value_head` on top; with
    `cfg.planes`, a board stem whose cell tokens come before the text (as an image encoder's tokens come
    before a vision-language model's text)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.positions == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # tied, as in GPT-2
        self.value_head = nn.Linear(cfg.n_embd, 1)
        self.stem = BoardStem(cfg) if cfg.planes else None
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):  # scaled residual init
                nn.init.normal_(p, mean=0.0, std=0.02 / (2 * cfg.n_layer) ** 0.5)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_cache(self, capacity: int) -> KVCache:
        """An empty KV cache for sequences of up to `capacity` tokens (generation)."""
        return KVCache(capacity)

    def non_embedding_parameters(self) -> int:
        """Parameters but the token and position embeddings (the head is tied to the former) and the value
        head: N as Kaplan et al. (2020) count it, about 12 n_layer n_embd^2."""
        skip = {
            id(p)
            for m in (self.tok_emb, self.pos_emb, self.value_head)
            if m is not None
            for p in m.parameters()
        }
        return sum(p.numel() for p in self.parameters() if id(p) not in skip)

    def forward(
        self,
        idx: torch.Tensor,
        *,
        positions: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        planes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """Final hidden states (B, T, C) of the text and the updated KV cache.

        idx: (B, T) token ids. positions: (B, T) position ids (default 0..T-1, after the cache).
        cache: the keys and values of the tokens before (`KVCache`, written in place); default none.
        mask: boolean (B, 1, T, T_past + T), True = may attend; default causal.
        planes: (B, C, H, W), the board for the stem: its H * W cell tokens see each other and every text
        token sees them all; only the text's hidden states are returned.
        """
        B, T = idx.shape
        if planes is not None:
            if cache is not None:
                raise ValueError("a board prefix cannot be used with a KV cache")
            return self._forward_board(idx, positions, mask, planes)
        cache = KVCache() if cache is None else cache
        if positions is None:
            start = cache.length
            positions = torch.arange(start, start + T, device=idx.device).expand(B, T)
        if int(positions.max()) >= self.cfg.block_size:
            need, have = int(positions.max()) + 1, self.cfg.block_size
            raise ValueError(
                f"sequence needs a context of {need} tokens but the model's block_size is {have}"
            )
        x = self.tok_emb(idx)  # (B, T, C)
        rope = None
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)
        else:
            rope = rotary(positions, self.cfg.n_embd // self.cfg.n_head)
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, cache, i, rope)
        cache.advance(T)
        return self.ln_f(x), cache

    def _forward_board(self, idx, positions, mask, planes) -> tuple[torch.Tensor, KVCache]:
        B, T = idx.shape
        if positions is None:
            positions = torch.arange(T, device=idx.device).expand(B, T)
        if mask is None:
            mask = torch.ones((T, T), dtype=torch.bool, device=idx.device).tril().expand(B, 1, T, T)
        cells = self.stem(planes.to(self.stem.inp.weight.dtype))  # (B, P, C)
        P = cells.shape[1]
        x = self.tok_emb(idx)  # (B, T, C)
        rope = None
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)
        else:  # the cells sit at rotary position 0: their own row and column embeddings place them
            zeros = torch.zeros((B, P), dtype=positions.dtype, device=idx.device)
            rope = rotary(torch.cat((zeros, positions), 1), self.cfg.n_embd // self.cfg.n_head)
        x = self.drop(torch.cat((cells, x), 1))  # (B, P + T, C)
        top = torch.cat((mask.new_ones((B, 1, P, P)), mask.new_zeros((B, 1, P, T))), 3)
        bottom = torch.cat((mask.new_ones((B, 1, T, P)), mask), 3)
        full = torch.cat((top, bottom), 2)  # (B, 1, P + T, P + T)
        cache = KVCache()
        for i, block in enumerate(self.blocks):
            x = block(x, full, cache, i, rope)
        cache.advance(P + T)
        return self.ln_f(x[:, P:]), cache

    def completion_logits(
        self, hidden: torch.Tensor, items: Sequence[tuple[Sequence[int], int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced LM logits at every completion token: `items` are (ids, start), the ids whose
        hidden states `hidden` (B, T, C) holds and the index of the completion's first token. Returns the
        logits predicting each completion token (N, V), its id (N,) and its row (N,)."""
        rows, cols, targets = [], [], []
        for b, (ids, start) in enumerate(items):  # token j is predicted at position j - 1
            rows += [b] * (len(ids) - start)
            cols += range(start - 1, len(ids) - 1)
            targets += ids[start:]
        dev = hidden.device
        rows_t = torch.tensor(rows, device=dev)
        logits = self.lm_head(hidden[rows_t, torch.tensor(cols, device=dev)])
        return logits, torch.tensor(targets, device=dev), rows_t

    def value(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scalar in [-1, 1] per hidden state: (..., C) -> (...)."""
        return torch.tanh(self.value_head(hidden).squeeze(-1))

    def trained_state(self) -> dict[str, torch.Tensor]:
        """What training changes (all of it, here): what the learner publishes to its actors."""
        return self.state_dict()

    def load_trained(self, state: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(state)


def adamw(params, *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """The optimizer of every stage: AdamW (betas 0.9, 0.95) with weight decay on matrices only (not on
    biases, norms or scalars); frozen parameters (a LoRA base) are left out."""
    params = [p for p in params if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def lr_at(
    step: int,
    *,
    lr: float,
    warmup_steps: int,
    steps: int | None = None,
    min_lr_ratio: float = 1.0,
    progress: float | None = None,
) -> float:
    """The learning rate of every stage at `step`: linear warm-up to `lr` over `warmup_steps`, then cosine
    decay to `lr * min_lr_ratio` at `steps`, or along `progress` (the share of a budget used, for budgets
    in minutes); constant after warm-up when neither is given."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if progress is None:
        if steps is None:
            return lr
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    progress = min(1.0, max(0.0, progress))
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

"""The language-model policy: legal moves scored by the model's likelihood of their text.

`Policy.evaluate(states)` is the one batched entry point every actor, search and arena uses. A position
reaches the model through its face (`Query`): the game's text, or (with a board stem) its planes as
prefix tokens and the prompt's last line. Each prompt is encoded once: its legal moves' texts ride along
in the same sequence, each attending to the prompt and to itself only (tree attention, with positions
restarting after the prompt), so one forward pass scores every legal move of every state in the batch;
with `scoring: first_token` (every move one token) the moves are read at the prompt's last position and
need not ride along at all. With `prefix: bidirectional` the prompt's tokens see each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from agents.model import GPT, ModelConfig
from agents.tokenizer import CharTokenizer
from envs.core import State


@dataclass(frozen=True)
class Query:
    """What scoring one position takes: its prompt, its legal moves' texts and, for a model with a board
    stem, its planes (C, H, W)."""

    prompt: str
    moves: tuple[str, ...]
    planes: np.ndarray | None = None


@dataclass(frozen=True)
class Face:
    """How a model reads a position: the game's whole text (`board=False`), or its planes through the
    model's board stem with the prompt's last line as the text."""

    board: bool = False
    features: tuple[str, ...] = ()  # the game's board features the stem reads after the stones

    @classmethod
    def of(cls, cfg: ModelConfig) -> Face:
        return cls(board=cfg.planes > 0, features=cfg.features)

    def query(self, state: State, moves: Sequence[str]) -> Query:
        if self.board:
            return Query(state.status(), tuple(moves), state.planes(self.features))
        return Query(state.prompt(), tuple(moves))


@dataclass(frozen=True)
class Packed:
    """Prompts with their candidate moves packed for one tree-attention pass (see `Policy.pack`)."""

    tok: torch.Tensor  # (B, T) token ids
    pos: torch.Tensor  # (B, T) position ids
    seg: torch.Tensor  # (B, T) 0 prompt, k candidate k, -1 padding
    src_b: torch.Tensor  # (N,) row of each scored move token
    src_i: torch.Tensor  # (N,) index whose output predicts it
    tgt: torch.Tensor  # (N,) the token
    cand_of: torch.Tensor  # (N,) global candidate index it belongs to
    value_idx: torch.Tensor  # (B,) index of each prompt's last token
    n_cands: list[int]  # candidates per row
    planes: torch.Tensor | None = None  # (B, C, H, W) for a board stem


@dataclass(frozen=True)
class Evaluation:
    """The policy's view of one state: a distribution over `actions` (the legal ones) and a value."""

    actions: list[int]
    probs: np.ndarray  # (len(actions),), sums to 1
    logprobs: np.ndarray  # (len(actions),) log-likelihood of each move's text (+ end of move) under the LM
    value: float  # expected return of the player to move, in [-1, 1]

    def best(self) -> int:
        return self.actions[int(np.argmax(self.probs))]


def queries(states: Sequence[State], face: Face = Face()) -> tuple[list[list[int]], list[Query]]:
    """What scoring `states` takes: each one's legal actions, and its `Query` in `face`."""
    actions = [s.legal_actions() for s in states]
    out = []
    for s, acts in zip(states, actions, strict=True):
        if not acts:
            raise ValueError(f"cannot evaluate a finished {s.game.name} game")
        out.append(face.query(s, [s.action_to_text(a) for a in acts]))
    return actions, out


def evaluations(
    actions: Sequence[list[int]], logprobs: Sequence[np.ndarray], values: Sequence[float]
) -> list[Evaluation]:
    """Scores of legal moves' texts -> the distribution over legal actions (a softmax of the scores)."""
    out = []
    for acts, lp, v in zip(actions, logprobs, values, strict=True):
        probs = np.exp(lp - lp.max())
        out.append(Evaluation(list(acts), probs / probs.sum(), lp, float(v)))
    return out


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Policy:
    """A `GPT` plus its tokenizer, acting on game states (and generating free text)."""

    def __init__(
        self, model: GPT, tokenizer: CharTokenizer, *, device: str | torch.device = "auto", meta=None
    ):
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.meta = dict(meta or {})
        self._stops: dict[tuple[str, ...], StopStrings] = {}

    # --- encoding -------------------------------------------------------------------------------
    def encode_prompt(self, prompt: str) -> list[int]:
        """The ids a sequence starts with: `<bos>` and the prompt, or (an HF model with `chat_template`)
        the prompt as a user's turn of its chat template, up to where the answer starts."""
        if getattr(self.model.cfg, "chat_template", False):
            return self.tokenizer.chat_prompt(prompt)
        return [self.tokenizer.bos_id, *self.tokenizer.encode(prompt)]

    def encode_move(self, text: str) -> list[int]:
        return [*self.tokenizer.encode(text), self.tokenizer.eos_id]

    def autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # --- scoring legal moves ----------------------------------------------------------------------
    @property
    def face(self) -> Face:
        return Face.of(self.model.cfg)

    def query(self, state: State) -> Query:
        """The `Query` of a (non-terminal) state in this policy's face."""
        return queries([state], self.face)[1][0]

    def pack(self, queries: Sequence[Query]) -> Packed:
        """Tokenise prompts and their candidate moves into one tree-attention batch (with `first_token`
        scoring, the prompts alone: each move is its first token, read at the prompt's last position)."""
        first_token = self.model.cfg.scoring == "first_token"
        rows_tok, rows_pos, rows_seg = [], [], []
        src_b, src_i, tgt, cand_of = (
            [],
            [],
            [],
            [],
        )  # per scored token: row, source index, target id, candidate
        value_idx = []
        n_cands = 0
        for b, q in enumerate(queries):
            p = self.encode_prompt(q.prompt)
            toks, pos, seg = list(p), list(range(len(p))), [0] * len(p)
            value_idx.append(len(p) - 1)
            for c, text in enumerate(q.moves, 1):
                prev = len(p) - 1  # a move's first token is predicted at the prompt's last position
                ids = self._first_token(text) if first_token else self.encode_move(text)
                for j, t in enumerate(ids):
                    src_b.append(b)
                    src_i.append(prev)
                    tgt.append(t)
                    cand_of.append(n_cands)
                    if first_token:
                        continue
                    prev = len(toks)
                    toks.append(t)
                    pos.append(len(p) + j)  # every candidate continues right after the prompt
                    seg.append(c)
                n_cands += 1
            rows_tok.append(toks)
            rows_pos.append(pos)
            rows_seg.append(seg)
        B, T = len(rows_tok), max(len(r) for r in rows_tok)
        tok = np.full((B, T), self.tokenizer.pad_id, dtype=np.int64)
        pos = np.zeros((B, T), dtype=np.int64)
        seg = np.full((B, T), -1, dtype=np.int64)
        for b in range(B):
            n = len(rows_tok[b])
            tok[b, :n], pos[b, :n], seg[b, :n] = rows_tok[b], rows_pos[b], rows_seg[b]
        dev = self.device
        pin = dev.type == "cuda"

        def t(x, dtype=np.int64):
            x = torch.from_numpy(np.asarray(x, dtype=dtype))
            # pinned host memory lets the copy to the GPU run asynchronously
            return x.pin_memory().to(dev, non_blocking=True) if pin else x

        planes = None
        if self.model.cfg.planes:
            if any(q.planes is None for q in queries):
                raise ValueError("this model reads the board's planes: give every query its planes")
            planes = t(np.stack([q.planes for q in queries]), np.float32)
        return Packed(
            t(tok),
            t(pos),
            t(seg),
            t(src_b),
            t(src_i),
            t(tgt),
            t(cand_of),
            t(value_idx),
            [len(q.moves) for q in queries],
            planes,
        )

    def _first_token(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text)
        if len(ids) != 1:
            raise ValueError(f"scoring first_token needs one token per move; {text!r} is {len(ids)} tokens")
        return ids

    def forward_packed(self, packed: Packed) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable: log-likelihood of every candidate (N_cands,) and the value of every prompt (B,)."""
        bidirectional = self.model.cfg.prefix == "bidirectional"
        with self.autocast():
            mask = tree_mask(packed.pos, packed.seg, bidirectional_prompt=bidirectional)
            hidden, _ = self.model(packed.tok, positions=packed.pos, mask=mask, planes=packed.planes)
            logits = self.model.lm_head(hidden[packed.src_b, packed.src_i]).float()  # (N_tokens, V)
            rows = torch.arange(len(packed.value_idx), device=self.device)
            values = self.model.value(hidden[rows, packed.value_idx]).float()  # (B,)
        token_lp = F.log_softmax(logits, dim=-1).gather(1, packed.tgt[:, None])[:, 0]
        cand_lp = torch.zeros(sum(packed.n_cands), device=self.device).index_add(0, packed.cand_of, token_lp)
        return cand_lp, values

    @torch.inference_mode()
    def score(self, queries: Sequence[Query]) -> tuple[list[np.ndarray], np.ndarray]:
        """Log-likelihood of each query's moves (a move's text + end of move, or its first token) and the
        value read at the end of each prompt. One forward pass for the whole batch."""
        cand_lp, values = self.forward_packed(self.pack(queries))
        cand_lp = cand_lp.cpu().numpy()
        splits = np.cumsum([len(q.moves) for q in queries])[:-1]
        return list(np.split(cand_lp, splits)), values.cpu().numpy()

    def evaluate(self, states: Sequence[State]) -> list[Evaluation]:
        """For each (non-terminal) state: a distribution over its legal actions and a value."""
        if not states:
            return []
        actions, qs = queries(states, self.face)
        return evaluations(actions, *self.score(qs))

    def act(
        self, states: Sequence[State], *, temperature: float = 0.0, rng: np.random.Generator | None = None
    ) -> list[int]:
        """One action per state: greedy at temperature 0, else sampled from probs ** (1 / temperature)."""
        evals = self.evaluate(states)
        if temperature <= 0:
            return [e.best() for e in evals]
        rng = rng or np.random.default_rng()
        chosen = []
        for e in evals:
            logits = np.log(np.maximum(e.probs, 1e-30)) / temperature
            p = np.exp(logits - logits.max())
            chosen.append(e.actions[int(rng.choice(len(p), p=p / p.sum()))])
        return chosen

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
    ) -> list[str]:
        """Free-text completions of `prompts`, cut at `<eos>` or the first stop string: greedy at
        temperature 0, else sampled (after `top_k`, then `top_p`). Batched over a KV cache allocated once;
        a row that has ended leaves the batch, so it costs nothing more."""
        if not prompts:
            return []
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**31, ()).item()))
        # a prompt asked for several times (a GRPO group) is read once: its rows share that reading
        ids_of: dict[tuple[int, ...], int] = {}
        firsts, copy_of = [], []  # each distinct prompt once; the distinct prompt of each row
        for p in prompts:
            ids = tuple(self.encode_prompt(p))
            if ids not in ids_of:
                ids_of[ids] = len(firsts)
                firsts.append(p)
            copy_of.append(ids_of[ids])
        if temperature <= 0 and len(firsts) < len(prompts):  # greedy: the same prompt, the same text
            texts = self.generate(
                firsts,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                stop=stop,
            )
            return [texts[u] for u in copy_of]
        encoded = list(ids_of)
        B, L = len(prompts), max(len(e) for e in encoded)
        block = self.model.cfg.block_size
        if block < L:
            raise ValueError(f"prompt of {L} tokens exceeds the model's context of {block}")
        max_new_tokens = min(max_new_tokens, block - L)
        idx = torch.full((len(encoded), L), self.tokenizer.pad_id, dtype=torch.long)
        valid = torch.zeros((len(encoded), L + max_new_tokens), dtype=torch.bool)
        for b, e in enumerate(encoded):  # left padding keeps every row's last token at the end
            idx[b, L - len(e) :] = torch.tensor(e)
            valid[b, L - len(e) : L] = True
        idx, valid = idx.to(self.device), valid.to(self.device)
        pos = (valid[:, :L].long().cumsum(1) - 1).clamp(min=0)
        causal = torch.ones((L, L), dtype=torch.bool, device=self.device).tril()
        mask = (causal[None] & valid[:, None, :L]) | torch.eye(L, dtype=torch.bool, device=self.device)
        copies = torch.tensor(copy_of, device=self.device)
        stops = self.stop_strings(stop)
        out = torch.zeros((B, max_new_tokens), dtype=torch.long, device=self.device)  # written ids
        lengths = torch.full((B,), max_new_tokens, dtype=torch.long, device=self.device)
        rows = torch.arange(B, device=self.device)  # the prompt each row of the batch completes
        # padding and <bos> are never written; <eos> always may be, even where a tokenizer makes it its
        # padding too (SmolLM2's and Qwen2's <|im_end|>, GPT-2's <|endoftext|>)
        never = [t for t in {self.tokenizer.pad_id, self.tokenizer.bos_id} if t != self.tokenizer.eos_id]
        never = torch.tensor(never, dtype=torch.long, device=self.device)
        with self.autocast():
            cache = self.model.new_cache(L + max_new_tokens)
            hidden, cache = self.model(idx, positions=pos, mask=mask[:, None], cache=cache)
            if len(encoded) < B:
                cache.reorder_cache(copies)
            hidden, valid, last_pos = hidden[copies, -1:], valid[copies], pos[copies, -1]
            for step in range(max_new_tokens):
                logits = self.model.lm_head(hidden[:, -1]).float()  # (rows, V)
                logits.index_fill_(1, never, -torch.inf)
                nxt = sample(logits, temperature, top_k, top_p, gen)
                out[rows, step] = nxt
                eos = nxt == self.tokenizer.eos_id
                ended = eos | stops.found(out, rows, step) if stops.strings else eos
                if bool(ended.any()):  # ended rows leave the batch, and the cache
                    lengths[rows[ended]] = step + 1 - eos[ended].long()  # <eos> is not in the text
                    if bool(ended.all()):
                        break
                    keep = (~ended).nonzero()[:, 0]
                    rows, nxt, last_pos, valid = rows[keep], nxt[keep], last_pos[keep], valid[keep]
                    cache.reorder_cache(keep)
                if step == max_new_tokens - 1:  # no token follows the last
                    break
                valid[:, L + step] = True
                last_pos = last_pos + 1
                hidden, cache = self.model(
                    nxt[:, None],
                    positions=last_pos[:, None],
                    mask=valid[:, None, None, : L + step + 1],
                    cache=cache,
                )
        texts = [
            self.tokenizer.decode(ids[:n]) for ids, n in zip(out.tolist(), lengths.tolist(), strict=True)
        ]
        return [stops.cut(t) for t in texts]

    def stop_strings(self, stop: Sequence[str]) -> StopStrings:
        """What finds `stop` in generated text for this policy's tokenizer (made once per stop strings)."""
        key = tuple(s for s in stop if s)
        found = self._stops.get(key)
        if found is None:
            found = self._stops[key] = StopStrings(self.tokenizer, key, self.device)
        return found


def sample(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token per row of `logits` (rows, V): the most likely at temperature 0, else drawn from the
    softmax of logits / temperature restricted to the `top_k` most likely, then to the smallest set whose
    probability reaches `top_p` (nucleus sampling)."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p is not None and top_p < 1.0:
        ordered, order = logits.sort(-1, descending=True)
        before = ordered.softmax(-1).cumsum(-1) - ordered.softmax(-1)  # probability of the likelier ones
        ordered = ordered.masked_fill(before >= top_p, -torch.inf)  # the most likely one always stays
        logits = torch.full_like(logits, -torch.inf).scatter(-1, order, ordered)
    # inverse transform sampling, one uniform per row: torch.multinomial takes 30 ms for 32 rows of a
    # 49k vocabulary on this CPU, a third of a SmolLM2 decoding step; the cumulative sum in float64 keeps
    # every token's share exact to ~1e-12
    cdf = F.softmax(logits, -1).double().cumsum(-1)
    u = torch.rand((len(cdf), 1), dtype=torch.float64, generator=generator, device=cdf.device) * cdf[:, -1:]
    # the first token whose cumulative probability passes u: never one of probability 0
    return torch.searchsorted(cdf, u, right=True)[:, 0].clamp(max=cdf.shape[1] - 1)


class StopStrings:
    """Finds stop strings in generated text without decoding every row at every step: only a row whose new
    token could end a stop string (its text holds a stop string's last character, or is not a whole
    character alone) has its last tokens decoded and searched. The cost is linear in a completion's
    length. A stop string found a few tokens late (a tokenizer whose token reads differently alone) only
    costs those tokens: `cut` finds the first one in the whole text, as it was written."""

    WINDOW = 6  # tokens decoded before the ones that can hold the stop string: what decoding may depend on

    def __init__(self, tokenizer, strings: tuple[str, ...], device: torch.device) -> None:
        self.tokenizer, self.strings = tokenizer, strings
        self.window = 4 * max((len(s) for s in strings), default=0) + self.WINDOW  # 4 bytes a character
        last = {s[-1] for s in strings}
        alone = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)] if strings else []
        maybe = [i for i, t in enumerate(alone) if not t or "\ufffd" in t or any(c in t for c in last)]
        self.maybe = torch.tensor(maybe, dtype=torch.long, device=device)

    def found(self, out: torch.Tensor, rows: torch.Tensor, step: int) -> torch.Tensor:
        """Which rows (of `rows`, whose ids `out` holds up to `step`) now hold a stop string."""
        hit = torch.isin(out[rows, step], self.maybe)
        if bool(hit.any()):
            lo = max(0, step + 1 - self.window)
            for i in hit.nonzero()[:, 0].tolist():
                text = self.tokenizer.decode(out[rows[i], lo : step + 1].tolist())
                hit[i] = any(s in text for s in self.strings)
        return hit

    def cut(self, text: str) -> str:
        """`text` up to the first stop string in it."""
        return text[: min((i for s in self.strings if (i := text.find(s)) >= 0), default=len(text))]


def tree_mask(pos: torch.Tensor, seg: torch.Tensor, *, bidirectional_prompt: bool = False) -> torch.Tensor:
    """Attention mask (B, 1, T, T) for prompt + candidates packed in one row.

    Segment 0 is the prompt, segment k > 0 the k-th candidate, -1 padding. A query sees keys at earlier
    or equal positions that are in the prompt or in its own segment (with `bidirectional_prompt`, a
    prompt token also sees the prompt's later tokens); padding sees only itself (so no row is empty).
    """
    q_pos, k_pos = pos[:, :, None], pos[:, None, :]
    q_seg, k_seg = seg[:, :, None], seg[:, None, :]
    valid = (k_seg >= 0) & (q_seg >= 0)
    m = (k_pos <= q_pos) & ((k_seg == 0) | (k_seg == q_seg)) & valid
    if bidirectional_prompt:
        m |= (q_seg == 0) & (k_seg == 0)
    m |= torch.eye(pos.shape[1], dtype=torch.bool, device=pos.device)
    return m[:, None]

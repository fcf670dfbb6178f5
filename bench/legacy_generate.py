"""`Policy.generate` as it was before the static KV cache (git 8657123), kept verbatim so that the
generation bench measures the new path against the old one in one run, and so that the reference outputs
the tests compare against (`bench/generation_reference.py`) can be rebuilt from the old path."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


@torch.no_grad()
def legacy_generate(
    self,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_k: int | None = None,
    stop: Sequence[str] = (),
    seed: int | None = None,
) -> list[str]:
    """Free-text completions of `prompts` (batched, KV cache), cut at `<eos>` or the first stop string."""
    if not prompts:
        return []
    gen = torch.Generator(device=self.device)
    gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**31, ()).item()))
    encoded = [self.encode_prompt(p) for p in prompts]
    B, n_prompt = len(encoded), max(len(e) for e in encoded)
    block = self.model.cfg.block_size
    if n_prompt > block:
        raise ValueError(f"prompt of {n_prompt} tokens exceeds the model's context of {block}")
    max_new_tokens = min(max_new_tokens, block - n_prompt)
    L = n_prompt
    pad = self.tokenizer.pad_id
    idx = torch.full((B, L), pad, dtype=torch.long)
    valid = torch.zeros((B, L), dtype=torch.bool)
    for b, e in enumerate(encoded):  # left padding keeps every row's last token at the end
        idx[b, L - len(e) :] = torch.tensor(e)
        valid[b, L - len(e) :] = True
    idx, valid = idx.to(self.device), valid.to(self.device)
    pos = (valid.long().cumsum(1) - 1).clamp(min=0)
    causal = torch.ones((L, L), dtype=torch.bool, device=self.device).tril()
    mask = (causal[None] & valid[:, None, :]) | torch.eye(L, dtype=torch.bool, device=self.device)
    out: list[list[int]] = [[] for _ in range(B)]
    texts = [""] * B
    done = [False] * B
    never = [t for t in {pad, self.tokenizer.bos_id} if t != self.tokenizer.eos_id]
    with self.autocast():
        hidden, cache = self.model(idx, positions=pos, mask=mask[:, None])
        last_pos = pos[:, -1]
        for _ in range(max_new_tokens):
            logits = self.model.lm_head(hidden[:, -1]).float()  # (B, V)
            logits[:, never] = -torch.inf
            if temperature <= 0:
                nxt = logits.argmax(-1)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, -torch.inf)
                nxt = torch.multinomial(F.softmax(logits, -1), 1, generator=gen)[:, 0]
            for b, t in enumerate(nxt.tolist()):
                if done[b]:
                    continue
                if t == self.tokenizer.eos_id:
                    done[b] = True
                    continue
                out[b].append(t)
                texts[b] = self.tokenizer.decode(out[b])
                hits = [texts[b].index(s) for s in stop if s in texts[b]]
                if hits:
                    texts[b], done[b] = texts[b][: min(hits)], True
            if all(done):
                break
            valid = torch.cat((valid, torch.ones((B, 1), dtype=torch.bool, device=self.device)), 1)
            last_pos = last_pos + 1
            hidden, cache = self.model(
                nxt[:, None], positions=last_pos[:, None], mask=valid[:, None, None, :], cache=cache
            )
    return texts

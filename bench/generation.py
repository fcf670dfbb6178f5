"""Generation speed: the policy's `generate` against the path before it, native and Hugging Face models.

    python bench/generation.py [--size nano] [--seconds 0.5] [--batches 1,8,32,64] [--prompts 16,64]
        [--new 8,64,256] [--modes greedy,sampled] [--hf-path DIR]

For each model (the native preset of `--size`, random; and a Hugging Face causal LM: the directory at
`--hf-path`, or a tiny random Llama of the same width and depth), each batch size, prompt length (in
tokens, `<bos>` included), number of new tokens and mode (greedy, or sampled at temperature 1), new
tokens/s through the old path (`bench/legacy_generate.py`, as `Policy.generate` was at 8657123) and
today's, side by side in one run, and their ratio. The end of sequence is not honoured here (every
completion runs to its budget), so that a figure's tokens are exactly batch x new tokens; a stop string
is passed, as every caller passes one, so its search counts (one neither model writes). Below the
table: the native model's greedy batch-64 figure against the HF model's through the old path, and what a
completion of 256 new tokens costs against one of 64 (new path, greedy, each batch; linear would be 4x); and
a GRPO actor's batch (64 prompts, each sampled `--group` times, 8 new tokens), old path and new; and the
native model's decoding step alone (forward and LM head at batch 64): the ceiling of any generation loop.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import agents
from bench.legacy_generate import legacy_generate

STOP = ("§§§",)  # searched for, as every caller passes stop strings; never written, so nothing ends


class EndlessTokenizer:
    """A tokenizer whose end of sequence is never written: each completion runs to its budget."""

    def __init__(self, tokenizer) -> None:
        self._t = tokenizer
        self.eos_id = -1

    def __getattr__(self, name):
        return getattr(self._t, name)


def endless(policy: agents.Policy) -> agents.Policy:
    return agents.Policy(policy.model, EndlessTokenizer(policy.tokenizer), device=policy.device)


def digit_prompts(batch: int, tokens: int, seed: int = 0) -> list[str]:
    """Prompts of `tokens` tokens with `<bos>`: digits, one token each in both tokenizers."""
    rng = random.Random(seed)
    return ["".join(rng.choice("0123456789") for _ in range(tokens - 1)) for _ in range(batch)]


def rate(generate, policy, prompts, new: int, temperature: float, seconds: float) -> float:
    """New tokens/s of `generate` (after one warm-up call) over at least `seconds`."""
    call = lambda: generate(  # noqa: E731
        policy, prompts, max_new_tokens=new, temperature=temperature, stop=STOP, seed=0
    )
    call()
    calls, start = 0, time.perf_counter()
    while True:
        call()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    return calls * len(prompts) * new / elapsed


def step_ceiling(policy: agents.Policy, batch: int, past: int, seconds: float) -> float:
    """New tokens/s of the native model's decoding step alone (its forward over a KV cache holding `past`
    tokens, and the LM head; no sampling, no bookkeeping): what bounds any loop around this eager model."""
    model = policy.model
    with torch.inference_mode():
        cache = model.new_cache(past + 1)
        idx = torch.randint(4, 50, (batch, past))
        model(idx, cache=cache)
        nxt, pos = idx[:, -1:], torch.full((batch, 1), past)

        def step():
            cache.length = past  # the same slot again: the cache stays `past` tokens long
            hidden, _ = model(nxt, positions=pos, cache=cache)
            model.lm_head(hidden[:, -1])

        step()
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            step()
            calls += 1
        return calls * batch / (time.perf_counter() - start)


def new_path(policy, prompts, **kw):
    return policy.generate(prompts, **kw)


def hf_policy(path: str | None, cfg: agents.ModelConfig) -> agents.Policy:
    from agents.hf import policy_from_pretrained
    from selfplay import tiny_model

    if path is None:
        path = tempfile.mkdtemp(prefix="bench-llama-") + "/model"
        heads = max(1, cfg.n_embd // 32)
        tiny_model.build("llama", path, hidden=cfg.n_embd, layers=cfg.n_layer, heads=heads, kv_heads=heads)
    return policy_from_pretrained(path, device="cpu", block_size=cfg.block_size)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="nano", choices=list(agents.PRESETS))
    p.add_argument("--seconds", type=float, default=0.5)
    p.add_argument("--batches", default="1,8,32,64")
    p.add_argument("--prompts", default="16,64")
    p.add_argument("--new", default="8,64,256")
    p.add_argument("--modes", default="greedy,sampled")
    p.add_argument("--group", type=int, default=8, help="samples of each prompt in the GRPO-shaped batch")
    p.add_argument("--hf-path", default=None, help="an HF model directory (default: a tiny random Llama)")
    args = p.parse_args()
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    batches, prompt_lens, news, modes = (
        ints(args.batches),
        ints(args.prompts),
        ints(args.new),
        args.modes.split(","),
    )
    torch.manual_seed(0)
    tok = agents.CharTokenizer()
    block = max(prompt_lens) + max(news)
    cfg = agents.ModelConfig.preset(args.size, vocab_size=tok.vocab_size, block_size=block)
    models = {
        f"native {args.size}": agents.new_policy(cfg, device="cpu", seed=0),
        args.hf_path or f"Llama {cfg.n_layer}x{cfg.n_embd}": hf_policy(args.hf_path, cfg),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| model | batch | prompt | new | mode | old (tok/s) | new (tok/s) | new / old |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    figures = {}
    for name, policy in models.items():
        policy = endless(policy)
        for mode in modes:
            temperature = 0.0 if mode == "greedy" else 1.0
            for batch in batches:
                for n_prompt in prompt_lens:
                    prompts = digit_prompts(batch, n_prompt)
                    for new in news:
                        old = rate(legacy_generate, policy, prompts, new, temperature, args.seconds)
                        now = rate(new_path, policy, prompts, new, temperature, args.seconds)
                        figures[name, mode, batch, n_prompt, new] = (old, now)
                        print(
                            f"| {name} | {batch} | {n_prompt} | {new} | {mode} | {old:,.0f} | {now:,.0f} "
                            f"| {now / old:.2f}x |",
                            flush=True,
                        )
    native_policy = models[f"native {args.size}"]
    past = min(48, block - 1)
    ceiling = step_ceiling(native_policy, 64, past, args.seconds)
    print(
        f"\nnative {args.size}: its decoding step alone (batch 64, {past} tokens of past, no sampling): "
        f"{ceiling:,.0f} tok/s"
    )
    # a GRPO actor's batch (configs/text_beyond.yaml's): 64 prompts, each sampled `--group` times
    for name, policy in models.items():
        policy = endless(policy)
        prompts = [p for p in digit_prompts(64, min(prompt_lens)) for _ in range(args.group)]
        old = rate(legacy_generate, policy, prompts, 8, 1.0, args.seconds)
        now = rate(new_path, policy, prompts, 8, 1.0, args.seconds)
        print(
            f"{name}: 64 prompts x {args.group} samples, 8 new tokens: {old:,.0f} -> {now:,.0f} tok/s "
            f"({now / old:.2f}x)"
        )
    native, hf = list(models)
    key = ("greedy", 64, min(prompt_lens), 64)
    if (native, *key) in figures and (hf, *key) in figures:
        ours, theirs = figures[native, *key][1], figures[hf, *key][0]
        print(
            f"\nnative greedy, batch 64, 64 new: {ours:,.0f} tok/s new path vs {theirs:,.0f} {hf} old path "
            f"({ours / theirs:.2f}x); {ours / figures[native, *key][0]:.2f}x the native old path"
        )
    for name in models:  # seconds per completion: tokens / rate
        costs = []
        for batch in batches:
            a, b = (
                (name, "greedy", batch, min(prompt_lens), 64),
                (name, "greedy", batch, min(prompt_lens), 256),
            )
            if a in figures and b in figures:
                costs.append(f"batch {batch}: {(256 / figures[b][1]) / (64 / figures[a][1]):.2f}x")
        if costs:
            print(
                f"{name}: a completion of 256 new tokens costs, against one of 64 (linear: 4x), "
                + ", ".join(costs)
            )


if __name__ == "__main__":
    main()

"""Rebuild the greedy-generation reference the tests compare against (`tests/data/generation/`).

    python bench/generation_reference.py [--out tests/data/generation] [--steps 400] [--per-source 500]

Two small checkpoints are trained here (seeded) on the texts a policy of this project reads and writes:
every built-in reward environment's prompts with their expert answers, and every game's prompts with a
legal move: the native nano model (characters) and a tiny Llama (`selfplay.tiny_model`, through the `hf`
backbone). Then 500 prompts of each reward environment (guess_number's at a random turn of an expert's
episode) and of each game (random positions) are completed greedily (at most 24 new tokens, cut at the
line's end), and 50 of each again with no stop string and at most 48 new tokens (cut by the model's end
of sequence or the budget), by the generation path as it was before the static KV cache
(`bench/legacy_generate.py`).
`tests/test_generation.py` checks that today's `Policy.generate` writes the same texts.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import agents  # noqa: E402
import envs  # noqa: E402
from envs.reward import sample_tasks  # noqa: E402

PER_SOURCE = 500
MAX_NEW = 24
STOP = ("\n",)


def prompts(n: int = PER_SOURCE, seed: int = 0) -> list[tuple[str, str, str]]:
    """(source, prompt, a right answer) for `n` prompts of every reward environment and game."""
    rng = random.Random(seed)
    out = []
    for name in envs.names("reward"):
        env = envs.make(name)
        for task in sample_tasks(env, n, seed=seed):
            turns: list[str] = []
            for _ in range(rng.randrange(env.max_turns)):  # a multi-turn task at a random turn
                if env.prompt_for(task, [*turns, env.expert(task, turns)]) is None:
                    break
                turns.append(env.expert(task, turns))
            out.append((name, env.prompt_for(task, turns), env.expert(task, turns)))
    for name in envs.names("game"):
        for state in envs.random_states(envs.make(name), n, seed=seed):
            out.append((name, state.prompt(), rng.choice(state.legal_texts())))
    return out


def train(policy: agents.Policy, texts: list[tuple[str, str]], steps: int, seed: int = 0) -> None:
    """A causal LM's loss on prompt + answer + end of sequence: enough for confident greedy outputs."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model, tok = policy.model, policy.tokenizer
    rows = [policy.encode_prompt(p) + tok.encode(a) + [tok.eos_id] for p, a in texts]
    opt = agents.adamw(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for step in range(steps):
        batch = rng.sample(rows, 32)
        T = max(len(r) for r in batch)
        idx = torch.full((len(batch), T), tok.pad_id)
        for b, r in enumerate(batch):
            idx[b, : len(r)] = torch.tensor(r)
        hidden, _ = model(idx[:, :-1])
        logits = model.lm_head(hidden).float()
        target = idx[:, 1:].masked_fill(idx[:, 1:] == tok.pad_id, -100)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"  step {step}: loss {loss.item():.3f}")
    model.eval()


def main() -> None:
    from bench.legacy_generate import legacy_generate
    from selfplay import tiny_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "tests/data/generation"))
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--per-source", type=int, default=PER_SOURCE)
    args = p.parse_args()
    out = Path(args.out)
    torch.set_num_threads(1)
    items = prompts(args.per_source)
    training = prompts(n=2000, seed=1)
    tok = agents.CharTokenizer()
    native = agents.new_policy(
        agents.ModelConfig.preset("nano", vocab_size=tok.vocab_size, block_size=256), tokenizer=tok, seed=0
    )
    with tempfile.TemporaryDirectory() as tmp:
        tiny_model.build("llama", f"{tmp}/base", hidden=64, layers=2, heads=2, kv_heads=2, seed=0)
        from agents.hf import policy_from_pretrained

        hf = policy_from_pretrained(f"{tmp}/base", device="cpu", block_size=256)
        for name, policy in (("native", native), ("hf", hf)):
            print(f"{name}: training")
            train(policy, [(q, a) for _, q, a in training], args.steps)
            shutil.rmtree(out / name, ignore_errors=True)
            agents.save(policy, out / name)
            rows = []
            for settings in ({"max_new_tokens": MAX_NEW, "stop": STOP}, {"max_new_tokens": 48, "stop": ()}):
                chosen = items if settings["stop"] else [it for k, it in enumerate(items) if k % 10 == 0]
                for start in range(0, len(chosen), 250):
                    chunk = chosen[start : start + 250]
                    texts = legacy_generate(policy, [q for _, q, _ in chunk], temperature=0.0, **settings)
                    rows += [
                        {"source": s, "prompt": q, "completion": c, **settings}
                        for (s, q, _), c in zip(chunk, texts, strict=True)
                    ]
            right = np.mean([r["completion"].strip() == a for r, (_, _, a) in zip(rows, items, strict=False)])
            print(f"{name}: {len(rows)} completions, {right:.2f} of the first equal the expert's answer")
            with gzip.open(out / f"{name}.jsonl.gz", "wt") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()

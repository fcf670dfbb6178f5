"""The policy's speed: imitation training tokens/s and batched inference positions/s (batch 1 vs 256).

    python bench/policy.py [--size small] [--game connect_four] [--seconds 5] [--device auto]
    python bench/policy.py --backbone hf [--hf-path DIR] [--size nano]

Both figures come from the same run, so the batching gain (the ratio) is comparable across machines.
With `--backbone hf` the same figures (and greedy generation tokens/s) come for the native model and, in
the next column of the same run, for a Hugging Face causal LM: the model at `--hf-path`, or a tiny random
Llama of the native preset's width and depth (`selfplay.tiny_model`). Each model counts its own tokens
(characters for the native model, BPE tokens for the HF one): positions/s compare directly.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import torch

import agents
import envs
from envs.experts import make_expert
from envs.reward import sample_tasks
from selfplay.core.transcripts import Transcript, play_game
from selfplay.games.imitate import build_examples, legal_losses


def inference_rate(policy: agents.Policy, states: list[envs.State], batch: int, seconds: float) -> float:
    done, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        chunk = [states[(i + k) % len(states)] for k in range(batch)]
        policy.evaluate(chunk)
        done += batch
        i += batch
    return done / (time.perf_counter() - start)


def training_rate(policy: agents.Policy, game: envs.Game, batch: int, seconds: float) -> float:
    expert = make_expert("random", game)
    transcripts = [Transcript.model_validate(play_game(game, expert, seed)) for seed in range(40)]
    examples = build_examples(transcripts, game, policy)
    opt = torch.optim.AdamW(policy.model.parameters(), lr=1e-4)
    policy.model.train()
    rng = random.Random(0)
    tokens, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        chunk = rng.sample(examples, batch)
        pl, vl, _ = legal_losses(policy, chunk)
        opt.zero_grad()
        (pl + vl).backward()
        opt.step()
        tokens += sum(len(e.prompt) + len(e.move) for e in chunk)
    policy.model.eval()
    return tokens / (time.perf_counter() - start)


def generation_rate(policy: agents.Policy, seconds: float) -> float:
    """Greedy generation, 64 prompts at a time with the KV cache: new tokens/s."""
    env = envs.make("arithmetic", digits=2, ops="+")
    prompts = [env.prompt_for(t) for t in sample_tasks(env, 64, seed=0)]
    tokens, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        out = policy.generate(prompts, max_new_tokens=16, temperature=0.0, stop=("\n",))
        tokens += sum(len(policy.tokenizer.encode(o)) + 1 for o in out)
    return tokens / (time.perf_counter() - start)


def figures(policy: agents.Policy, game: envs.Game, states, seconds: float, text: bool) -> dict[str, float]:
    out = {
        "inference, batch 1 (positions/s)": inference_rate(policy, states, 1, seconds),
        "inference, batch 256 (positions/s)": inference_rate(policy, states, 256, seconds),
        "imitation training, batch 64 (tokens/s)": training_rate(policy, game, 64, seconds),
    }
    if text:
        out["greedy generation, batch 64 (new tokens/s)"] = generation_rate(policy, seconds)
    return out


def hf_policy(path: str | None, cfg: agents.ModelConfig, device: str) -> agents.Policy:
    from agents.hf import policy_from_pretrained
    from selfplay import tiny_model

    if path is None:
        path = tempfile.mkdtemp(prefix="bench-llama-") + "/model"
        heads = max(1, cfg.n_embd // 32)
        tiny_model.build("llama", path, hidden=cfg.n_embd, layers=cfg.n_layer, heads=heads, kv_heads=heads)
    return policy_from_pretrained(path, device=device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="small", choices=list(agents.PRESETS))
    p.add_argument("--game", default="connect_four")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--backbone", default="native", choices=["native", "hf"])
    p.add_argument("--hf-path", default=None, help="an HF model directory (default: a tiny random Llama)")
    args = p.parse_args()
    game = envs.make(args.game)
    tok = agents.CharTokenizer()
    cfg = agents.ModelConfig.preset(args.size, vocab_size=tok.vocab_size, block_size=256)
    policies = {f"native {args.size}": agents.new_policy(cfg, device=args.device, seed=0)}
    if args.backbone == "hf":
        policies[args.hf_path or f"tiny Llama {cfg.n_layer}x{cfg.n_embd}"] = hf_policy(
            args.hf_path, cfg, args.device
        )
    states = envs.random_states(game, 512)
    for name, policy in policies.items():
        print(f"{name}: {policy.model.num_parameters():,} parameters on {policy.device}, game {args.game}")
    hf = args.backbone == "hf"
    table = {name: figures(policy, game, states, args.seconds, hf) for name, policy in policies.items()}
    rows = next(iter(table.values()))
    print("| figure | " + " | ".join(table) + " |")
    print("|---|" + "---:|" * len(table))
    for row in rows:
        print(f"| {row} | " + " | ".join(f"{t[row]:,.0f}" for t in table.values()) + " |")
    for name, t in table.items():
        gain = t["inference, batch 256 (positions/s)"] / t["inference, batch 1 (positions/s)"]
        print(f"{name}: batching gain {gain:.1f}x")


if __name__ == "__main__":
    main()

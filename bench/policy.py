"""The policy's speed: imitation training tokens/s and batched inference positions/s (batch 1 vs 256).

    python bench/policy.py [--size small] [--game connect_four] [--seconds 5] [--device auto]

Both figures come from the same run, so the batching gain (the ratio) is comparable across machines.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

import agents
import envs
from envs.experts import make_expert
from selfplay.imitate import build_examples, legal_losses
from selfplay.transcripts import Transcript, play_game


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="small", choices=list(agents.PRESETS))
    p.add_argument("--game", default="connect_four")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    game = envs.make(args.game)
    tok = agents.CharTokenizer()
    cfg = agents.ModelConfig.preset(args.size, vocab_size=tok.vocab_size, block_size=256)
    policy = agents.new_policy(cfg, device=args.device, seed=0)
    states = envs.random_states(game, 512)
    n_params = policy.model.num_parameters()
    print(f"model {args.size} ({n_params:,} parameters) on {policy.device}, game {args.game}")
    one = inference_rate(policy, states, 1, args.seconds)
    many = inference_rate(policy, states, 256, args.seconds)
    train = training_rate(policy, game, 64, args.seconds)
    print("| figure | value |")
    print("|---|---:|")
    print(f"| inference, batch 1 (positions/s) | {one:,.0f} |")
    print(f"| inference, batch 256 (positions/s) | {many:,.0f} |")
    print(f"| batching gain | {many / one:.1f}x |")
    print(f"| imitation training, batch 64 (tokens/s) | {train:,.0f} |")


if __name__ == "__main__":
    main()

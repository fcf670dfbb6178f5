"""Where the forward's time goes: `Policy.evaluate` and a learner step, against this CPU's matmul peak.

    python bench/forward.py [--config configs/game.yaml] [--batch 256] [--seconds 3] [--checkpoint DIR]

The model is the config's (the main job's by default: a nano model reading the board through its stem),
random unless `--checkpoint` names a trained one, and a text-face model of the same size for comparison.
Side by side in one run: positions/s of `Policy.evaluate` at `--batch` through the stem as it was at
8657123 (convolutions over channels-first planes), today's path (channels last), and today's path under
bfloat16 autocast (this CPU's AMX; not used by any run: it changes every figure measured so far); the
forward's FLOPs (`torch.utils.flop_counter`) per second as a share of a 512^3 float32 matmul's rate on
the same threads; a legal-move imitation step (forward and backward) in examples/s; and the operators
that take the forward's time (`torch.profiler`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import agents  # noqa: E402
import envs  # noqa: E402
from agents.model import BoardStem  # noqa: E402


def old_stem_forward(self, planes: torch.Tensor) -> torch.Tensor:
    """`BoardStem.forward` as it was at 8657123: channels first."""
    h = F.gelu(self.inp(planes))
    for conv in self.convs:
        h = h + F.gelu(conv(h))
    if self.patch is not None:
        p = self.patch.stride[0]
        h = F.gelu(self.patch(F.pad(h, (0, -h.shape[3] % p, 0, -h.shape[2] % p))))
    H, W = h.shape[2:]
    cells = self.out(h.flatten(2).transpose(1, 2))
    rows = torch.arange(H, device=h.device).repeat_interleave(W)
    cols = torch.arange(W, device=h.device).repeat(H)
    return cells + self.row_emb(rows) + self.col_emb(cols)


@contextlib.contextmanager
def path(policy: agents.Policy, which: str):
    """Run `policy` through the old stem, today's, or today's under bfloat16 autocast."""
    new_forward = BoardStem.forward
    autocast = policy.autocast
    if which == "old":
        BoardStem.forward = old_stem_forward
    if which == "bfloat16":
        policy.autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    try:
        yield
    finally:
        BoardStem.forward = new_forward
        policy.autocast = autocast


def rate(step, units: int, seconds: float) -> float:
    step()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        done += units
    return done / (time.perf_counter() - start)


def matmul_rate(seconds: float) -> float:
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    return rate(lambda: a @ b, 2 * 512**3, seconds)


def forward_flops(policy: agents.Policy, states) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        policy.evaluate(states)
    return counter.get_total_flops()


def learner_step(policy: agents.Policy, game, batch: int):
    from selfplay.core.transcripts import Transcript, play_game
    from selfplay.games.imitate import build_examples, legal_losses

    expert = envs.experts.make_expert("random", game)
    transcripts = [Transcript.model_validate(play_game(game, expert, seed)) for seed in range(40)]
    examples = build_examples(transcripts, game, policy)[:batch]
    opt = torch.optim.AdamW(policy.model.parameters(), lr=1e-5)

    def step():
        policy.model.train()
        pl, vl, _ = legal_losses(policy, examples)
        opt.zero_grad()
        (pl + vl).backward()
        opt.step()
        policy.model.eval()

    return step


def main() -> None:
    from selfplay.config import load_config

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/game.yaml"))
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args()
    config = load_config(args.config)
    game = envs.make(config.game)
    tok = agents.CharTokenizer()
    cfg = config.model.build(tok.vocab_size, config.game)
    if args.checkpoint:
        board = agents.load(args.checkpoint, device="cpu")
    else:
        board = agents.new_policy(cfg, device="cpu", seed=0)
    text_cfg = agents.ModelConfig.preset(config.model.size, vocab_size=tok.vocab_size, block_size=256)
    text = agents.new_policy(text_cfg, device="cpu", seed=0)
    states = envs.random_states(game, args.batch, seed=0)
    peak = matmul_rate(args.seconds)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; 512^3 float32 matmul "
        f"{peak / 1e9:.0f} GFLOP/s"
    )
    print("| model | path | evaluate, positions/s | GFLOP/s | share of the matmul rate |")
    print("|---|---|---:|---:|---:|")
    figures = {}
    for name, policy in (("board face", board), ("text face", text)):
        flops = forward_flops(policy, states) / args.batch
        for which in ("old", "new", "bfloat16"):
            if which == "old" and policy is text:
                continue  # no stem: the old path is today's
            with path(policy, which):
                r = rate(lambda policy=policy: policy.evaluate(states), args.batch, args.seconds)
            figures[name, which] = r
            print(f"| {name} | {which} | {r:,.0f} | {r * flops / 1e9:.1f} | {r * flops / peak:.0%} |")
    print(
        f"\nboard face: today's path {figures['board face', 'new'] / figures['board face', 'old']:.2f}x "
        f"the old one; under bfloat16 {figures['board face', 'bfloat16'] / figures['board face', 'old']:.2f}x"
    )
    step = learner_step(board, game, 64)
    for which in ("old", "new", "bfloat16"):
        with path(board, which):
            print(
                f"learner step (64 examples, board face, {which}): "
                f"{rate(step, 64, args.seconds):,.0f} examples/s"
            )
    with torch.profiler.profile() as prof, torch.inference_mode():
        for _ in range(5):
            board.evaluate(states)
    print("\nboard face, today's path, where `evaluate` spends its time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()

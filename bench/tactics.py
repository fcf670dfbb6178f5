"""Tactics: does the policy learn to take an immediate win, and to block the opponent's single threat?

    python bench/tactics.py [--minutes 5] [--variants text board] [--size small] [--positions 40000]
    python bench/tactics.py --checkpoints RUN/checkpoints/imitation ...   # rate trained policies instead

Positions come from random Connect Four games (varied, unlike a teacher's) and are labelled by the rules:
`win` where the player to move can complete four now (target: every winning column), `block` where it
cannot but the opponent threatens to at exactly one playable cell (target: that column). The product's
policy is trained on them with the imitation stage's loss (the expert's move among the legal moves,
scored as at play time) and its optimizer and schedule, for at most `--minutes` per variant, one after
the other; its value head learns "a win is available" (1, else 0). Printed per variant, on held-out
positions: the share of wins taken and of threats blocked by the greedy move, and the value head's
ROC-AUC at telling win positions from the others.

A variant is a model face with options (`selfplay.config.ModelSection` keys): `text` is the game's prompt
read causally and scored move by move (today's default); `board` is the face `configs/game.yaml` uses:
the board's planes through a stem of 4 convolutions of 64 channels, in 3 x 3 patches (6 tokens), a
bidirectional prompt and first-token scoring; `NAME:key=value,...` changes any key, e.g.
`board:prefix=causal` or `board:stem_patch=1` (a token per cell).
"""

from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import dataclass

import numpy as np
import torch

import agents
import envs
from agents.model import patch_grid
from envs import connect_four as c4
from selfplay.config import ImitationConfig, ModelSection
from selfplay.games.imitate import Example, batch_losses
from selfplay.text.verifier import roc_auc

VARIANTS = {
    "text": {"face": "text", "prefix": "causal", "scoring": "sequence"},
    "board": {  # as configs/game.yaml sets it
        "face": "board",
        "prefix": "bidirectional",
        "scoring": "first_token",
        "stem_channels": 64,
        "stem_layers": 4,
        "stem_patch": 3,
    },
}


@dataclass(frozen=True)
class Position:
    state: envs.State
    kind: str  # "win" or "block"
    targets: tuple[int, ...]  # the right columns


def columns(cells: int) -> tuple[int, ...]:
    return tuple(c for c in range(c4.WIDTH) if cells & c4.COLUMN_MASKS[c])


def label(state) -> Position | None:
    """The position's tactic by the rules, if it has one."""
    cur, mask = state.bitboards()
    playable = c4.playable(mask)
    wins = columns(c4.winning_cells(cur, mask) & playable)
    if wins:
        return Position(state, "win", wins)
    threats = columns(c4.winning_cells(cur ^ mask, mask) & playable)
    return Position(state, "block", threats) if len(threats) == 1 else None


def positions(n: int, seed: int) -> list[Position]:
    """`n` labelled positions from random games (each position kept once)."""
    game, rng = envs.make("connect_four"), random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        state = game.new_initial_state()
        while not state.is_terminal() and len(out) < n:
            p = label(state)
            if p is not None and state.key() not in seen:
                seen.add(state.key())
                out.append(Position(state.clone(), p.kind, p.targets))
            state.apply_action(rng.choice(state.legal_actions()))
    return out


def variant(spec: str) -> tuple[str, dict]:
    name, _, rest = spec.partition(":")
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    options = dict(VARIANTS[name])
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key] = int(value) if value.isdigit() else value
    return spec, options


def examples(policy: agents.Policy, data: list[Position]) -> list[Example]:
    out = []
    for i, p in enumerate(data):
        moves = [tuple(policy.encode_move(p.state.action_to_text(a))) for a in p.targets]
        targets = tuple((m, 1 / len(moves)) for m in moves)
        prompt = policy.encode_prompt(policy.query(p.state).prompt)
        out.append(Example(prompt, list(moves[0]), float(p.kind == "win"), True, i, p.state, targets))
    return out


@torch.inference_mode()
def measure(policy: agents.Policy, held: list[Position]) -> dict[str, float]:
    policy.model.eval()
    evals = [
        e for i in range(0, len(held), 512) for e in policy.evaluate([p.state for p in held[i : i + 512]])
    ]
    right = np.array([e.best() in p.targets for e, p in zip(evals, held, strict=True)])
    kinds = np.array([p.kind for p in held])
    values = np.array([e.value for e in evals])
    return {
        "win": float(right[kinds == "win"].mean()),
        "block": float(right[kinds == "block"].mean()),
        "value_auc": roc_auc(kinds == "win", values),
    }


def train(
    options: dict,
    size: str,
    train_set: list[Position],
    held: list[Position],
    *,
    minutes: float,
    steps: int | None,
    seed: int,
) -> dict:
    """Train one variant for `steps` (or, without, for `minutes`) and measure it on `held`."""
    section = ModelSection(size=size, block_size=160, **options)
    prompts = [
        agents.Face.of(section.build(100, "connect_four")).query(p.state, ()).prompt for p in train_set
    ]
    tokenizer = agents.BPETokenizer.train(prompts[:2000] + list("abcdefg"), merges=section.merges)
    policy = agents.new_policy(
        section.build(tokenizer.vocab_size, "connect_four"), tokenizer=tokenizer, device="cpu", seed=seed
    )
    data = examples(policy, train_set)
    cfg = ImitationConfig(max_steps=100_000, lr=2e-3, warmup_steps=100)
    opt = agents.adamw(policy.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = random.Random(seed)
    start, step, order = time.perf_counter(), 0, []
    total = steps  # without, the steps the minutes allow, estimated after 50 (the schedule needs an end)
    while (step < steps) if steps else (time.perf_counter() - start < 60 * minutes):
        policy.model.train()
        if len(order) < cfg.batch_size:
            order += rng.sample(range(len(data)), len(data))
        batch, order = [data[i] for i in order[: cfg.batch_size]], order[cfg.batch_size :]
        if step == 50 and not steps:
            total = int(50 * 60 * minutes / (time.perf_counter() - start))
        for group in opt.param_groups:
            group["lr"] = agents.lr_at(
                step,
                lr=cfg.lr,
                warmup_steps=cfg.warmup_steps,
                steps=total or 100_000,
                min_lr_ratio=cfg.min_lr_ratio,
            )
        pl, vl, _ = batch_losses(policy, batch, "legal")
        opt.zero_grad(set_to_none=True)
        (pl + 0.5 * vl).backward()
        torch.nn.utils.clip_grad_norm_(policy.model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
    seconds = time.perf_counter() - start
    cfg_m = policy.model.cfg
    tokens = len(policy.encode_prompt(policy.query(held[0].state).prompt)) + math.prod(patch_grid(cfg_m))
    if cfg_m.scoring == "sequence":  # the moves ride along: 7 columns, each a token and <eos>
        tokens += 2 * c4.WIDTH
    return {
        "steps": step,
        "seconds": seconds,
        "parameters": policy.model.num_parameters(),
        "tokens": tokens,
        **measure(policy, held),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="training budget per variant")
    p.add_argument("--steps", type=int, help="a fixed number of steps per variant instead of --minutes")
    p.add_argument(
        "--variants", nargs="+", default=["text", "board"], help="e.g. text board board:prefix=causal"
    )
    p.add_argument("--size", default="small", help="model preset (the product's default: small)")
    p.add_argument("--positions", type=int, default=40_000, help="labelled positions (10%% held out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument(
        "--checkpoints",
        nargs="+",
        default=[],
        help="rate trained Connect Four checkpoints instead (no training)",
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = positions(args.positions, args.seed)
    random.Random(args.seed).shuffle(data)
    n_held = max(100, len(data) // 10)
    held, train_set = data[:n_held], data[n_held:]
    kinds = [p.kind for p in data]
    print(
        f"{len(data)} positions ({kinds.count('win')} win, {kinds.count('block')} block), {n_held} held out"
    )
    print(
        "| variant | tokens a position | parameters | steps | minutes | wins taken | threats blocked ", end=""
    )
    print("| value ROC-AUC |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for path in args.checkpoints:
        policy = agents.load(path, device="cpu")
        r = measure(policy, held)
        print(
            f"| {path} | - | {policy.model.num_parameters():,} | - | - | "
            f"{r['win']:.3f} | {r['block']:.3f} | {r['value_auc']:.3f} |",
            flush=True,
        )
    for spec in [] if args.checkpoints else args.variants:
        name, options = variant(spec)
        r = train(options, args.size, train_set, held, minutes=args.minutes, steps=args.steps, seed=args.seed)
        print(
            f"| {name} | {r['tokens']} | {r['parameters']:,} | {r['steps']} | {r['seconds'] / 60:.1f} | "
            f"{r['win']:.3f} | {r['block']:.3f} | {r['value_auc']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""Stage 1, imitation: supervised fine-tuning of the policy on expert transcripts.

Each position becomes `<bos> prompt move <eos>`; cross-entropy falls on the move's tokens only (the
prompt is context), and the value head, read at the prompt's last token, regresses the game's outcome
for the player to move. Moves marked `explored` (random, not the expert's) teach the value only.

    python -m selfplay.imitate configs/tictactoe.yaml [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter

import agents
import selfplay.core.memory as memory
import selfplay.core.rundir as rundir
from selfplay.config import Config, ConfigError, load_config
from selfplay.core.rundir import rel
from selfplay.core.training import ImitationCompute, ImitationError, KeepBest, Steps, config_hash
from selfplay.core.transcript_stage import transcripts_output, transcripts_stage
from selfplay.core.transcripts import TranscriptError
from selfplay.games.imitation_data import (
    Example,
    build_examples,
    merge_duplicates,
    prepare,
    split_games,
)
from selfplay.io import atomic_write_text

__all__ = [  # what other modules and tests take from here; the data side lives in imitation_data
    "Example",
    "ImitationError",
    "KeepBest",
    "Steps",
    "batch_losses",
    "build_examples",
    "collate",
    "config_hash",
    "evaluate_examples",
    "imitation_stage",
    "legal_losses",
    "main",
    "merge_duplicates",
    "split_games",
    "token_losses",
    "train",
]


def collate(batch: list[Example], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded inputs (B, T), targets with -100 outside the moves, and value read positions."""
    T = max(len(e.prompt) + len(e.move) for e in batch) - 1
    x = torch.full((len(batch), T), pad_id, dtype=torch.long)
    y = torch.full((len(batch), T), -100, dtype=torch.long)
    vidx = torch.empty(len(batch), dtype=torch.long)
    for i, e in enumerate(batch):
        seq = e.prompt + e.move
        x[i, : len(seq) - 1] = torch.tensor(seq[:-1])
        if e.imitate:
            y[i, len(e.prompt) - 1 : len(seq) - 1] = torch.tensor(e.move)
        vidx[i] = len(e.prompt) - 1
    value = torch.tensor([e.value for e in batch], dtype=torch.float32)
    return {k: v.to(device) for k, v in {"x": x, "y": y, "vidx": vidx, "value": value}.items()}


def token_losses(
    policy: agents.Policy, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Policy cross-entropy (mean over move tokens), value MSE, and the number of move tokens."""
    hidden, _ = policy.model(batch["x"])  # (B, T, C)
    logits = policy.model.lm_head(hidden)  # (B, T, V)
    y = batch["y"]
    n_tok = int((y != -100).sum())
    pl = (
        F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=-100)
        if n_tok
        else logits.sum() * 0
    )
    v = policy.model.value(hidden[torch.arange(len(y), device=y.device), batch["vidx"]]).float()
    return pl, F.mse_loss(v, batch["value"]), n_tok


def legal_losses(policy: agents.Policy, batch: list[Example]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Cross-entropy of the expert's move among the legal moves (scored by their text's likelihood, as
    at inference), value MSE, and the number of imitated positions. One tree-attention pass."""
    _, qs = agents.queries([e.state for e in batch], policy.face)
    texts = [q.moves for q in qs]
    cand_lp, values = policy.forward_packed(policy.pack(qs))
    starts = np.cumsum([0] + [len(t) for t in texts])
    terms = []
    for i, e in enumerate(batch):
        if e.imitate:
            logp = torch.log_softmax(cand_lp[starts[i] : starts[i + 1]], 0)
            index = {tuple(policy.encode_move(t)): k for k, t in enumerate(texts[i])}
            targets = e.targets or ((tuple(e.move), 1.0),)
            terms.append(-sum(p * logp[index[m]] for m, p in targets))
    pl = torch.stack(terms).mean() if terms else values.sum() * 0
    value = torch.tensor([e.value for e in batch], dtype=torch.float32, device=values.device)
    return pl, F.mse_loss(values, value), len(terms)


def batch_losses(
    policy: agents.Policy, batch: list[Example], loss: str
) -> tuple[torch.Tensor, torch.Tensor, int]:
    if loss == "legal":
        return legal_losses(policy, batch)
    return token_losses(policy, collate(batch, policy.tokenizer.pad_id, policy.device))


@torch.no_grad()
def evaluate_examples(
    policy: agents.Policy, examples: list[Example], *, loss: str = "tokens", batch_size: int = 256
) -> dict[str, float]:
    """Held-out metrics: move agreement with the expert (greedy, legal moves only), policy loss, value MSE
    against the MSE of always predicting the mean outcome."""
    policy.model.eval()
    imitated = [e for e in examples if e.imitate]
    agree = 0
    for i in range(0, len(imitated), batch_size):
        chunk = imitated[i : i + batch_size]
        for e, ev in zip(chunk, policy.evaluate([e.state for e in chunk]), strict=True):
            agree += policy.encode_move(e.state.action_to_text(ev.best())) == e.move
    pl_sum = v_sum = 0.0
    n_tok = 0
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        pl, vl, n = batch_losses(policy, chunk, loss)
        pl_sum += float(pl) * n
        n_tok += n
        v_sum += float(vl) * len(chunk)
    values = np.array([e.value for e in examples])
    return {
        "action_accuracy": agree / max(1, len(imitated)),
        "policy_loss": pl_sum / max(1, n_tok),
        "value_mse": v_sum / max(1, len(examples)),
        "value_mse_constant": float(values.var()),
    }


def train(
    config: Config,
    transcripts_path: str | Path,
    run_dir: Path,
    *,
    progress: bool = True,
    start: Path | None = None,
    more: Sequence[Path] = (),
    name: str = "imitation",
    meta: dict | None = None,
) -> Path:
    """Train the imitation policy; returns its checkpoint directory (the best held-out one). From the
    checkpoint `start`, continue training it on the transcripts and the games of `more` (a correction
    round, `selfplay.games.corrections`), into `RUN/checkpoints/NAME` and `RUN/NAME.json`, `meta` added to its
    checkpoint's."""
    cfg = config.imitation
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    policy, train_ex, val_ex = prepare(config, transcripts_path, start, more)
    rng = random.Random(cfg.seed)
    val_sample = rng.sample(val_ex, min(cfg.eval_positions, len(val_ex)))

    ckpt = run_dir / "checkpoints" / name
    writer = SummaryWriter(str(run_dir / "tb" / name))
    opt = agents.adamw(policy.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    keep, steps, step = KeepBest(cfg.patience), Steps(cfg, opt, len(train_ex), rng, progress=progress), 0
    tokens_seen, tok_t0, count = 0, time.perf_counter(), ImitationCompute(policy.model)
    for step, idx in steps:
        policy.model.train()
        batch = [train_ex[i] for i in idx]
        with policy.autocast():
            pl, vl, n_tok = batch_losses(policy, batch, cfg.loss)
            loss = pl + cfg.value_weight * vl
        count.add(n_tok, sum(len(e.prompt) + len(e.move) for e in batch))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.model.parameters(), cfg.grad_clip)
        opt.step()
        tokens_seen += sum(len(e.prompt) + len(e.move) for e in batch)
        if step % 20 == 0:
            elapsed = time.perf_counter() - tok_t0
            writer.add_scalar("losses/policy", pl.item(), step)
            writer.add_scalar("losses/value", vl.item(), step)
            writer.add_scalar("charts/learning_rate", steps.lr, step)
            writer.add_scalar("charts/tokens_per_second", tokens_seen / max(elapsed, 1e-9), step)
            tokens_seen, tok_t0 = 0, time.perf_counter()
        if (step + 1) % cfg.eval_every == 0 or step + 1 == steps.total:
            m = evaluate_examples(policy, val_sample, loss=cfg.loss)
            for k, v in m.items():
                writer.add_scalar(f"val/{k}", v, step + 1)
            steps.bar.set_postfix(loss=f"{m['policy_loss']:.3f}", acc=f"{m['action_accuracy']:.3f}")
            if keep.improved(-m["policy_loss"], step + 1):
                agents.save(policy, ckpt, meta={**_meta(config, step + 1, m), **(meta or {})})
            elif keep.done:
                break
    if keep.step < 0:  # stopped by the clock before the first evaluation
        m = evaluate_examples(policy, val_sample, loss=cfg.loss)
        agents.save(policy, ckpt, meta={**_meta(config, step + 1, m), **(meta or {})})
    final = agents.load(ckpt, device=cfg.device)
    metrics = evaluate_examples(final, val_ex, loss=cfg.loss)
    summary = {
        "checkpoint": rel(ckpt, run_dir),
        "step": final.meta["step"],
        "steps_run": step + 1,
        "seconds": round(time.perf_counter() - steps.start, 1),
        "train_positions": len(train_ex),
        "val_positions": len(val_ex),
        "parameters": final.model.num_parameters(),
        **count.summary(final.meta["step"]),
        **{f"val_{k}": v for k, v in metrics.items()},
        "held_out_loss": metrics["policy_loss"],
        "peak_rss_mib": memory.peak_mib(),  # of this stage
    }
    for k, v in metrics.items():
        writer.add_scalar(f"final/{k}", v, final.meta["step"])
    writer.close()
    atomic_write_text(run_dir / f"{name}.json", json.dumps(summary, indent=2) + "\n")
    return ckpt


def _meta(config: Config, step: int, metrics: dict[str, float]) -> dict:
    return {
        "game": config.game,
        "stage": "imitation",
        "step": step,
        "parent": None,
        "config_hash": config_hash(config),
        "metrics": metrics,
    }


def describe(run_dir: Path) -> str:
    s = rundir.read_json(run_dir / "imitation.json")
    return (
        f"checkpoint {s['checkpoint']} (step {s['step']}): held-out move agreement "
        f"{s['val_action_accuracy']:.3f}, value MSE {s['val_value_mse']:.3f} "
        f"(constant: {s['val_value_mse_constant']:.3f})"
    )


# --- the stage, as `selfplay.run` and `main` run it ----------------------------------------------
def stage1_outputs(config: Config, run_dir: Path) -> list[rundir.Output]:
    """What the transcripts and imitation stages write, each allowed to stay if this config made it."""
    outs = transcripts_output(config, run_dir)
    ckpt = run_dir / "checkpoints" / "imitation"
    return [*outs, rundir.made_output("an imitation checkpoint", ckpt, config_hash(config))]


def outputs(config: Config, run_dir: Path, resume: bool = False) -> list[rundir.Output]:
    """Stage 1's outputs; and with a stage-2 run in the directory (self-play or RL), only the config it
    ran with may write there (this command leaves stage 2 alone, but the config snapshot is the run's)."""
    same = rundir.same_config(run_dir, config) if (run_dir / rundir.CONFIG).exists() else True
    state, what = rundir.stage2_kind(config, run_dir)
    stage2 = rundir.stage2_outputs(run_dir, state, what=what, keep=same)
    return [*stage1_outputs(config, run_dir), *stage2]


def imitation_stage(config: Config, data: Path, run_dir: Path, *, progress: bool = True) -> Path:
    """The imitation checkpoint: trained once per configuration, reused when the run is started again."""

    def make() -> Path:
        ckpt = train(config, data, run_dir, progress=progress)
        print(f"imitation: {describe(run_dir)}")
        return ckpt

    ckpt, summary = run_dir / "checkpoints" / "imitation", run_dir / "imitation.json"
    return rundir.reuse_or_make("imitation", ckpt, summary, config_hash(config), make)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m selfplay.imitate", description="Stage 1: imitation.")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. imitation.max_steps=500")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        with rundir.opened(config, resume=False, outputs=outputs) as run_dir:
            data = transcripts_stage(config, run_dir, progress=not args.no_progress)
            imitation_stage(config, data, run_dir, progress=not args.no_progress)
    except (ConfigError, TranscriptError, ImitationError, rundir.RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

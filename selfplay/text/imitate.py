"""Stage 1 on a reward environment: imitation of the environment's expert on text transcripts.

Each turn of an expert episode becomes `<bos> prompt completion <eos>`; cross-entropy falls on the
completion's tokens and the `<eos>` that ends it (the prompt is context). Generation stops at `<eos>` or
at the env's stop string, whichever comes first.

Accuracy is always the environment's own score of greedy episodes on held-out tasks: tasks drawn from
their own seed (`held_out_tasks`) whose ids never appear in training (`TaskSampler` skips them); those
helpers, shared by every text stage, are in `selfplay/text/episodes.py`.

Config keys it reads: `env_options`; `transcripts.games`, `.seed` and `.path` (a "selfplay.text/1" file,
whose options must match `env_options`); `model.*`; and from `imitation` the optimiser, budget and
evaluation keys, `eval_positions` being the number of held-out tasks. The game-only keys
(`transcripts.expert`, `imitation.loss`, `.dedupe`, `.val_fraction`) do not apply.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter

import agents
import selfplay.core.memory as memory
import selfplay.core.rundir as rundir
from envs.reward import run_episode
from selfplay.config import Config
from selfplay.core.rundir import rel
from selfplay.core.training import ImitationCompute, ImitationError, KeepBest, Steps, config_hash
from selfplay.core.transcript_stage import load_for
from selfplay.core.transcripts import TranscriptError
from selfplay.io import atomic_write_text
from selfplay.io.labels import Correction, load_corrections
from selfplay.text.episodes import (
    accuracy,
    forward_completions,
    held_out_ids,
    held_out_tasks,
    make_env,
    max_new_tokens,
)


# --- the data ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextExample:
    prompt: list[int]  # <bos> + prompt tokens
    completion: list[int]  # completion tokens + <eos>
    task: str  # task id


def build_examples(
    records: list[dict], policy: agents.Policy, held_out: set[str], *, source: str
) -> list[TextExample]:
    """Every expert turn of every training episode (held-out tasks dropped), tokenised and checked to
    fit the context."""
    out, block = [], policy.model.cfg.block_size
    for i, r in enumerate(records, 1):
        if r["task"]["id"] in held_out:
            continue
        for turn in r["turns"]:
            try:
                ex = TextExample(
                    policy.encode_prompt(turn["prompt"]),
                    policy.encode_move(turn["completion"]),
                    r["task"]["id"],
                )
            except agents.TokenizerError as e:
                raise ImitationError(f"{source}: episode {i}: {e}") from None
            if len(ex.prompt) + len(ex.completion) > block:
                raise ImitationError(
                    f"{source}: episode {i} needs {len(ex.prompt) + len(ex.completion)} tokens; "
                    f"raise model.block_size (now {block})"
                )
            out.append(ex)
    if not out:
        raise ImitationError(f"{source}: no training episodes left once held-out tasks are removed")
    return out


def correction_examples(
    corrections: Sequence[Correction], policy: agents.Policy, held_out: set[str]
) -> list[TextExample]:
    """Corrections (`transcripts.corrections`, a correction round's) as examples, like a transcript's
    turns; a correction of a held-out task is left out, one with no task (any prompt source) kept."""
    out, block = [], policy.model.cfg.block_size
    for c in corrections:
        if c.task in held_out:
            continue
        try:
            ex = TextExample(policy.encode_prompt(c.prompt), policy.encode_move(c.completion), c.task or "")
        except agents.TokenizerError as e:
            raise ImitationError(f"{c.where}: {e}") from None
        if len(ex.prompt) + len(ex.completion) > block:
            raise ImitationError(
                f"{c.where}: needs {len(ex.prompt) + len(ex.completion)} tokens; raise model.block_size"
            )
        out.append(ex)
    return out


def token_loss(policy: agents.Policy, batch: Sequence[TextExample]) -> tuple[torch.Tensor, int]:
    """Cross-entropy, mean over the completion tokens (and their `<eos>`), and how many there were."""
    logits, tgt, _ = forward_completions(
        policy.model,
        [e.prompt for e in batch],
        [e.completion for e in batch],
        policy.tokenizer.pad_id,
        policy.device,
    )
    return F.cross_entropy(logits, tgt), len(tgt)


@torch.no_grad()
def held_out_loss(policy: agents.Policy, env, tasks, batch_size: int = 256) -> float:
    """Cross-entropy in nats per token of the expert's completions (and their `<eos>`) of held-out tasks,
    each task's episode played by the expert: what a scaling law fits."""
    was_training = policy.model.training
    policy.model.eval()
    records = [{"task": {"id": t.id}, "turns": run_episode(env, t).turns} for t in tasks]
    examples = build_examples(records, policy, set(), source="held-out tasks")
    total = n = 0
    for i in range(0, len(examples), batch_size):
        loss, k = token_loss(policy, examples[i : i + batch_size])
        total, n = total + float(loss) * k, n + k
    policy.model.train(was_training)
    return total / max(1, n)


# --- training ------------------------------------------------------------------------------------
def _new_policy(config: Config, records: list[dict]) -> agents.Policy:
    cfg = config.imitation
    if config.model.backbone == "hf":
        return config.model.pretrained(
            device=cfg.device, seed=cfg.seed, run_dir=config.run_dir, game=config.game
        )
    if config.model.tokenizer == "bpe":
        texts = [t[k] for r in records for t in r["turns"] for k in ("prompt", "completion")]
        texts += [
            t
            for f in config.transcripts.corrections
            for c in load_corrections(f)
            for t in (c.prompt, c.completion)
        ]
        tokenizer = agents.BPETokenizer.train(texts, merges=config.model.merges)
    else:
        tokenizer = agents.CharTokenizer()
    mcfg = config.model.build(tokenizer.vocab_size, config.game)
    return agents.new_policy(
        mcfg, tokenizer=tokenizer, device=cfg.device, seed=cfg.seed, meta={"game": config.game}
    )


def train(
    config: Config,
    transcripts: Path,
    run_dir: Path,
    *,
    progress: bool = True,
    start: Path | None = None,
    more: Sequence[Correction] = (),
    share: float = 0.0,
    name: str = "imitation",
    meta: dict | None = None,
) -> Path:
    """Train the text imitation policy; returns its checkpoint `RUN/checkpoints/NAME` (the best held-out
    accuracy seen; its summary `RUN/NAME.json`). From the checkpoint `start`, continue training it, the
    corrections `more` added to the data and repeated to make `share` of it (a correction round)."""
    cfg = config.imitation
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    memory.reset()
    env = make_env(config)
    try:
        records = load_for(config, transcripts)
    except TranscriptError as e:
        raise ImitationError(str(e)) from None
    policy = _new_policy(config, records) if start is None else agents.load(start, device=cfg.device)
    new_tokens = max_new_tokens(config, env)
    tasks = held_out_tasks(config, env, cfg.eval_positions)
    held_out = held_out_ids(config, env)
    examples = build_examples(records, policy, held_out, source=str(transcripts))
    given = [c for f in config.transcripts.corrections for c in load_corrections(f)]
    corrections = correction_examples(given, policy, held_out)
    rounds = correction_examples(more, policy, held_out)
    if rounds and share > 0:  # repeated to make `share` of the data
        rounds *= max(1, math.ceil(share / (1 - share) * len(examples) / len(rounds)))
    examples += corrections + rounds
    rng = random.Random(cfg.seed)
    ckpt = run_dir / "checkpoints" / name
    writer = SummaryWriter(str(run_dir / "tb" / name))
    meta = {**_meta(config), **(meta or {})}
    opt = agents.adamw(policy.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    untrained = accuracy(policy, env, tasks, max_new_tokens=new_tokens)
    keep, steps, step = KeepBest(cfg.patience), Steps(cfg, opt, len(examples), rng, progress=progress), 0
    count = ImitationCompute(policy.model)
    for step, idx in steps:
        policy.model.train()
        batch = [examples[i] for i in idx]
        with policy.autocast():
            loss, n_tok = token_loss(policy, batch)
        count.add(n_tok, sum(len(e.prompt) + len(e.completion) for e in batch))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.model.parameters(), cfg.grad_clip)
        opt.step()
        if step % 20 == 0:
            writer.add_scalar("losses/policy", loss.item(), step)
            writer.add_scalar("charts/learning_rate", steps.lr, step)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == steps.total:
            acc = accuracy(policy, env, tasks, max_new_tokens=new_tokens)
            writer.add_scalar("val/true_accuracy", acc, step + 1)
            steps.bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.3f}")
            if keep.improved(acc, step + 1):
                agents.save(policy, ckpt, meta={**meta, "step": step + 1, "metrics": {"true_accuracy": acc}})
            elif keep.done:
                break
    if keep.step < 0:  # the clock ran out before the first evaluation
        keep.improved(accuracy(policy, env, tasks, max_new_tokens=new_tokens), step + 1)
        agents.save(policy, ckpt, meta={**meta, "step": step + 1, "metrics": {"true_accuracy": keep.score}})
    best = (keep.score, keep.step)
    summary = {
        "checkpoint": rel(ckpt, run_dir),
        "step": best[1],
        "steps_run": step + 1,
        "seconds": round(time.perf_counter() - steps.start, 1),
        "train_examples": len(examples),
        "correction_examples": len(corrections),
        "round_examples": len(rounds),
        "held_out_tasks": len(tasks),
        "untrained_accuracy": untrained,
        "held_out_accuracy": best[0],
        "held_out_loss": held_out_loss(agents.load(ckpt, device=cfg.device), env, tasks),
        "parameters": policy.model.num_parameters(),
        **count.summary(best[1]),
        "peak_rss_mib": memory.peak_mib(),  # of this stage
    }
    writer.add_scalar("final/true_accuracy", best[0], best[1])
    writer.close()
    atomic_write_text(run_dir / f"{name}.json", json.dumps(summary, indent=2) + "\n")
    return ckpt


def _meta(config: Config) -> dict:
    return {
        "game": config.game,
        "env_options": dict(config.env_options),
        "stage": "imitation",
        "parent": None,
        "config_hash": config_hash(config),
    }


def imitation_stage(config: Config, transcripts: Path, run_dir: Path, *, progress: bool = True) -> Path:
    """The imitation checkpoint: trained once per configuration, reused when the run starts again."""

    def make() -> Path:
        ckpt = train(config, transcripts, run_dir, progress=progress)
        s = rundir.read_json(run_dir / "imitation.json")
        print(
            f"imitation: checkpoint {ckpt} (step {s['step']}): held-out accuracy "
            f"{s['held_out_accuracy']:.3f} on {s['held_out_tasks']} tasks "
            f"(untrained {s['untrained_accuracy']:.3f})"
        )
        return ckpt

    ckpt, summary = run_dir / "checkpoints" / "imitation", run_dir / "imitation.json"
    return rundir.reuse_or_make("imitation", ckpt, summary, config_hash(config), make)

"""The learned verifier: training, evaluation, best-of-N selection and the command line.

A verifier (`agents.Verifier`) scores (prompt, completion) with a logit r; trained here on either or both of

- labelled completions (pointwise, an outcome verifier): binary cross-entropy of sigmoid(r) against the
  label, the environment's own score of the completion;
- comparisons (pairwise, the reward model of RLHF): the Bradley-Terry loss
  -log sigmoid(r_chosen - r_rejected);

and optionally (`lm_weight`) next-token cross-entropy on the completions known to be good, so that the
network keeps knowing what a right answer is; a verifier made with `likelihood=` reads that knowledge
into its logit through its language model's log-likelihood of the completion (see `agents.verifier`).

Used three ways: as the reward for RL where no programmatic score is given or trusted (`Verifier.score`),
to pick the best of N samples at inference (`best_of_n`), and as a monitor of how often it disagrees with
a true score (`disagreement`).

Its data (labelled completions and comparisons, their JSONL files, and making them from a policy's
samples) lives in `selfplay.text.verifier.data`; ROC-AUC, disagreement and `Metrics` in
`selfplay.text.verifier.metrics`. Every public name of the two is importable from here too.

    python -m selfplay.verifier train --data labelled.jsonl [--pairs comparisons.jsonl] --out DIR \
        [--policy CKPT] [--steps 500] [--lm-weight 0] [--likelihood] [--tb DIR]
    python -m selfplay.verifier eval --verifier DIR --data heldout.jsonl [--pairs comparisons.jsonl]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import agents
from selfplay.text.verifier.data import (
    Comparison,
    Labelled,
    Sampler,
    VerifierDataError,
    label_completions,
    load_comparisons,
    load_labelled,
    make_pairs,
    sample,
    save_records,
)
from selfplay.text.verifier.metrics import Disagreement, Metrics, disagreement, roc_auc

__all__ = [
    "Comparison",
    "Disagreement",
    "Labelled",
    "Metrics",
    "Sampler",
    "TrainResult",
    "VerifierDataError",
    "best_of_n",
    "disagreement",
    "evaluate",
    "label_completions",
    "load_comparisons",
    "load_labelled",
    "main",
    "make_pairs",
    "roc_auc",
    "sample",
    "save_records",
    "split_prompts",
    "train",
]


# --- encoding, losses and evaluation -------------------------------------------------------------
Pair = tuple[agents.Encoded, agents.Encoded]  # encoded (chosen, rejected)


def _losses(
    verifier: agents.Verifier,
    point: list[agents.Encoded],
    labels: torch.Tensor,
    pairs: list[Pair],
    lm: Sequence[int] = (),
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """BCE over labelled completions, Bradley-Terry over pairs and next-token cross-entropy over the
    completion tokens of the sequences `lm` names (indices into point + chosen); None where there are
    none. One forward pass over all the sequences."""
    n, m = len(point), len(pairs)
    items = point + [c for c, _ in pairs] + [r for _, r in pairs]
    hidden = verifier.hidden([ids for ids, _ in items])  # (N + 2M, T, C)
    r = verifier.head(hidden, items)  # (N + 2M,)
    margins = r[n : n + m] - r[n + m :]  # (M,) r_chosen - r_rejected
    point_loss = F.binary_cross_entropy_with_logits(r[:n], labels) if n else None
    pair_loss = -F.logsigmoid(margins).mean() if m else None
    lm_loss = None
    if lm:
        chosen = [items[i] for i in lm]
        logp = verifier.completion_logprob(hidden[list(lm)], chosen)  # (L,)
        lm_loss = -logp.sum() / sum(len(ids) - start for ids, start in chosen)  # per token
    return point_loss, pair_loss, lm_loss


@torch.no_grad()
def _logits(verifier: agents.Verifier, items: list[agents.Encoded], batch_size: int = 256) -> np.ndarray:
    chunks = [
        verifier.forward(items[i : i + batch_size]).cpu().numpy() for i in range(0, len(items), batch_size)
    ]
    return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)


def _evaluate(
    verifier: agents.Verifier, point: list[agents.Encoded], labels: np.ndarray, pairs: list[Pair]
) -> Metrics:
    was_training = verifier.model.training
    verifier.model.eval()
    r = _logits(verifier, point)  # (N,)
    margins = _logits(verifier, [c for c, _ in pairs]) - _logits(verifier, [r for _, r in pairs])  # (M,)
    verifier.model.train(was_training)
    nan = math.nan
    bce = float(np.mean(np.logaddexp(0, r) - labels * r)) if point else nan  # -y log p - (1-y) log(1-p)
    bt = float(np.mean(np.logaddexp(0, -margins))) if pairs else nan  # -log sigmoid(margin)
    return Metrics(
        loss=float(np.nansum([bce, bt])) if point or pairs else nan,
        pointwise_loss=bce,
        pairwise_loss=bt,
        roc_auc=roc_auc(labels, r) if point else nan,
        accuracy=float(((r >= 0) == (labels >= 0.5)).mean()) if point else nan,
        pairwise_accuracy=float((margins > 0).mean() + 0.5 * (margins == 0).mean()) if pairs else nan,
        n_labelled=len(point),
        n_pairs=len(pairs),
    )


def _encode(
    verifier: agents.Verifier, pointwise: Sequence[Labelled], pairwise: Sequence[Comparison]
) -> tuple[list[agents.Encoded], np.ndarray, list[Pair]]:
    """Token ids of every record (strict: a character outside the vocabulary is an error naming it)."""

    def enc(prompt: str, completion: str, r: Labelled | Comparison, i: int) -> agents.Encoded:
        try:
            return verifier.encode_parts(prompt, completion, strict=True)
        except agents.TokenizerError as e:
            raise VerifierDataError(f"{r.where or f'record {i + 1}'}: {e}") from None

    point = [enc(r.prompt, r.completion, r, i) for i, r in enumerate(pointwise)]
    labels = np.array([r.label for r in pointwise], dtype=np.float32)
    pairs = [(enc(r.prompt, r.chosen, r, i), enc(r.prompt, r.rejected, r, i)) for i, r in enumerate(pairwise)]
    return point, labels, pairs


def evaluate(
    verifier: agents.Verifier,
    *,
    pointwise: Sequence[Labelled] = (),
    pairwise: Sequence[Comparison] = (),
) -> Metrics:
    """Metrics of `verifier` on labelled completions and/or comparisons."""
    return _evaluate(verifier, *_encode(verifier, pointwise, pairwise))


# --- training ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainResult:
    initial: Metrics  # held-out, before training
    final: Metrics  # held-out, of the weights kept
    steps: int
    seconds: float
    train_labelled: int
    train_pairs: int
    best_step: int = 0  # the step whose weights were kept (`keep_best`), else `steps`


def split_prompts(prompts: Sequence[str], val_fraction: float, seed: int) -> set[str]:
    """The held-out prompts: a `val_fraction` of the distinct ones (at least one), so that no prompt is on
    both sides of the split."""
    distinct = sorted(set(prompts))
    if len(distinct) < 2:
        raise VerifierDataError(
            f"a held-out split needs at least 2 distinct prompts, the data has {len(distinct)}"
        )
    random.Random(seed).shuffle(distinct)
    return set(distinct[: min(len(distinct) - 1, max(1, round(len(distinct) * val_fraction)))])


def _split(
    pointwise, pairwise, val_fraction: float, seed: int, held_out: Collection[str] | None = None
) -> tuple[tuple[list[int], list[int]], ...]:
    """Indices of the training and held-out records, labelled ones then comparisons: those of the prompts
    `held_out`, or of a `val_fraction` of all prompts (`split_prompts`)."""
    if held_out is None:
        held_out = split_prompts([r.prompt for r in pointwise + pairwise], val_fraction, seed)
    held_out = set(held_out)
    out = tuple(
        (
            [i for i, r in enumerate(records) if r.prompt not in held_out],
            [i for i, r in enumerate(records) if r.prompt in held_out],
        )
        for records in (pointwise, pairwise)
    )
    if not out[0][0] and not out[1][0]:
        raise VerifierDataError("every record's prompt is held out; lower val_fraction or add prompts")
    return out


KNOBS = ("steps", "batch_size", "lr", "lm_weight", "val_fraction", "seed")
"""`train`'s knobs that the `verifier` config section and the command line both set, by the same names."""


def knobs(source: Any) -> dict[str, Any]:
    """`train`'s `KNOBS` read from `source` (the `verifier` config section, or parsed arguments)."""
    return {k: getattr(source, k) for k in KNOBS}


def train(
    verifier: agents.Verifier,
    *,
    pointwise: Sequence[Labelled] | None = None,
    pairwise: Sequence[Comparison] | None = None,
    steps: int = 500,
    batch_size: int = 64,  # labelled completions a step, and as many comparisons (each kind given)
    lr: float = 2e-3,  # peak
    weight_decay: float = 0.01,  # AdamW, matrices only
    warmup_steps: int = 20,
    min_lr_ratio: float = 0.1,
    grad_clip: float = 1.0,
    lm_weight: float = 0.0,  # of the language-modelling loss on right completions
    val_fraction: float = 0.1,  # of the distinct prompts, held out
    eval_every: int = 100,
    seed: int = 0,
    keep_best: bool = True,
    held_out: Collection[str] | None = None,  # the validation prompts, where not drawn by `val_fraction`
    writer=None,  # a TensorBoard SummaryWriter (anything with add_scalar), or None
    progress: bool = True,
) -> TrainResult:
    """Train `verifier` in place: BCE on labelled completions plus Bradley-Terry on comparisons, whichever
    is given, with AdamW and warm-up + cosine; metrics on prompts held out of training.

    `lm_weight` adds next-token cross-entropy on the completions known to be good (label >= 0.5, and the
    chosen side of comparisons), the joint objective of Cobbe et al. (2021, "Training verifiers to solve
    math word problems"): fine-tuning the scalar head alone wears away what the network knew of the right
    answers, which is most of what judging them takes.

    `keep_best` ends with the weights of the evaluation with the best held-out ROC-AUC (pairwise accuracy
    without labelled completions): long runs keep sharpening comparisons while their scores drift out of
    calibration across prompts, which is what a reward read across prompts needs.

    (Long for its knobs, one documented line each, and this text: the body is one loop of under 80 lines.)"""
    pointwise, pairwise = list(pointwise or ()), list(pairwise or ())
    if not pointwise and not pairwise:
        raise VerifierDataError("no training data: give labelled completions, comparisons or both")
    if steps < 1 or batch_size < 1 or not 0.0 < val_fraction < 1.0 or lm_weight < 0:
        raise ValueError(
            f"need steps >= 1, batch_size >= 1, 0 < val_fraction < 1 and lm_weight >= 0; "
            f"got {steps}, {batch_size}, {val_fraction} and {lm_weight}"
        )
    point, labels, pairs = _encode(verifier, pointwise, pairwise)
    (tp, vp), (tc, vc) = _split(pointwise, pairwise, val_fraction, seed, held_out)
    if not vp and not vc:
        raise VerifierDataError("no record's prompt is held out: nothing to validate on")

    def validate() -> Metrics:
        return _evaluate(verifier, [point[i] for i in vp], labels[vp], [pairs[i] for i in vc])

    torch.manual_seed(seed)
    rng = random.Random(seed)
    initial = validate()
    measured = {0: initial}  # step -> the held-out metrics of its weights
    params = verifier.parameters()
    opt = agents.adamw(params, lr=lr, weight_decay=weight_decay)
    queues: dict[str, list[int]] = {"point": [], "pair": []}

    def draw(kind: str, pool: list[int]) -> list[int]:  # epochs of shuffled indices
        q = queues[kind]
        while pool and len(q) < batch_size:
            q += rng.sample(pool, len(pool))
        out, queues[kind] = q[:batch_size], q[batch_size:]
        return out

    def quality(m: Metrics) -> float:
        x = m.roc_auc if vp else m.pairwise_accuracy
        return -math.inf if math.isnan(x) else x

    best = (quality(initial), 0, verifier.state())
    start = time.perf_counter()
    bar = tqdm(total=steps, desc="verifier", unit="step", disable=not progress)
    for step in range(steps):
        verifier.model.train()
        ip, ic = draw("point", tp), draw("pair", tc)
        y = torch.as_tensor(labels[ip], device=verifier.device)
        rate = agents.lr_at(step, lr=lr, warmup_steps=warmup_steps, steps=steps, min_lr_ratio=min_lr_ratio)
        for group in opt.param_groups:
            group["lr"] = rate
        lm = []
        if lm_weight:  # indices into the batch's point + chosen sequences
            lm = [k for k, i in enumerate(ip) if labels[i] >= 0.5] + [len(ip) + k for k in range(len(ic))]
        point_loss, pair_loss, lm_loss = _losses(
            verifier, [point[i] for i in ip], y, [pairs[i] for i in ic], lm
        )
        loss = sum(x for x in (point_loss, pair_loss) if x is not None)
        if lm_loss is not None:
            loss = loss + lm_weight * lm_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        bar.update()
        if writer is not None and step % 10 == 0:
            losses = {"total": loss, "pointwise": point_loss, "pairwise": pair_loss, "lm": lm_loss}
            for k, x in losses.items():
                if x is not None:
                    writer.add_scalar(f"losses/{k}", x.item(), step)
            writer.add_scalar("charts/learning_rate", rate, step)
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            m = measured[step + 1] = validate()
            if writer is not None:
                for k, v in asdict(m).items():
                    if not k.startswith("n_") and not math.isnan(v):
                        writer.add_scalar(f"val/{k}", v, step + 1)
            bar.set_postfix(loss=f"{m.loss:.3f}", auc=f"{m.roc_auc:.3f}")
            if keep_best and quality(m) > best[0]:
                best = (quality(m), step + 1, verifier.state())
    bar.close()
    kept = steps
    if keep_best and best[1] != steps:
        verifier.load_state(best[2])
        kept = best[1]
    verifier.model.eval()
    final = measured[kept]  # validation is deterministic: the kept weights' metrics, not measured twice
    seconds = round(time.perf_counter() - start, 2)
    return TrainResult(initial, final, steps, seconds, len(tp), len(tc), best_step=kept)


# --- using it ------------------------------------------------------------------------------------
def best_of_n(
    policy: Sampler, verifier: agents.Verifier, prompts: Sequence[str], n: int, **sampling
) -> list[str]:
    """For each prompt, the one of `n` sampled completions the verifier scores highest (first on a tie);
    `sampling` as for `sample` (seed, temperature, max_new_tokens, top_k, stop)."""
    samples = sample(policy, prompts, n, **sampling)
    flat = [c for cs in samples for c in cs]
    scores = verifier.score([p for p in prompts for _ in range(n)], flat).reshape(len(prompts), n)
    return [cs[int(np.argmax(s))] for cs, s in zip(samples, scores, strict=True)]


# --- command line --------------------------------------------------------------------------------
def _describe(m: Metrics) -> str:
    parts = []
    if m.n_labelled:
        parts.append(
            f"ROC-AUC {m.roc_auc:.4f}, accuracy {m.accuracy:.4f}, BCE {m.pointwise_loss:.4f} "
            f"on {m.n_labelled} completions"
        )
    if m.n_pairs:
        parts.append(
            f"pairwise accuracy {m.pairwise_accuracy:.4f}, BT loss {m.pairwise_loss:.4f} on {m.n_pairs} pairs"
        )
    return "; ".join(parts)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m selfplay.verifier", description="Train or evaluate a verifier."
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a verifier on labelled completions and/or comparisons")
    t.add_argument("--data", help="labelled completions JSONL")
    t.add_argument("--pairs", help="comparisons JSONL")
    t.add_argument("--out", required=True, help="verifier checkpoint directory (written atomically)")
    t.add_argument("--policy", help="policy checkpoint to start from (its weights and tokenizer)")
    t.add_argument(
        "--size", default="nano", help=f"model preset without --policy: {', '.join(agents.PRESETS)}"
    )
    t.add_argument("--block-size", type=int, default=256, help="context without --policy")
    t.add_argument("--steps", type=int, default=500)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument(
        "--lm-weight", type=float, default=0.0, help="language-modelling loss on right completions, beside"
    )
    t.add_argument(
        "--likelihood",
        action="store_true",
        help="add the completion's log-likelihood to the logit (learned weight)",
    )
    t.add_argument("--val-fraction", type=float, default=0.1, help="fraction of prompts held out")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--tb", help="TensorBoard directory (none by default)")
    t.add_argument("--no-progress", action="store_true")
    e = sub.add_parser("eval", help="score held-out data with a trained verifier")
    e.add_argument("--verifier", required=True, help="verifier checkpoint directory")
    e.add_argument("--data", help="labelled completions JSONL")
    e.add_argument("--pairs", help="comparisons JSONL")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if not args.data and not args.pairs:
        p.error("give --data, --pairs or both")
    try:
        pointwise = load_labelled(args.data) if args.data else []
        pairwise = load_comparisons(args.pairs) if args.pairs else []
        if args.command == "eval":
            m = evaluate(
                agents.load_verifier(args.verifier, device=args.device),
                pointwise=pointwise,
                pairwise=pairwise,
            )
            print(json.dumps(asdict(m)) if args.json else f"{args.verifier}: {_describe(m)}")
            return 0
        likelihood = 0.0 if args.likelihood else None
        if args.policy:
            verifier = agents.Verifier.from_policy(
                agents.load(args.policy, device=args.device), seed=args.seed, likelihood=likelihood
            )
        else:
            tok = agents.CharTokenizer()
            cfg = agents.ModelConfig.preset(args.size, vocab_size=tok.vocab_size, block_size=args.block_size)
            verifier = agents.new_verifier(
                cfg, tokenizer=tok, device=args.device, seed=args.seed, likelihood=likelihood
            )
        writer = None
        if args.tb:
            writer = SummaryWriter(args.tb)
        progress = not args.no_progress
        result = train(
            verifier, pointwise=pointwise, pairwise=pairwise, writer=writer, progress=progress, **knobs(args)
        )
        if writer is not None:
            writer.close()
        meta = {
            "stage": "verifier",
            "step": result.best_step,
            "parent": args.policy,
            "data": args.data,
            "pairs": args.pairs,
            "metrics": asdict(result.final),
        }
        agents.save_verifier(verifier, args.out, meta=meta)
    except (VerifierDataError, agents.CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"verifier {args.out} ({result.steps} steps, {result.seconds:.1f} s): "
        f"held out {_describe(result.final)}"
    )
    return 0

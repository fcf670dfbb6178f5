"""Numbers about a verifier, from its scores: ROC-AUC, disagreement with a true score, and the `Metrics`
that `selfplay.text.verifier.evaluate` reports. Plain numpy: no model needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def roc_auc(labels: Sequence[float], scores: Sequence[float]) -> float:
    """Area under the ROC curve: the chance that a random positive (label >= 0.5) scores above a random
    negative, ties counting half (Mann-Whitney U from average ranks). NaN when a class is absent.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y = np.asarray(labels, dtype=np.float64) >= 0.5
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must be two vectors of one length")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(s, kind="stable")
    _, first, counts = np.unique(s[order], return_index=True, return_counts=True)
    ranks = np.empty(len(s))
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)  # 1-based, averaged over ties
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


@dataclass(frozen=True)
class Disagreement:
    """How often the verifier's verdict (score >= threshold) differs from the true one."""

    rate: float  # over all completions
    false_accept: float  # among truly wrong completions, the fraction the verifier accepts
    false_reject: float  # among truly right completions, the fraction the verifier rejects
    n: int


def disagreement(
    verifier_scores: Sequence[float], true_scores: Sequence[float], threshold: float = 0.5
) -> Disagreement:
    """Monitor a verifier against a true score (NaN for a rate over no completions)."""
    v = np.asarray(verifier_scores, dtype=np.float64) >= threshold
    t = np.asarray(true_scores, dtype=np.float64) >= threshold
    if v.shape != t.shape:
        raise ValueError(f"{v.size} verifier scores but {t.size} true scores")

    def mean(x: np.ndarray) -> float:
        return float(x.mean()) if x.size else math.nan

    return Disagreement(mean(v != t), mean(v[~t]), mean(~v[t]), int(v.size))


@dataclass(frozen=True)
class Metrics:
    """A verifier on labelled completions and comparisons (NaN where there are none)."""

    loss: float  # pointwise_loss + pairwise_loss, over the kinds present
    pointwise_loss: float  # binary cross-entropy, mean over labelled completions
    pairwise_loss: float  # Bradley-Terry -log sigmoid(r_chosen - r_rejected), mean over comparisons
    roc_auc: float  # of the scores against labels >= 0.5
    accuracy: float  # (score >= 0.5) == (label >= 0.5)
    pairwise_accuracy: float  # r_chosen > r_rejected, ties counting half
    n_labelled: int
    n_pairs: int

"""Scaling laws: held-out loss as a function of parameters N and training tokens D, fitted in the
Chinchilla form (Hoffmann et al. 2022, their approach 3)

    L(N, D) = E + A / N^alpha + B / D^beta,

the compute-optimal split of a budget C = 6 N D that follows from it, strength (Elo) against log-compute,
bootstrap intervals on every exponent, and the prediction of the largest runs from the smaller ones.

The fit minimises the Huber loss (delta 1e-3) of log L against log-sum-exp(a - alpha log N, b - beta log D,
e) over a grid of starting points with L-BFGS, as Hoffmann et al. do: residuals in log space weigh every
point alike, and Huber keeps one bad run from pulling the law.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize

EXPONENTS = ("alpha", "beta")


@dataclass(frozen=True)
class Law:
    """L(N, D) = E + A / N^alpha + B / D^beta."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float

    def loss(self, N, D) -> np.ndarray:
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        return self.E + self.A / N**self.alpha + self.B / D**self.beta

    @property
    def a(self) -> float:
        """N_opt grows as C^a."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """D_opt grows as C^b (a + b = 1)."""
        return self.alpha / (self.alpha + self.beta)

    def optimal(self, C) -> tuple[np.ndarray, np.ndarray]:
        """The N and D minimising L at the compute C = 6 N D (Hoffmann et al., eq. 4)."""
        C = np.asarray(C, dtype=float)
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))
        return G * (C / 6) ** self.a, (C / 6) ** self.b / G

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "a": self.a, "b": self.b}

    def start(self) -> tuple[float, ...]:
        """The law as a starting point of `fit_loss` (log A, log B, log E, alpha, beta)."""
        return (math.log(self.A), math.log(self.B), math.log(self.E), self.alpha, self.beta)


def _huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss of each residual and its derivative."""
    small = np.abs(r) <= delta
    return (
        np.where(small, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta)),
        np.where(small, r, delta * np.sign(r)),
    )


def fit_loss(
    N: Sequence[float], D: Sequence[float], L: Sequence[float], *, delta: float = 1e-3, starts=None
) -> Law:
    """The Chinchilla law through the points (N_i, D_i, L_i): Huber on log-loss, the best of L-BFGS runs
    from the 8 best of `starts` (a, b, e, alpha, beta each; default a grid of 128)."""

    logN, logD = np.log(np.asarray(N, dtype=float)), np.log(np.asarray(D, dtype=float))
    logL = np.log(np.asarray(L, dtype=float))
    if not (len(logN) == len(logD) == len(logL)) or len(logL) < 5:
        raise ValueError(f"a fit of 5 parameters needs at least 5 points of N, D and L; got {len(logL)}")
    if not np.isfinite(np.concatenate([logN, logD, logL])).all():
        raise ValueError("N, D and L must be positive and finite")

    def objective(p: np.ndarray) -> tuple[float, np.ndarray]:
        a, b, e, alpha, beta = p
        terms = np.stack([a - alpha * logN, b - beta * logD, np.full_like(logN, e)])
        top = terms.max(0)
        w = np.exp(terms - top)
        lse = top + np.log(w.sum(0))
        soft = w / w.sum(0)  # d lse / d term
        h, dh = _huber(lse - logL, delta)
        grad = np.array(
            [
                (dh * soft[0]).sum(),
                (dh * soft[1]).sum(),
                (dh * soft[2]).sum(),
                (dh * soft[0] * -logN).sum(),
                (dh * soft[1] * -logD).sum(),
            ]
        )
        return float(h.sum()), grad

    if starts is None:
        lo = float(logL.min())
        starts = list(
            itertools.product((0, 5, 10, 20), (0, 5, 10, 20), (lo - 1, lo - 0.2), (0.3, 1), (0.3, 1))
        )
    best = None
    starts = sorted(starts, key=lambda p: objective(np.asarray(p, dtype=float))[0])[:8]  # the grid's best
    for start in starts:
        r = minimize(objective, np.asarray(start, dtype=float), jac=True, method="L-BFGS-B", bounds=_BOUNDS)
        if best is None or r.fun < best.fun:
            best = r
    a, b, e, alpha, beta = best.x
    return Law(E=math.exp(e), A=math.exp(a), alpha=float(alpha), B=math.exp(b), beta=float(beta))


_BOUNDS = [(-20, 60), (-20, 60), (-20, 10), (1e-3, 3.0), (1e-3, 3.0)]  # a, b, e, alpha, beta


def bootstrap(
    fit: Callable[[np.ndarray], dict[str, float]], n_points: int, *, samples: int = 200, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of each value `fit(indices)` returns, over `samples` resamples of the
    points with replacement (resamples with fewer than 5 distinct points are drawn again)."""
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {}
    done = 0
    while done < samples:
        idx = rng.integers(0, n_points, n_points)
        if len(set(idx.tolist())) < 5:
            continue
        for k, v in fit(idx).items():
            values.setdefault(k, []).append(v)
        done += 1
    return {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for k, v in values.items()}


def law_intervals(
    N, D, L, *, samples: int = 200, seed: int = 0
) -> tuple[Law, dict[str, tuple[float, float]]]:
    """The law of all points, and bootstrap intervals on its parameters and the compute-optimal exponents
    a and b (each resample's fit starts from the law of all points, and a few other places)."""
    N, D, L = (np.asarray(x, dtype=float) for x in (N, D, L))
    full = fit_loss(N, D, L)
    lo = float(np.log(L).min())
    starts = [full.start(), *itertools.product((0, 10), (0, 10), (lo - 0.5,), (0.3, 1), (0.3,))]
    fit = lambda i: fit_loss(N[i], D[i], L[i], starts=starts).to_dict()  # noqa: E731
    return full, bootstrap(fit, len(L), samples=samples, seed=seed)


@dataclass(frozen=True)
class Prediction:
    """A point left out of the fit, and what the law of the others says of it."""

    index: int
    N: float
    D: float
    actual: float
    predicted: float

    @property
    def relative_error(self) -> float:
        return abs(self.predicted - self.actual) / self.actual

    def within(self, rel: float = 0.05, nats: float = 0.02) -> bool:
        """Within `rel` relative error or `nats` absolute, whichever is larger."""
        return abs(self.predicted - self.actual) <= max(rel * self.actual, nats)


def predict_largest(N, D, L, k: int = 2) -> tuple[Law, list[Prediction]]:
    """The law of all points but the `k` with the largest N x D, and its predictions of those `k`."""
    N, D, L = (np.asarray(x, dtype=float) for x in (N, D, L))
    order = np.argsort(N * D)
    held, kept = order[-k:], order[:-k]
    law = fit_loss(N[kept], D[kept], L[kept])
    preds = [Prediction(int(i), N[i], D[i], L[i], float(law.loss(N[i], D[i]))) for i in held]
    return law, preds


def fit_log_linear(x, y) -> tuple[float, float]:
    """(intercept, slope) of y = intercept + slope * log10(x), least squares (Elo against compute)."""
    x, y = np.log10(np.asarray(x, dtype=float)), np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        raise ValueError("a line needs at least two distinct x")
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(slope)


def exchange_rate(train, test, elo) -> dict[str, float]:
    """Elo = c + p log10(train compute) + q log10(test compute), least squares: along an iso-Elo contour,
    10x train compute is worth 10^(p/q) x test compute (`rate`), as Jones (2021) measures it."""
    X = np.column_stack([np.ones(len(elo)), np.log10(train), np.log10(test)])
    (c, p, q), *_ = np.linalg.lstsq(X, np.asarray(elo, dtype=float), rcond=None)
    return {
        "intercept": float(c),
        "train_slope": float(p),
        "test_slope": float(q),
        "rate": float(10 ** (p / q)),
    }

"""Ratings from game results: Bradley-Terry maximum likelihood on the Elo scale, with bootstrap intervals.

Pure functions over results, each `(a, b, score)`: the score of `a` against `b` (1 win, 0.5 draw, 0 loss).

    >>> import selfplay.arena.ratings as ratings
    >>> round(ratings.fit([("a", "b", 1.0)] * 3 + [("a", "b", 0.0)], anchor="b", prior=0)["a"], 1)
    190.8

The model: P(a beats b) = 1 / (1 + 10 ** ((elo_b - elo_a) / 400)); a draw counts as half a win and half a
loss. The fit maximises the likelihood by Newton's method (the log-likelihood is concave, so a step
halving line search always converges). A player who won (or lost) every game has no finite maximum, so by
default every pair that met gets `prior` = 1 virtual drawn game (as BayesElo does): ratings stay finite and
are pulled slightly together, by an amount that fades as real games accumulate. `prior=0` is the plain MLE.

Ratings are relative: they are anchored so `anchor` (default `random`) sits at `anchor_elo`; without that
player the mean rating is put there instead (`anchoring` says which, for the table). Confidence intervals
resample the games with replacement and refit (percentile bootstrap); they are relative to the anchor, so
the anchor's own interval is a point. Players never connected by games cannot be compared: an error.

Arena votes of the labelling workbench (`selfplay.io.labels`) are results too, a tie or "both bad" a
draw; the command rates the models of votes files:

    python -m selfplay.ratings runs/labels/votes.jsonl [more.jsonl ...] [--out DIR]    # ratings.md/.csv/.png
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import numpy as np

from selfplay.io import atomic_open, atomic_write_text
from selfplay.io.labels import LabelFileError, load_votes, vote_results

__all__ = [
    "RatingsError",
    "Result",
    "Row",
    "anchoring",
    "bootstrap",
    "expected_score",
    "fit",
    "groups",
    "league_table",
    "plot_elo_by_budget",
    "plot_elo_by_step",
    "plot_league",
    "pyplot",
    "save_png",
    "to_csv",
    "to_markdown",
    "vote_ratings",
    "write_table",
]

Result = tuple[str, str, float]
"""(player a, player b, score of a): 1 a won, 0.5 draw, 0 b won."""

ELO = 400 / math.log(10)  # Elo points per unit of natural log-strength


class RatingsError(ValueError):
    """Results that determine no ratings (no games, unconnected players, no finite maximum)."""


def expected_score(elo_a: float, elo_b: float) -> float:
    """The expected score of a player rated `elo_a` against one rated `elo_b`."""
    return 1.0 / (1.0 + 10 ** ((elo_b - elo_a) / 400))


# --- the fit ----------------------------------------------------------------------------------------
def _index(results: Sequence[Result]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    names = sorted({r[0] for r in results} | {r[1] for r in results})
    at = {n: i for i, n in enumerate(names)}
    a = np.array([at[r[0]] for r in results], dtype=np.int64)
    b = np.array([at[r[1]] for r in results], dtype=np.int64)
    s = np.array([float(r[2]) for r in results], dtype=np.float64)
    if np.any((s < 0) | (s > 1)) or any(r[0] == r[1] for r in results):
        raise RatingsError("a result is (a, b, score) with a != b and score in [0, 1]")
    return names, a, b, s


def _tally(n: int, a: np.ndarray, b: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Games played N[i, j] (symmetric) and score S[i, j] of i against j, both (n, n)."""
    N = np.zeros((n, n))
    S = np.zeros((n, n))
    np.add.at(N, (a, b), 1.0)
    np.add.at(N, (b, a), 1.0)
    np.add.at(S, (a, b), s)
    np.add.at(S, (b, a), 1.0 - s)
    return N, S


def _components(N: np.ndarray) -> list[list[int]]:
    seen: set[int] = set()
    groups = []
    for start in range(len(N)):
        if start in seen:
            continue
        group, todo = [], [start]
        seen.add(start)
        while todo:
            i = todo.pop()
            group.append(i)
            for j in np.flatnonzero(N[i]):
                if int(j) not in seen:
                    seen.add(int(j))
                    todo.append(int(j))
        groups.append(sorted(group))
    return groups


def groups(results: Sequence[Result]) -> list[set[str]]:
    """The players split into groups connected by games (one group when all can be rated together)."""
    names, a, b, s = _index(results)
    N, _ = _tally(len(names), a, b, s)
    return [{names[i] for i in g} for g in _components(N)]


def _loglik(theta: np.ndarray, S: np.ndarray) -> float:
    diff = theta[:, None] - theta[None, :]
    return float(-(S * np.logaddexp(0.0, -diff)).sum())  # sum S_ij log sigmoid(theta_i - theta_j)


def _solve(N: np.ndarray, S: np.ndarray, *, max_iter: int = 100, tol: float = 1e-10) -> np.ndarray | None:
    """Log-strengths (n,) maximising the Bradley-Terry likelihood with theta[0] = 0; None if unbounded."""
    n = len(N)
    theta = np.zeros(n)
    ll = _loglik(theta, S)
    for _ in range(max_iter):
        P = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))  # (n, n) P(i beats j)
        grad = (S - N * P).sum(1)  # (n,)
        W = N * P * (1.0 - P)
        H = W - np.diag(W.sum(1))  # (n, n) Hessian, negative semidefinite; fix theta[0] to make it definite
        step = np.zeros(n)
        try:
            step[1:] = np.linalg.solve(-H[1:, 1:], grad[1:])
        except np.linalg.LinAlgError:
            return None
        t = 1.0
        while t > 1e-6:  # backtracking: the log-likelihood is concave, so some step length increases it
            new = theta + t * step
            new_ll = _loglik(new, S)
            if new_ll >= ll - 1e-12:
                break
            t /= 2
        theta, ll = new, new_ll
        if np.max(np.abs(t * step)) < tol:
            return theta
    return None


def _fit_arrays(names, a, b, s, *, prior: float) -> np.ndarray:
    """Log-strengths (n,) of `names`, mean zero."""
    n = len(names)
    if n < 2:
        raise RatingsError(f"ratings need games between at least two players, got {n}")
    N, S = _tally(n, a, b, s)
    groups = _components(N)
    if len(groups) > 1:
        listed = "; ".join(", ".join(names[i] for i in g) for g in groups)
        raise RatingsError(f"players fall into groups that never met, so cannot be rated together: {listed}")
    met = N > 0
    N, S = N + prior * met, S + 0.5 * prior * met  # `prior` virtual draws per pair that met
    if prior <= 0:
        total, score = N.sum(1), S.sum(1)
        extreme = [names[i] for i in range(n) if score[i] in (0.0, total[i])]
        if extreme:
            raise RatingsError(
                f"no finite ratings: {', '.join(extreme)} won or lost every game; use prior > 0"
            )
    theta = _solve(N, S)
    if theta is None:
        raise RatingsError("no finite maximum-likelihood ratings for these results; use prior > 0")
    return theta - theta.mean()


def _to_elo(names: list[str], theta: np.ndarray, anchor: str | None, anchor_elo: float) -> np.ndarray:
    elo = ELO * theta
    shift = elo[names.index(anchor)] if anchor in names else elo.mean()
    return elo - shift + anchor_elo


def anchoring(names: Iterable[str], anchor: str | None = "random", anchor_elo: float = 0.0) -> str:
    """How ratings over `names` are anchored, in words (for the table)."""
    if anchor is not None and anchor in set(names):
        return f"Elo anchored at {anchor} = {anchor_elo:g}"
    missing = f"{anchor} did not play, so " if anchor is not None else ""
    return f"{missing}Elo anchored at the mean rating = {anchor_elo:g}"


def fit(
    results: Sequence[Result], *, anchor: str | None = "random", anchor_elo: float = 0.0, prior: float = 1.0
) -> dict[str, float]:
    """Bradley-Terry maximum-likelihood Elo of every player in `results` (see the module docstring)."""
    if not results:
        raise RatingsError("no games to rate")
    names, a, b, s = _index(results)
    elo = _to_elo(names, _fit_arrays(names, a, b, s, prior=prior), anchor, anchor_elo)
    return dict(zip(names, elo.tolist(), strict=True))


def bootstrap(
    results: Sequence[Result],
    *,
    anchor: str | None = "random",
    anchor_elo: float = 0.0,
    prior: float = 1.0,
    samples: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """A `level` confidence interval per player: refits over games resampled with replacement.

    A resample in which the players do not all stay connected is drawn again (it says nothing about
    the ones cut off).
    """
    names, a, b, s = _index(results)
    rng = np.random.default_rng(seed)
    draws: list[np.ndarray] = []
    tries = 0
    while len(draws) < samples and tries < 5 * samples:
        tries += 1
        i = rng.integers(0, len(s), len(s))
        try:
            theta = _fit_arrays(names, a[i], b[i], s[i], prior=prior)
        except RatingsError:
            continue
        draws.append(_to_elo(names, theta, anchor, anchor_elo))
    if not draws:
        return {n: (math.nan, math.nan) for n in names}
    q = np.percentile(np.stack(draws), [50 * (1 - level), 50 * (1 + level)], axis=0)  # (2, n)
    return {n: (float(q[0, k]), float(q[1, k])) for k, n in enumerate(names)}


# --- the league table -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One player's line of the league table; `lo`, `hi` bound the Elo's confidence interval."""

    rank: int
    name: str
    elo: float
    lo: float
    hi: float
    games: int
    wins: int
    draws: int
    losses: int
    score: float  # points per game, a draw half a point


def league_table(
    results: Sequence[Result],
    *,
    anchor: str | None = "random",
    anchor_elo: float = 0.0,
    prior: float = 1.0,
    samples: int = 200,
    seed: int = 0,
) -> list[Row]:
    """Every player's record, Elo and interval, strongest first."""
    elo = fit(results, anchor=anchor, anchor_elo=anchor_elo, prior=prior)
    ci = bootstrap(results, anchor=anchor, anchor_elo=anchor_elo, prior=prior, samples=samples, seed=seed)
    record = {n: [0, 0, 0] for n in elo}  # wins, draws, losses
    for a, b, s in results:
        k = 0 if s > 0.5 else 1 if s == 0.5 else 2
        record[a][k] += 1
        record[b][2 - k] += 1
    order = sorted(elo, key=lambda n: (-elo[n], n))
    rows = []
    for rank, n in enumerate(order, 1):
        w, d, lost = record[n]
        games = w + d + lost
        rows.append(Row(rank, n, elo[n], *ci[n], games, w, d, lost, (w + d / 2) / games))
    return rows


def to_markdown(rows: Sequence[Row], *, note: str = "") -> str:
    lines = [
        "| rank | player | Elo | 95% CI | games | W | D | L | score |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.rank} | {r.name} | {r.elo:.0f} | {r.lo:.0f} to {r.hi:.0f} | {r.games} | "
            f"{r.wins} | {r.draws} | {r.losses} | {r.score:.3f} |"
        )
    return "\n".join(lines) + (f"\n\n{note}\n" if note else "\n")


def to_csv(rows: Sequence[Row]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow([f.name for f in fields(Row)])
    for r in rows:
        w.writerow([round(v, 2) if isinstance(v, float) else v for v in astuple(r)])
    return out.getvalue()


def write_table(rows: Sequence[Row], stem: str | os.PathLike, *, note: str = "") -> tuple[Path, Path]:
    """Write `STEM.md` and `STEM.csv` atomically; returns their paths."""
    stem = Path(stem)
    md, cs = stem.with_suffix(".md"), stem.with_suffix(".csv")
    atomic_write_text(md, to_markdown(rows, note=note))
    atomic_write_text(cs, to_csv(rows))
    return md, cs


# --- plots ---------------------------------------------------------------------------------------------
def pyplot():
    """matplotlib's pyplot drawing to files only (every PNG the project writes)."""
    import matplotlib  # here: commands that draw nothing skip matplotlib's import

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt  # after use("Agg")

    return plt


def save_png(fig, path: str | os.PathLike) -> Path:
    """`fig` as a PNG at `path`, written atomically; the figure is closed (drawn once, then freed)."""
    path = Path(path)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())
    return path


def plot_elo_by_step(
    rows: Sequence[Row], steps: Mapping[str, int], path: str | os.PathLike, *, title: str = "Elo by step"
) -> Path:
    """Elo (with its interval) of the players in `steps` against their training step, one line per
    search budget (names ending `@mcts:N`); every other player is a dashed horizontal reference."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    curves: dict[str, list[tuple[int, Row]]] = {}
    for r in rows:
        if r.name in steps:
            label = "policy" + (f" @{r.name.rpartition('@')[2]}" if "@mcts" in r.name else "")
            curves.setdefault(label, []).append((steps[r.name], r))
    for label, pts in sorted(curves.items()):
        pts.sort(key=lambda p: p[0])
        x = [p[0] for p in pts]
        ax.plot(x, [p[1].elo for p in pts], marker="o", label=label)
        ax.fill_between(x, [p[1].lo for p in pts], [p[1].hi for p in pts], alpha=0.2)
    for r in rows:
        if r.name not in steps:
            ax.axhline(r.elo, linestyle="--", linewidth=0.8, color="grey")
            ax.annotate(r.name, (0, r.elo), xycoords=("axes fraction", "data"), fontsize=7, va="bottom")
    ax.set(xlabel="training step", ylabel="Elo", title=title)
    if curves:
        ax.legend()
    fig.tight_layout()
    return save_png(fig, path)


def plot_elo_by_budget(
    rows: Sequence[Row],
    budgets: Mapping[str, int],
    path: str | os.PathLike,
    *,
    title: str = "Elo against search budget",
) -> Path:
    """Elo (with its interval) of the players in `budgets` against their simulations per move."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts = sorted((budgets[r.name], r) for r in rows if r.name in budgets)
    x = [p[0] for p in pts]
    ax.errorbar(
        x,
        [p[1].elo for p in pts],
        yerr=[[p[1].elo - p[1].lo for p in pts], [p[1].hi - p[1].elo for p in pts]],
        marker="o",
        capsize=3,
    )
    ax.set_xscale("symlog", linthresh=1)  # 0 (the raw policy) sits on the axis with the powers of two
    ax.set_xticks(x, [str(v) for v in x])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    for r in rows:
        if r.name not in budgets:
            ax.axhline(r.elo, linestyle="--", linewidth=0.8, color="grey")
            ax.annotate(r.name, (0, r.elo), xycoords=("axes fraction", "data"), fontsize=7, va="bottom")
    ax.set(xlabel="simulations per move", ylabel="Elo", title=title)
    fig.tight_layout()
    return save_png(fig, path)


def plot_scores_by_step(
    curves: Mapping[tuple[str, str], Sequence[tuple[int, float]]],
    path: str | os.PathLike,
    *,
    title: str = "Score by step",
) -> Path:
    """Score (win 1, draw 1/2) against each opponent by training step: `curves` maps (opponent, budget
    label such as "raw" or "@mcts:64") to (step, score) points; a colour per opponent, a line style per
    budget."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    opponents = sorted({o for o, _ in curves})
    budgets = sorted({b for _, b in curves}, key=lambda b: (b != "raw", b))
    styles = ["-", "--", ":", "-."]
    for (opponent, budget), pts in sorted(curves.items(), key=lambda c: (c[0][0], budgets.index(c[0][1]))):
        pts = sorted(pts)
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker="o",
            markersize=3,
            color=f"C{opponents.index(opponent)}",
            linestyle=styles[budgets.index(budget) % len(styles)],
            label=f"vs {opponent}, {budget}",
        )
    ax.axhline(0.5, linestyle="--", linewidth=0.8, color="grey")
    ax.set(xlabel="training step", ylabel="score", title=title, ylim=(-0.02, 1.02))
    if curves:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside, not over, the lines
    fig.tight_layout()
    return save_png(fig, path)


def plot_league(rows: Sequence[Row], path: str | os.PathLike, *, title: str = "Ratings") -> Path:
    """Each player's Elo with its interval, strongest on top."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.45 * len(rows)))
    y = np.arange(len(rows))[::-1]
    elo = np.array([r.elo for r in rows])
    err = [elo - [r.lo for r in rows], [r.hi for r in rows] - elo]
    ax.errorbar(elo, y, xerr=err, fmt="o", capsize=3)
    ax.set_yticks(y, [f"{r.name} ({r.games})" for r in rows])
    ax.set(xlabel="Elo (95% interval); games in brackets", title=title)
    fig.tight_layout()
    return save_png(fig, path)


# --- votes ------------------------------------------------------------------------------------------
def vote_ratings(
    paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *, samples: int = 200, png: bool = True
) -> list[Row]:
    """The league table of the models in votes files, as OUT/ratings.md, .csv and (with `png`) .png."""
    results = [r for p in paths for r in vote_results(load_votes(p))]
    if not results:
        raise RatingsError(f"{', '.join(map(str, paths))}: no votes recorded")
    rows = league_table(results, anchor=None, samples=samples)
    note = anchoring([r.name for r in rows], None) + "; 95% bootstrap intervals; a tie or both bad is a draw."
    stem = Path(out_dir) / "ratings"
    write_table(rows, stem, note=note)
    if png:
        plot_league(rows, stem.with_suffix(".png"), title=f"Arena votes ({len(results)})")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m selfplay.ratings", description="Ratings from arena votes.")
    p.add_argument("votes", nargs="+", help="votes files (selfplay.vote/1 records)")
    p.add_argument("--out", help="directory of ratings.md, .csv, .png (default: the first file's)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the intervals")
    args = p.parse_args(argv)
    try:
        rows = vote_ratings(args.votes, args.out or Path(args.votes[0]).parent, samples=args.bootstrap)
    except (LabelFileError, RatingsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(to_markdown(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

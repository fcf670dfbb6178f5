"""A game sweep's arena: its points' checkpoints, each at several search budgets, and fixed baselines in one
league; then what the Elo says of compute: Elo against training compute for each search budget, the iso-Elo
contours of training compute and search, and the exchange rate between the two (Jones 2021).

A sweep file's `arena:` section (`SweepArena`) turns it on. Every player of the league is a row:

    point, checkpoint, step, simulations, train FLOPs, test FLOPs a move, Elo (95% interval)

Training compute is the checkpoint's own: imitation's 6 N x tokens processed (`imitation.json`), a self-play
checkpoint's 2 N T x positions its actors evaluated + 6 N T x positions it trained on (`meta["compute"]`),
plus the imitation it started from (none from `selfplay.start: scratch`; correction rounds are not counted).
Test compute is 2 N T x the positions one move evaluates: the simulations, or 1 for the raw policy.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

import agents
import envs
import selfplay.arena.players as players
from envs.files import read_json
from selfplay.arena.league import ratings_from, write_league
from selfplay.arena.matchplay import play
from selfplay.arena.ratings import pyplot, save_png
from selfplay.config.evaluation import Budgets, ColourPairs
from selfplay.config.parsing import ConfigError
from selfplay.config.sections import Section
from selfplay.sweep.scaling import exchange_rate, fit_log_linear


class SweepArena(Section):
    """One arena over a game sweep's checkpoints."""

    checkpoints: Literal["final", "all", "doubling"] = Field(
        default="final",
        description="Each point's final checkpoint; `all`: its stage-2 start and every self-play checkpoint "
        "(snapshots along training, as Jones 2021 rates them); `doubling`: the start, then each checkpoint "
        "at least twice the step of the last one taken, and the final (even steps on a log axis).",
    )
    simulations: Budgets = Field(
        default_factory=lambda: [0],
        description="Search budgets every checkpoint plays at: 0 the raw policy, S its PUCT search "
        "(`PATH@mcts:S`), each a player of its own.",
    )
    baselines: list[str] = Field(
        default_factory=lambda: ["random"], description="Fixed players by spec, e.g. `alphabeta:depth=2`."
    )
    games: ColourPairs = Field(
        default=20, ge=2, description="Games per pair of players (a round robin), even."
    )
    workers: int = Field(default=2, ge=1, description="Processes playing the arena's games.")
    seed: int = Field(default=0, description="The arena's schedule seed.")
    anchor: str = Field(default="random", description="The player whose Elo is fixed at 0.")


# --- the players -------------------------------------------------------------------------------------
def _meta(ckpt: Path) -> dict[str, Any]:
    return players.checkpoint_meta(ckpt)


def _imitation_flops(run_dir: Path) -> float:
    try:
        return float(read_json(run_dir / "imitation.json", ConfigError)["train_flops"] or 0)
    except (OSError, KeyError, TypeError, ValueError):
        return 0.0


def checkpoints_of(run_dir: Path, which: str) -> list[dict[str, Any]]:
    """A point's rated checkpoints: path, stage-2 step, training FLOPs, N and tokens per position."""
    steps = sorted(run_dir.glob("checkpoints/step_*"), key=lambda c: _meta(c)["step"])
    if not steps:  # no stage 2: the imitation checkpoint is the point's
        ckpt = run_dir / "checkpoints" / "imitation"
        s = read_json(run_dir / "imitation.json", ConfigError)
        return [{"path": ckpt, "step": 0, "train_flops": float(s["train_flops"] or 0), **_shape(ckpt)}]
    start = run_dir / _meta(steps[0])["parent"]  # where stage 2 began: imitation, a correction round, scratch
    stage1 = 0.0 if _meta(start).get("stage") == "scratch" else _imitation_flops(run_dir)
    rows = [{"path": start, "step": 0, "train_flops": stage1, **_shape(start)}]
    for ckpt in steps:
        flops = (_meta(ckpt).get("compute") or {}).get("flops")  # None: not recorded (an older run)
        rows.append(
            {
                "path": ckpt,
                "step": _meta(ckpt)["step"],
                "train_flops": stage1 + (math.nan if flops is None else flops),
            }
        )
        rows[-1].update(_shape(ckpt))
    if which == "final":
        return rows[-1:]
    if which == "doubling":
        kept = rows[:2]
        for r in rows[2:-1]:
            if r["step"] >= 2 * kept[-1]["step"]:
                kept.append(r)
        rows = kept + [r for r in rows[-1:] if r is not kept[-1]]
    return rows


def _shape(ckpt: Path) -> dict[str, int]:
    """N and tokens per position of a checkpoint, as a self-play checkpoint records them (else measured)."""
    c = _meta(ckpt).get("compute") or {}
    if c.get("non_embedding_parameters") and c.get("tokens_per_position"):
        return {"N": c["non_embedding_parameters"], "tokens": c["tokens_per_position"]}

    policy = agents.load(ckpt, device="cpu")
    state = envs.make(policy.meta["game"]).new_initial_state()
    count = getattr(policy.model, "non_embedding_parameters", None)
    n = count() if count is not None else policy.model.num_parameters()
    return {"N": int(n), "tokens": int(policy.pack([policy.query(state)]).tok.shape[1])}


def lineup(arena: SweepArena, points: list[dict], sweep_dir: Path) -> list[dict[str, Any]]:
    """Every rated player of the sweep: one per checkpoint and search budget."""
    out = []
    for p in points:
        for c in checkpoints_of(sweep_dir / "points" / p["name"], arena.checkpoints):
            for s in arena.simulations:
                spec = str(c["path"]) if s == 0 else f"{c['path']}@mcts:{s}"
                test = 2 * c["N"] * c["tokens"] * max(s, 1)
                out.append(
                    {
                        "spec": spec,
                        "point": p["name"],
                        "step": c["step"],
                        "simulations": s,
                        "train_flops": c["train_flops"],
                        "test_flops": test,
                        "N": c["N"],
                    }
                )
    return out


# --- playing and rating ------------------------------------------------------------------------------
def rate(arena: SweepArena, game: str, points: list[dict], sweep_dir: Path, *, progress: bool) -> dict:
    """Play the league's missing games (DIR/arena/matches.jsonl, resumable), rate every player, fit Elo
    against compute; writes DIR/arena/ratings.md and the PNGs. Returns the arena's part of sweep.json."""

    out = sweep_dir / "arena"
    rows = lineup(arena, points, sweep_dir)
    g = envs.make(game)
    for r in rows:
        r["name"] = players.check(r["spec"], g)
    specs = [r["spec"] for r in rows] + list(arena.baselines)
    play(
        game, specs, games=arena.games, seed=arena.seed, workers=arena.workers, out_dir=out, progress=progress
    )
    table = ratings_from(out, anchor=arena.anchor, samples=200, seed=arena.seed)
    write_league(out, table, anchor=arena.anchor)
    by_name = {t.name: t for t in table}
    for r in rows:
        t = by_name[r["name"]]
        r.update(elo=t.elo, lo=t.lo, hi=t.hi, games=t.games, score=t.score)
    baselines = {b: by_name[n].elo for b in arena.baselines if (n := players.check(b, g)) in by_name}
    result: dict[str, Any] = {"players": [_json(r) for r in rows]}
    result["baselines"] = baselines
    result["lines"] = elo_lines(rows, seed=arena.seed)
    result["exchange"] = exchange(rows, seed=arena.seed)
    result["plots"] = []
    if any(r["train_flops"] > 0 for r in rows):  # a log axis of training compute
        plot_elo(out / "elo_compute.png", rows, baselines, result["lines"])
        result["plots"].append("elo_compute.png")
    if result["exchange"]:
        plot_contours(out / "iso_elo.png", rows, result["exchange"])
        result["plots"].append("iso_elo.png")
    return result


def _json(row: dict) -> dict:
    """A player's row for sweep.json: unknown compute (a checkpoint from before it was recorded) as null."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items() if k != "spec"}


def elo_lines(rows: list[dict], *, seed: int = 0, samples: int = 200) -> dict[str, list[float]]:
    """Per search budget: [intercept, slope, slope's 95% bootstrap interval (lo, hi)] of
    Elo = intercept + slope x log10(training FLOPs), the interval over the budget's players."""

    lines, rng = {}, np.random.default_rng(seed)
    for s in sorted({r["simulations"] for r in rows}):
        mine = [r for r in rows if r["simulations"] == s and r["train_flops"] > 0]
        x, y = np.array([r["train_flops"] for r in mine]), np.array([r["elo"] for r in mine])
        if len(set(x)) < 2:
            continue
        draws = []
        for _ in range(samples):
            i = rng.integers(0, len(x), len(x))
            if len(set(x[i])) >= 2:
                draws.append(fit_log_linear(x[i], y[i])[1])
        lo, hi = np.percentile(draws, [2.5, 97.5]) if draws else (np.nan, np.nan)
        lines[str(s)] = [*fit_log_linear(x, y), float(lo), float(hi)]
    return lines


def exchange(rows: list[dict], *, seed: int = 0, samples: int = 200) -> dict[str, Any] | None:
    """The train/test exchange rate over the searching players (simulations > 0) with training compute:
    Elo = c + p log10(train) + q log10(test); 10x train compute = 10^(p/q) x test compute. With a 95%
    bootstrap interval over the players; None without two budgets and two training computes."""

    mine = [r for r in rows if r["simulations"] > 0 and r["train_flops"] > 0]
    if len({r["simulations"] for r in mine}) < 2 or len({r["train_flops"] for r in mine}) < 2:
        return None
    x, y, e = (np.array([r[k] for r in mine], dtype=float) for k in ("train_flops", "test_flops", "elo"))
    fit = exchange_rate(x, y, e)
    rng, draws = np.random.default_rng(seed), []
    for _ in range(samples):
        i = rng.integers(0, len(mine), len(mine))
        if np.ptp(np.log(x[i])) > 0 and np.ptp(np.log(y[i])) > 0:
            draws.append(exchange_rate(x[i], y[i], e[i])["rate"])
    if draws:
        fit["rate_interval"] = [float(v) for v in np.percentile(draws, [2.5, 97.5])]
    fit["players"] = len(mine)
    return fit


# --- the report ---------------------------------------------------------------------------------------
def markdown(result: dict) -> list[str]:
    """sweep.md's arena section."""
    lines = ["", "## Arena: Elo of every checkpoint at each search budget", ""]
    lines += [
        "| point | step | simulations | train FLOPs | test FLOPs a move | Elo | 95% CI | games | score |"
    ]
    lines += ["|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in sorted(result["players"], key=lambda r: (r["point"], r["step"], r["simulations"])):
        lines.append(
            f"| {r['point']} | {r['step']:,} | {r['simulations']} | {_flops(r['train_flops'])} | "
            f"{r['test_flops']:.3g} | {r['elo']:.0f} | {r['lo']:.0f} to {r['hi']:.0f} | {r['games']} | "
            f"{r['score']:.3f} |"
        )
    if result["baselines"]:
        lines += [
            "",
            "Baselines: " + ", ".join(f"`{b}` {e:.0f}" for b, e in result["baselines"].items()) + ".",
        ]
    if result["lines"]:
        lines += ["", "Elo = intercept + slope x log10(train FLOPs), per search budget:", ""]
        lines += [
            "| simulations | intercept | slope (Elo per 10x) | 95% bootstrap interval |",
            "|---:|---:|---:|---|",
        ]
        lines += [
            f"| {s} | {c:.0f} | {k:.0f} | {lo:.0f} to {hi:.0f} |"
            for s, (c, k, lo, hi) in result["lines"].items()
        ]
    x = result["exchange"]
    if x:
        iv = x.get("rate_interval")
        lines += [
            "",
            f"Exchange rate over the {x['players']} searching players: Elo = {x['intercept']:.0f} + "
            f"{x['train_slope']:.0f} log10(train FLOPs) + {x['test_slope']:.0f} log10(test FLOPs): along an "
            f"iso-Elo contour **10x training compute is worth {x['rate']:.3g}x search**"
            + (f" (95% bootstrap interval {iv[0]:.3g} to {iv[1]:.3g})." if iv else ".")
            + " Jones (2021, Hex): about 15x.",
        ]
    alt = {"elo_compute.png": "Elo against training compute", "iso_elo.png": "iso-Elo contours"}
    lines += [x for png in result["plots"] for x in ("", f"![{alt[png]}](arena/{png})")]
    return lines


def _flops(v: float | None) -> str:
    return "unknown" if v is None or math.isnan(v) else f"{v:.3g}"


def plot_elo(path: Path, rows: list[dict], baselines: dict[str, float], lines: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in sorted({r["simulations"] for r in rows}):
        mine = sorted(
            (r for r in rows if r["simulations"] == s and r["train_flops"] > 0),
            key=lambda r: r["train_flops"],
        )
        if not mine:
            continue
        x = np.array([r["train_flops"] for r in mine])
        y = np.array([r["elo"] for r in mine])
        err = np.array([[r["elo"] - r["lo"] for r in mine], [r["hi"] - r["elo"] for r in mine]])
        label = "raw policy" if s == 0 else f"{s} simulations"
        h = ax.errorbar(x, y, yerr=err, fmt="o", capsize=2, label=label)
        if str(s) in lines:
            c, k = lines[str(s)][:2]
            grid = np.geomspace(x.min(), x.max(), 20)
            ax.plot(grid, c + k * np.log10(grid), "-", color=h[0].get_color(), alpha=0.5)
    for b, e in baselines.items():
        ax.axhline(e, ls=":", color="grey", lw=0.8)
        ax.annotate(b, (0.01, e), xycoords=("axes fraction", "data"), fontsize=7, color="grey", va="bottom")
    ax.set(xscale="log", xlabel="training compute (FLOPs)", ylabel="Elo (random = 0)")
    ax.legend(fontsize=8)
    ax.set_title("Elo against training compute, per search budget")
    save_png(fig, path)


def plot_contours(path: Path, rows: list[dict], x: dict) -> None:
    """Measured Elo over log training x log test compute (filled contours), the fitted plane's iso-Elo
    lines dashed over them."""

    plt = pyplot()
    mine = [r for r in rows if r["simulations"] > 0 and r["train_flops"] > 0]
    lx = np.log10([r["train_flops"] for r in mine])
    ly = np.log10([r["test_flops"] for r in mine])
    e = np.array([r["elo"] for r in mine])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    levels = np.linspace(e.min(), e.max(), 9)
    try:
        filled = ax.tricontourf(lx, ly, e, levels=levels, cmap="viridis", alpha=0.8)
        fig.colorbar(filled, ax=ax, label="Elo (measured)")
    except (ValueError, RuntimeError):  # points on a line: no triangulation
        pass
    ax.scatter(lx, ly, c="k", s=12)
    gx, gy = np.meshgrid(np.linspace(lx.min(), lx.max(), 30), np.linspace(ly.min(), ly.max(), 30))
    plane = x["intercept"] + x["train_slope"] * gx + x["test_slope"] * gy
    iso = ax.contour(gx, gy, plane, levels=levels[1:-1], colors="w", linestyles="--", linewidths=0.8)
    ax.clabel(iso, fmt="%.0f", fontsize=7)
    ax.set(xlabel="log10 training compute (FLOPs)", ylabel="log10 test compute a move (FLOPs)")
    ax.set_title(f"Iso-Elo contours: 10x training compute = {x['rate']:.3g}x search (fit dashed)")
    save_png(fig, path)

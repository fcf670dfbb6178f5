"""Scaling sweeps: a grid (or a list) of overrides over a base config, each point a normal run directory,
run side by side, then the scaling law of their held-out loss (`selfplay.sweep.scaling`).

    python -m selfplay.sweep configs/sweep_arithmetic.yaml [--workers 2] [--no-progress]

A sweep file (keys: `SweepConfig`):

    base: arithmetic.yaml            # the run config of every point (relative to this file)
    dir: runs/sweep_arithmetic       # points/NAME/ (run directories), sweep.md, PNGs, tb/
    overrides: [imitation.epochs=1]  # for every point
    grid: {model.n_embd: [32, 64], transcripts.games: [2500, 5000]}
    points: [{model.n_layer: 3}]     # more points, beside the grid's

A grid value may be a mapping of overrides that go together, the axis named by its key:
`width: [{model.n_embd: 32, imitation.lr: 0.004}, {model.n_embd: 64, imitation.lr: 0.002}]`.

Each point runs `python -m selfplay.run` in its own process (`backend: local`, `workers` at once) or as
a Ray task (`backend: ray`, apart from the points' own `runtime.backend`); a point is done when its
`point.json` (N, D, C, held-out loss, read from its `imitation.json`) is written, so a killed sweep run
again skips the finished points and starts the others afresh; a point's process dies with the sweep's.
With an `arena:` section the points' checkpoints then meet baselines at several search budgets in one
league (`selfplay.sweep.arena`): Elo against training compute and the train/test exchange rate.
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from matplotlib.ticker import FormatStrFormatter
from pydantic import Field, ValidationError
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import envs
import selfplay.sweep.scaling as scaling
from envs.files import read_json, read_yaml
from selfplay.arena.ratings import pyplot, save_png
from selfplay.config import ConfigError, load_config, parse_overrides
from selfplay.config.parsing import set_dotted
from selfplay.config.players import PlayerSpecError, check
from selfplay.config.sections import Section
from selfplay.core.transcript_stage import transcripts_stage
from selfplay.io import InUseError, atomic_write_text, cannot_write, exclusive
from selfplay.sweep.arena import SweepArena, markdown, rate

POINT = "point.json"


class SweepConfig(Section):
    """A scaling sweep."""

    base: str = Field(description="The run config every point starts from (relative to the sweep file).")
    dir: str = Field(description="The sweep's directory (relative to the working directory).")
    overrides: list[str] = Field(default_factory=list, description="KEY=VALUE overrides of every point.")
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="KEY: [values]: one point per combination of the values. A value may be a mapping of "
        "KEY: value overrides that go together (e.g. a width and its learning rate), the axis then named "
        "as the grid's key says.",
    )
    points: list[dict[str, Any]] = Field(
        default_factory=list, description="More points, each a mapping of KEY: value overrides."
    )
    backend: Literal["local", "ray"] = Field(
        default="local", description="`local`: a process per point; `ray`: a Ray task per point."
    )
    workers: int = Field(default=2, ge=1, description="Points run at once.")
    threads: int = Field(default=1, ge=1, description="Torch threads of each point.")
    holdout: int = Field(
        default=2, ge=0, description="Points with the largest N x D left out of the fit, then predicted."
    )
    share_transcripts: bool = Field(
        default=True,
        description="Generate the transcripts of the point with the most `transcripts.games` once "
        "(DIR/transcripts/) and give every point the first `transcripts.games` of them "
        "(`transcripts.take`): nested data, generated once.",
    )
    fit_loss: bool = Field(
        default=True,
        description="Fit L(N, D) to the points' held-out imitation loss; false where imitation is not what "
        "the sweep measures (a self-play sweep rated by its `arena`).",
    )
    arena: SweepArena | None = Field(
        default=None,
        description="A game sweep's arena: the points' checkpoints at search budgets and baselines in one "
        "league (`selfplay.sweep.arena`): Elo per point, Elo against compute, iso-Elo contours.",
    )
    bootstrap: int = Field(default=200, ge=0, description="Bootstrap resamples of the fit's intervals.")
    seed: int = Field(default=0, description="Seed of the bootstrap.")


def load_sweep(
    path: str | os.PathLike, overrides: Sequence[str] = ()
) -> tuple[SweepConfig, list[tuple[str, list[str]]]]:
    """The sweep at `path`, its keys overridden by `KEY=VALUE` `overrides` (a whole list or mapping, such
    as `grid`, replaced), and its points as (name, overrides), every point's config checked first."""
    path = Path(path)
    try:
        raw = read_yaml(path, ConfigError)
        raw = raw if raw is not None else {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys")
        for key, value in parse_overrides(list(overrides)):
            set_dotted(raw, key, value)
        sweep = SweepConfig.model_validate(raw)
    except OSError as e:
        raise ConfigError(f"{path}: {e}") from None
    except ValidationError as e:
        where = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise ConfigError(f"{path}: {where}") from None
    keys, values = list(sweep.grid), list(sweep.grid.values())
    combos = [dict(zip(keys, c, strict=True)) for c in itertools.product(*values)] if keys else []
    points = []
    for combo in combos + list(sweep.points):
        overrides, parts = [], []
        for k, v in combo.items():
            bundle = v if isinstance(v, dict) else {k: v}  # an axis of values that go together
            overrides += [f"{key}={_yaml(value)}" for key, value in bundle.items()]
            parts.append(f"{k.split('.')[-1]}-{_slug(next(iter(bundle.values())) if bundle else '')}")
        points.append(("_".join(parts) or "base", overrides))
    if not points:
        raise ConfigError(f"{path}: no points: give grid or points")
    if len({n for n, _ in points}) != len(points):
        raise ConfigError(f"{path}: two points with the same overrides")
    base = (path.parent / sweep.base).resolve()
    sweep = sweep.model_copy(update={"base": str(base)})
    for name, overrides in points:  # every point's config loads, before any runs
        try:
            config = _config(sweep, name, overrides)
        except ConfigError as e:
            raise ConfigError(f"{path}: point {name}: {e}") from None
    if sweep.arena is not None:  # its baselines play the points' game
        try:
            for b in sweep.arena.baselines:
                check(b, envs.make(config.game))
        except (PlayerSpecError, envs.UnknownEnvError) as e:
            raise ConfigError(f"{path}: arena.baselines: {e}") from None
    return sweep, points


def _yaml(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def _slug(v: Any) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in str(v))


# --- running -------------------------------------------------------------------------------------
try:  # loaded here: a forked child may call into it, but must not load a library
    _LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None
except OSError:
    _LIBC = None


def _die_with_parent() -> None:
    """In a point's process, before it runs: SIGKILL it when the sweep dies (Linux's PR_SET_PDEATHSIG),
    so a killed sweep leaves no point running that its next run would start again."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)


def share_transcripts(
    sweep: SweepConfig, points: list[tuple[str, list[str]]], *, progress: bool
) -> list[str]:
    """With `share_transcripts`: the largest point's transcripts, made once in DIR/transcripts, and the
    overrides that give them to every point (each then takes its own `transcripts.games` of them)."""

    if not sweep.share_transcripts:
        return []
    configs = {n: _config(sweep, n, o) for n, o in points}
    tcs = {n: c.transcripts for n, c in configs.items()}
    if len({t.games for t in tcs.values()}) < 2:
        return []
    same = {json.dumps(t.model_dump(exclude={"games", "workers"}), sort_keys=True) for t in tcs.values()}
    if len(same) > 1 or any(t.path is not None for t in tcs.values()):
        raise ConfigError(
            "share_transcripts: the points' transcripts differ in more than games; set it false"
        )
    largest = max(configs, key=lambda n: tcs[n].games)
    run_dir = Path(sweep.dir) / "transcripts"
    run_dir.mkdir(parents=True, exist_ok=True)
    config = configs[largest].model_copy(update={"run_dir": str(run_dir)})
    path = transcripts_stage(config, run_dir, progress=progress)
    return [f"transcripts.path={path.resolve()}"]


def _config(sweep: SweepConfig, name: str, overrides: list[str]):
    return load_config(
        sweep.base, [*sweep.overrides, *overrides, f"run_dir={Path(sweep.dir) / 'points' / name}"]
    )


def _shared(sweep: SweepConfig, name: str, overrides: list[str], shared: list[str]) -> list[str]:
    """A point's overrides with the shared transcripts: their first `transcripts.games` of them."""
    if not shared:
        return overrides
    games = _config(sweep, name, overrides).transcripts.games
    return [
        *[o for o in overrides if not o.startswith("transcripts.games=")],
        *shared,
        f"transcripts.take={games}",
    ]


def _command(sweep: SweepConfig, name: str, overrides: list[str]) -> list[str]:
    run_dir = Path(sweep.dir) / "points" / name
    if (run_dir / "config.yaml").exists():  # started before: its finished stages are reused
        return [sys.executable, "-m", "selfplay.run", "--resume", str(run_dir), "--no-progress"]
    argv = [sweep.base, *sweep.overrides, *overrides, f"run_dir={run_dir}"]
    return [sys.executable, "-m", "selfplay.run", *argv, "--no-progress"]


def run_point(sweep: SweepConfig, name: str, overrides: list[str], shared: list[str] = ()) -> dict[str, Any]:
    """Run one point to its end (in a process of its own) and write its `point.json`."""
    run_dir = Path(sweep.dir) / "points" / name
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(sweep.threads), "MKL_NUM_THREADS": str(sweep.threads)}
    t0 = time.perf_counter()
    with open(run_dir.parent / f"{name}.log", "ab") as log:
        rc = subprocess.call(
            _command(sweep, name, _shared(sweep, name, overrides, list(shared))),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,
        )
    if rc != 0:
        raise RuntimeError(f"point {name} failed (exit {rc}); see {run_dir.parent / (name + '.log')}")
    point = measure(run_dir, name, overrides, seconds=time.perf_counter() - t0)
    atomic_write_text(run_dir / POINT, json.dumps(point, indent=2) + "\n")
    return point


def measure(run_dir: Path, name: str, overrides: list[str], *, seconds: float) -> dict[str, Any]:
    """A point's measurements, from its imitation summary."""
    s = read_json(run_dir / "imitation.json", ConfigError)
    return {
        "name": name,
        "overrides": overrides,
        "N": s["non_embedding_parameters"],
        "D": s["train_tokens"],
        "C": s["train_flops"],
        "loss": s["held_out_loss"],
        "parameters": s["parameters"],
        "seconds": round(seconds, 1),
        "runner": f"{socket.gethostname()}:{os.getpid()}",  # the process that ran it (a Ray worker?)
    }


def done(sweep: SweepConfig, name: str, overrides: list[str]) -> dict[str, Any] | None:
    """The point's measurements if it finished with these overrides."""
    try:
        point = read_json(Path(sweep.dir) / "points" / name / POINT, ValueError)
    except (OSError, ValueError):
        return None
    return point if isinstance(point, dict) and point.get("overrides") == overrides else None


def run_sweep(
    sweep: SweepConfig, points: list[tuple[str, list[str]]], *, progress: bool = True
) -> list[dict]:
    """Every point's measurements, running those not done yet."""

    results = {name: p for name, o in points if (p := done(sweep, name, o)) is not None}
    if results:
        print(f"sweep: {len(results)} of {len(points)} points done before; skipping them")
    todo = [(n, o) for n, o in points if n not in results]
    shared = share_transcripts(sweep, points, progress=progress) if todo else []
    bar = tqdm(total=len(points), initial=len(results), desc="sweep", unit="point", disable=not progress)
    submit = _ray_submit(sweep) if sweep.backend == "ray" else None
    with ThreadPoolExecutor(max_workers=sweep.workers) as pool:
        running: dict[Future, str] = {}
        for name, overrides in todo:
            fut = pool.submit(submit or run_point, sweep, name, overrides, shared)
            running[fut] = name
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                results[running.pop(fut)] = fut.result()
                bar.update()
    bar.close()
    return [results[n] for n, _ in points]


def rate_sweep(
    sweep: SweepConfig, points: list[tuple[str, list[str]]], results: list[dict], *, progress: bool = True
) -> dict | None:
    """With an `arena`: the points' checkpoints and the baselines in one league (`selfplay.sweep.arena`)."""
    if sweep.arena is None:
        return None

    game = _config(sweep, *points[0]).game
    return rate(sweep.arena, game, results, Path(sweep.dir), progress=progress)


def _ray_submit(sweep: SweepConfig):
    import ray  # the `ray` extra

    if not ray.is_initialized():
        ray.init(log_to_driver=False)
    remote = ray.remote(num_cpus=sweep.threads)(run_point)
    return lambda *args: ray.get(remote.remote(*args))


# --- the report ----------------------------------------------------------------------------------
def report(sweep: SweepConfig, results: list[dict], arena: dict | None = None) -> str:
    """`sweep.md`, the loss PNG and TensorBoard hparams in the sweep directory (with the `arena`'s results,
    `rate_sweep`, its section); returns the Markdown."""

    out, runs = Path(sweep.dir), results
    results = merged(runs)  # the fit's points
    N, D, L = (np.array([r[k] for r in results], dtype=float) for k in ("N", "D", "loss"))
    lines = ["# Scaling sweep", "", f"Base config: `{sweep.base}`; {len(runs)} runs, {len(results)} points"]
    lines[-1] += (
        " (runs of the same N and D, e.g. seeds, are one point: their mean loss)."
        if len(runs) > len(results)
        else "."
    )
    lines += ["", "| run | N (non-embedding) | D (tokens) | C (FLOPs) | held-out loss | seconds |"]
    lines += ["|---|---:|---:|---:|---:|---:|"]
    for r in sorted(runs, key=lambda r: (r["N"], r["D"], r["name"])):
        lines.append(
            f"| {r['name']} | {r['N']:,} | {r['D']:,} | {r['C']:.3g} | {r['loss']:.4f} | {r['seconds']} |"
        )
    fit: dict[str, Any] = {"runs": runs, "points": results}
    need = 5 + sweep.holdout
    if sweep.fit_loss and len(results) < need:
        lines += ["", f"No fit: the law has 5 parameters and {sweep.holdout} points are held out; "]
        lines[-1] += f"{len(results)} points < {need}."
    elif sweep.fit_loss:
        if sweep.bootstrap:
            law, iv = scaling.law_intervals(N, D, L, samples=sweep.bootstrap, seed=sweep.seed)
        else:
            law, iv = scaling.fit_loss(N, D, L), {}
        lines += [
            "",
            "## The law",
            "",
            "L(N, D) = E + A / N^alpha + B / D^beta (Huber on log-loss), all points:",
            "",
        ]
        lines += ["| parameter | value | 95% bootstrap interval |", "|---|---:|---|"]
        for k, v in law.to_dict().items():
            lo_hi = f"{iv[k][0]:.4g} to {iv[k][1]:.4g}" if k in iv else ""
            lines.append(f"| {k} | {v:.4g} | {lo_hi} |")
        lines += ["", f"Compute-optimal: N_opt ~ C^{law.a:.3f}, D_opt ~ C^{law.b:.3f}."]
        fit.update(law=law.to_dict(), intervals=iv)
        if sweep.holdout:
            kept, preds = scaling.predict_largest(N, D, L, k=sweep.holdout)
            lines += ["", f"## Prediction of the {sweep.holdout} largest points (N x D) from the others", ""]
            lines += [
                "| point | actual | predicted | relative error | within 5% or 0.02 nats |",
                "|---|---:|---:|---:|---|",
            ]
            for p in preds:
                ok = "yes" if p.within() else "no"
                name, err = results[p.index]["name"], p.relative_error
                lines.append(f"| {name} | {p.actual:.4f} | {p.predicted:.4f} | {err:.2%} | {ok} |")
            fit["prediction"] = {
                "law": kept.to_dict(),
                "points": [
                    {**p.__dict__, "relative_error": p.relative_error, "within": p.within()} for p in preds
                ],
            }
        _plot(out / "loss.png", results, law)
        lines += ["", "![loss against N and D](loss.png)"]
    if arena is not None:
        lines += markdown(arena)
        fit["arena"] = arena
    md = "\n".join(lines) + "\n"
    atomic_write_text(out / "sweep.md", md)
    atomic_write_text(out / "sweep.json", json.dumps(fit, indent=2, default=float) + "\n")
    _hparams(out / "tb", runs, arena)
    return md


def merged(runs: list[dict]) -> list[dict]:
    """Runs of the same N and D (a seed axis) as one point each: their mean loss, named by the runs. D
    within 0.1% is the same (seeds order the batches apart, so a last partial batch may differ a token)."""
    groups: list[list[dict]] = []
    for r in sorted(runs, key=lambda r: (r["N"], r["D"])):
        g = groups[-1] if groups else None
        if g and g[0]["N"] == r["N"] and abs(r["D"] - g[0]["D"]) <= 1e-3 * g[0]["D"]:
            g.append(r)
        else:
            groups.append([r])
    out = []
    for g in groups:
        name = g[0]["name"] if len(g) == 1 else f"{g[0]['name']} (mean of {len(g)})"
        out.append({**g[0], "name": name, "loss": float(np.mean([r["loss"] for r in g])), "runs": len(g)})
    return out


def _plot(path: Path, results: list[dict], law) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, x, other in ((axes[0], "N", "D"), (axes[1], "D", "N")):
        for value in sorted({r[other] for r in results}):
            rows = sorted((r for r in results if r[other] == value), key=lambda r: r[x])
            xs = np.array([r[x] for r in rows], dtype=float)
            line = ax.plot(xs, [r["loss"] for r in rows], "o", label=f"{other} = {value:,.0f}")[0]
            grid = np.geomspace(xs.min(), xs.max(), 50) if len(xs) > 1 else xs
            fitted = law.loss(grid, value) if x == "N" else law.loss(value, grid)
            ax.plot(grid, fitted, "-", color=line.get_color(), alpha=0.6)
        ax.set(xscale="log", yscale="log", xlabel=x, ylabel="held-out loss (nats/token)")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.2f"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2f"))
        ax.legend(fontsize=7)
    fig.suptitle("Held-out loss and the fitted L(N, D)")
    save_png(fig, path)


def _hparams(tb: Path, results: list[dict], arena: dict | None = None) -> None:
    """Each run's overrides against its measurements (and its final checkpoint's best Elo)."""

    for r in results:
        metrics = {"hparam/loss": r["loss"], "hparam/N": r["N"], "hparam/D": r["D"]}
        mine = [p for p in (arena or {}).get("players", []) if p["point"] == r["name"]]
        if mine:
            last = max(p["step"] for p in mine)
            metrics["hparam/elo"] = max(p["elo"] for p in mine if p["step"] == last)
        with SummaryWriter(str(tb / r["name"])) as w:
            hp = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in r["overrides"]}
            w.add_hparams(hp, metrics, run_name=".")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m selfplay.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="the sweep file")
    parser.add_argument(
        "overrides", nargs="*", help="KEY=VALUE overrides of the sweep file's keys (e.g. workers=1, grid=...)"
    )
    parser.add_argument("--workers", type=int, help="points at once (overrides the file's)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        sweep, points = load_sweep(args.config, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.workers:
        sweep = sweep.model_copy(update={"workers": args.workers})
    if why := cannot_write(sweep.dir):
        print(f"error: {args.config}: dir {why}", file=sys.stderr)
        return 2
    try:
        with exclusive(sweep.dir, "sweep dir") as sign:  # two sweeps on one directory would trade points
            sign()
            results = run_sweep(sweep, points, progress=not args.no_progress)
            arena = rate_sweep(sweep, points, results, progress=not args.no_progress)
            report(sweep, results, arena)
    except InUseError as e:
        print(f"error: {args.config}: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"error: {args.config}: {e}", file=sys.stderr)
        return 2
    print(f"sweep: {len(results)} points; {Path(sweep.dir) / 'sweep.md'}")
    return 0

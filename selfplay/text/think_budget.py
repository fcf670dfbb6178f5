"""Accuracy against test-time compute, two ways to spend it: thinking longer (the thinking format's budget)
and sampling more (best-of-N with the run's verifier, majority of N, pass@N).

    python -m selfplay.think_budget RUN [--budgets 0,8,16,32,64] [--best-of 1,2,4,8,16] [--tasks 500]

On the run's held-out tasks (the ones RL evaluates on) with its final checkpoint (RL's, else imitation's;
`--checkpoint` names another): greedy accuracy at each thinking budget, with its standard error and the
tokens generated per task; then `max(--best-of)` samples per task at `--best-of-budget` (0 by default:
the answer at once) and `--temperature`, and for each N the accuracy of the one the verifier scores
highest (the run's, `RUN/checkpoints/verifier`, or `--verifier DIR`; left out when there is none), of
the most frequent answer, and of any (pass@N). Writes `think_budget.md`, `.png` and `.json` to
`RUN/think_budget/` (or `--out`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import agents
import envs
from selfplay.arena.ratings import pyplot, save_png
from selfplay.config import ConfigError, load_config
from selfplay.core.rundir import read_json
from selfplay.io import atomic_write_text
from selfplay.text.actor import VERIFIER_DIR
from selfplay.text.episodes import episode_scores, held_out_tasks, majority, play, sampler
from selfplay.text.verifier import sample


def _tokens(policy: agents.Policy, texts: Sequence[str]) -> float:
    """Mean tokens of generated texts (the words written for the policy included)."""
    return float(np.mean([len(policy.tokenizer.encode(t)) for t in texts])) if texts else 0.0


def _se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / n)


@torch.no_grad()
def measure(
    policy: agents.Policy,
    env: envs.Thinking,
    tasks: Sequence[envs.Task],
    budgets: Sequence[int],
    *,
    best_of: Sequence[int] = (1, 2, 4, 8, 16),
    best_of_budget: int = 0,
    temperature: float = 1.0,
    verifier: agents.Verifier | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """The table `main` writes, as rows: `budget` (greedy, by thinking budget) and `best_of` (by N)."""
    policy.model.eval()
    n, rows = len(tasks), []
    for budget in tqdm(budgets, desc="budgets", disable=not progress):
        at = env.with_budget(budget, env.answer_tokens)
        episodes = play(policy, at, tasks, temperature=0.0, max_new_tokens=at.completion_tokens())
        acc = float(episode_scores(at, tasks, episodes).mean())
        texts = [ep[-1][1] for ep in episodes]
        rows.append({"budget": budget, "accuracy": acc, "se": _se(acc, n), "tokens": _tokens(policy, texts)})
    out: dict[str, Any] = {"tasks": n, "budget": rows, "best_of": []}
    if not best_of:
        return out
    at = env.with_budget(best_of_budget, env.answer_tokens)
    prompts = [at.prompt_for(t) for t in tasks]
    k = max(best_of)
    gen = sampler(policy, at)
    knobs = {"temperature": temperature, "max_new_tokens": at.completion_tokens(), "stop": at.stop}
    samples = sample(gen, prompts, k, seed=seed, **knobs)
    right = np.array([[at.score(t, c) for c in cs] for t, cs in zip(tasks, samples, strict=True)])
    scores = None
    if verifier is not None:
        flat = [c for cs in samples for c in cs]
        scores = verifier.score([p for p in prompts for _ in range(k)], flat).reshape(n, k)
    per_sample = _tokens(policy, [c for cs in samples for c in cs])
    for m in best_of:
        row = {"n": m, "tokens": m * per_sample, "pass_at_n": float((right[:, :m] >= 1.0).any(1).mean())}
        votes = [majority(at, cs[:m]) for cs in samples]
        row["majority"] = float(np.mean([at.score(t, c) for t, c in zip(tasks, votes, strict=True)]))
        if scores is not None:
            picked = right[np.arange(n), scores[:, :m].argmax(1)]
            row["verifier"] = float(picked.mean())
            row["verifier_se"] = _se(row["verifier"], n)
        out["best_of"].append(row)
    out.update(best_of_budget=best_of_budget, temperature=temperature, verifier=verifier is not None)
    return out


def to_markdown(result: dict[str, Any], *, title: str) -> str:
    n = result["tasks"]
    lines = [
        f"# {title}",
        "",
        f"Thinking longer: greedy, one completion per task, made to answer after `budget` tokens of work "
        f"({n} held-out tasks; ± one standard error).",
        "",
        "| budget | accuracy | tokens / task |",
        "|---:|---:|---:|",
    ]
    lines += [
        f"| {r['budget']} | {r['accuracy']:.3f} ± {r['se']:.3f} | {r['tokens']:.1f} |"
        for r in result["budget"]
    ]
    if result["best_of"]:
        v = result["verifier"]
        lines += [
            "",
            f"Sampling more: N samples per task at budget {result['best_of_budget']} and temperature "
            f"{result['temperature']:g}; "
            + ("the verifier's pick, " if v else "(no verifier in this run) ")
            + "the most frequent answer, and pass@N (any right: what a perfect verifier would reach).",
            "",
            "| N | tokens / task |" + (" best-of-N (verifier) |" if v else "") + " majority | pass@N |",
            "|---:|---:|" + ("---:|" if v else "") + "---:|---:|",
        ]
        for r in result["best_of"]:
            cell = f" {r['verifier']:.3f} ± {r['verifier_se']:.3f} |" if v else ""
            lines.append(
                f"| {r['n']} | {r['tokens']:.1f} |{cell} {r['majority']:.3f} | {r['pass_at_n']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: str | Path, *, title: str) -> Path:
    """Accuracy against tokens generated per task: one line by thinking budget, and by N for best-of-N."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    b = result["budget"]
    ax.errorbar(
        [r["tokens"] for r in b], [r["accuracy"] for r in b], yerr=[r["se"] for r in b],
        marker="o", capsize=3, label="thinking longer (greedy, by budget)",
    )  # fmt: skip
    for r in b:
        ax.annotate(
            str(r["budget"]),
            (r["tokens"], r["accuracy"]),
            textcoords="offset points",
            xytext=(3, -9),
            fontsize=7,
        )
    series = [("verifier", "best-of-N (verifier)"), ("majority", "majority of N"), ("pass_at_n", "pass@N")]
    for key, label in series:
        rows = [r for r in result["best_of"] if key in r]
        if rows:
            style = ":" if key == "pass_at_n" else "-"
            ax.plot([r["tokens"] for r in rows], [r[key] for r in rows], style, marker="s", label=label)
    ax.set_xscale("log")  # every completion has its answer's tokens: none is 0
    ax.xaxis.set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(plt.matplotlib.ticker.NullFormatter())
    ax.set_xlabel("tokens generated per task")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return save_png(fig, path)


def _ints(text: str, name: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"error: {name} must be comma-separated integers, got {text!r}") from None
    if any(v < 0 for v in values):
        raise SystemExit(f"error: {name} must be >= 0, got {text!r}")
    return values


def _checkpoint(run: Path, name: str | None) -> Path:
    if name is not None:
        path = Path(name) if Path(name).exists() else run / "checkpoints" / name
        if not path.exists():
            raise SystemExit(f"error: --checkpoint {name}: neither a path nor a checkpoint of {run}")
        return path
    if (run / "rl.json").exists():
        return run / read_json(run / "rl.json")["checkpoint"]
    if (run / "checkpoints" / "imitation").exists():
        return run / "checkpoints" / "imitation"
    raise SystemExit(f"error: {run}: no checkpoint yet (no rl.json, no checkpoints/imitation)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m selfplay.think_budget", description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="run directory of a reward environment in the thinking format")
    p.add_argument("--budgets", default="0,8,16,32,64", help="thinking budgets in tokens, comma-separated")
    p.add_argument("--best-of", default="1,2,4,8,16", help="sample counts N, comma-separated ('' for none)")
    p.add_argument("--best-of-budget", type=int, default=0, help="the thinking budget of those samples")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature for best-of-N")
    p.add_argument("--tasks", type=int, default=500, help="held-out tasks")
    p.add_argument("--checkpoint", help="a checkpoint name under RUN/checkpoints or a path (default: final)")
    p.add_argument("--verifier", type=Path, help="verifier directory (default: the run's, when it has one)")
    p.add_argument("--out", type=Path, help="output directory (default: RUN/think_budget)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    budgets, best_of = _ints(args.budgets, "--budgets"), _ints(args.best_of, "--best-of")
    if not budgets:
        p.error("--budgets: give at least one budget")
    if any(m < 1 for m in best_of):
        p.error("--best-of: every N must be >= 1")
    if args.tasks < 1:
        p.error("--tasks must be >= 1")
    try:
        config = load_config(args.run / "config.yaml")
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    if not config.is_reward_env:
        raise SystemExit(f"error: {args.run}: {config.game} is a game; thinking budgets are for reward envs")
    env = config.reward_env()
    if not isinstance(env, envs.Thinking):
        raise SystemExit(f"error: {args.run}: the thinking format is off (env_options.thinking is not true)")
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = _checkpoint(args.run, args.checkpoint)
    own = args.run / VERIFIER_DIR
    vdir = args.verifier or (own if own.exists() else None)
    try:
        policy = agents.load(ckpt, device=config.rl.device)
        verifier = agents.load_verifier(vdir, device=config.rl.device) if vdir and best_of else None
    except agents.CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    tasks = held_out_tasks(config, env, args.tasks)
    result = measure(
        policy, env, tasks, budgets, best_of=best_of, best_of_budget=args.best_of_budget,
        temperature=args.temperature, verifier=verifier, seed=args.seed, progress=not args.no_progress,
    )  # fmt: skip
    result.update(checkpoint=str(ckpt), verifier_dir=None if verifier is None else str(vdir))
    out = args.out or args.run / "think_budget"
    out.mkdir(parents=True, exist_ok=True)
    title = f"{config.game} {json.dumps(config.env_options)}: {ckpt.name}"
    md = out / "think_budget.md"
    atomic_write_text(md, to_markdown(result, title=title))
    atomic_write_text(out / "think_budget.json", json.dumps(result, indent=2) + "\n")
    png = plot(result, out / "think_budget.png", title=title)
    sys.stdout.write(md.read_text())
    print(f"wrote {md}, {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

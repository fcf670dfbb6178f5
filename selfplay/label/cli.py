"""python -m selfplay.label MODE: the labelling workbench, a local web page or (`--terminal`) a prompt.

    python -m selfplay.label compare --run runs/arithmetic --checkpoint imitation --checkpoint final
    python -m selfplay.label correct --run runs/arithmetic --labeller ann --terminal
    python -m selfplay.label arena --checkpoint runs/a --checkpoint runs/b    # each run's final checkpoint
    python -m selfplay.label compare --prompts questions.txt --checkpoint runs/chat/checkpoints/step_000300
    python -m selfplay.label arena --run runs/arithmetic --checkpoint a --checkpoint b --judge env:noise=0.1 \
        --votes 300                                        # a simulated labeller, unattended
    python -m selfplay.label audit --run runs/arithmetic --of compare --sample 200   # a person checks a judge

Prompts come from a reward environment's tasks (`--run`'s, or `--env`), or from a prompt file (`--prompts`:
one prompt a line, or JSONL objects with `prompt` and an optional `id`). Records go to OUT (default
RUN/labels, else runs/labels): comparisons.jsonl, corrections.jsonl, votes.jsonl (formats in
`selfplay.io.labels`); the arena also writes ratings.md, .csv and .png, an audit audits.jsonl and
audit.md. `--judge SPEC` answers in place of a person (`selfplay.label.judges`). Stop anywhere: the next
session, by anyone, takes the queue up where it stands.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import envs
from envs.reward import sample_tasks
from selfplay.config import ConfigError, completion_tokens, load_config
from selfplay.io import cannot_write
from selfplay.io.labels import FILES, LabelFileError, iter_prompt_file, records
from selfplay.label.judges import JudgeSpecError, make_judge, parse_spec, run_judge
from selfplay.label.queue import FormError, Queue
from selfplay.label.terminal import run_terminal
from selfplay.label.web import serve
from selfplay.label.workbench import MODES, Item, Sampling, Workbench
from selfplay.text.episodes import TaskSampler, held_out_ids, sampler


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m selfplay.label",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    p.add_argument("mode", choices=MODES)
    p.add_argument("--run", help="run directory: its environment, checkpoints (by name) and held-out tasks")
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        help="a checkpoint (path; a run directory for its final one; a name under RUN/checkpoints, `final` "
        "its latest step or else imitation); compare takes 1-2, correct 1, arena 2+ (default: final)",
    )
    p.add_argument("--env", help="reward environment whose tasks are the prompts (default: the run's)")
    p.add_argument("--env-options", default="{}", help="its options as JSON, e.g. '{\"digits\": 2}'")
    p.add_argument("--prompts", help="prompt file (.txt: one a line; .jsonl: objects with prompt, id)")
    p.add_argument("--tasks", type=int, default=1000, help="environment tasks in the queue (training ones)")
    p.add_argument("--n", type=int, default=2, help="compare: completions shown, 2 or 3")
    p.add_argument("--temperature", type=float, help="sampling temperature (compare, arena 1; correct 0)")
    p.add_argument("--top-k", type=int, help="sample from the k likeliest tokens only")
    p.add_argument("--max-new-tokens", type=int, help="answer length at most (default: the env's, else 64)")
    p.add_argument("--seed", type=int, default=0, help="seeds the tasks drawn and every answer")
    p.add_argument(
        "--verifier", help="correct: a verifier directory judging answers where no env scores them"
    )
    p.add_argument("--threshold", type=float, default=0.5, help="correct: the verifier's score deemed right")
    p.add_argument("--out", help="directory of the records and the queue (default RUN/labels, runs/labels)")
    p.add_argument("--labeller", default=os.environ.get("USER", ""), help="terminal: who labels")
    p.add_argument("--terminal", action="store_true", help="label at this terminal instead of a web page")
    p.add_argument("--host", default="127.0.0.1", help="web: address to listen on (default localhost only)")
    p.add_argument("--port", type=int, default=8765, help="web: port (0: any free one)")
    p.add_argument(
        "--lease-minutes", type=float, default=30, help="an item held this long unlabelled is freed"
    )
    p.add_argument("--device", default="cpu", help="torch device for the checkpoints")
    p.add_argument(
        "--judge", help="a judge answers instead of a person: env[:noise=P], verifier:path=DIR[,noise=P]"
    )
    p.add_argument(
        "--items", type=int, help="with --judge: items to label at most (default: the whole queue)"
    )
    p.add_argument("--votes", type=int, default=100, help="judged arena: votes per pair of checkpoints")
    p.add_argument("--of", choices=("compare", "arena"), default="compare", help="audit: which records")
    p.add_argument("--sample", type=int, default=200, help="audit: records drawn to audit")
    p.add_argument("--audited", help="audit: only this labeller's records (default: every judge's)")
    return p


def _fail(msg: str) -> SystemExit:
    return SystemExit(f"error: {msg}")


def _run_config(run: Path):
    try:
        return load_config(run / "config.yaml")
    except ConfigError as e:
        raise _fail(f"--run {run}: {e}") from None


def _checkpoints(args, run: Path | None) -> dict[str, Path]:
    specs = list(args.checkpoint)
    if not specs and run is not None:
        specs = ["final"]
    paths = []
    for spec in specs:
        path = Path(spec)
        if not path.exists() and run is not None:
            path = _final(run) if spec == "final" else run / "checkpoints" / spec
        elif (path / "checkpoints").is_dir() and not (path / "config.json").exists():
            path = _final(path)
        if not (path / "config.json").is_file():
            raise _fail(
                f"--checkpoint {spec}: no checkpoint there" + (f" (nor in {run}/checkpoints)" if run else "")
            )
        paths.append(path.resolve())
    names: dict[str, Path] = {}
    for path in paths:
        name = (
            path.name
            if sum(p.name == path.name for p in paths) == 1
            else f"{path.parent.parent.name}/{path.name}"
        )
        if name in names:
            raise _fail(f"--checkpoint {path}: given twice")
        names[name] = path
    return names


def _final(run: Path) -> Path:
    """A run's final checkpoint: its latest step's (stage 2), else its imitation's."""
    steps = sorted(p for p in (run / "checkpoints").glob("step_*") if (p / "config.json").is_file())
    return steps[-1] if steps else run / "checkpoints" / "imitation"


def _items(args, env: envs.RewardEnv | None, config) -> tuple[list[Item], dict[str, Any]]:
    if args.prompts:
        try:
            prompts = list(iter_prompt_file(args.prompts))
        except LabelFileError as e:
            raise _fail(str(e)) from None
        items = {}
        for where, pid, prompt in prompts:
            pid = pid or "p" + hashlib.sha256(prompt.encode()).hexdigest()[:12]
            items.setdefault(pid, Item(pid, prompt, where=where))
        return list(items.values()), {"file": str(args.prompts)}
    if env is None:
        return [], {}
    if config is not None:  # the run's training tasks: never one it evaluates on
        tasks = TaskSampler(env, held_out_ids(config, env), args.seed)(args.tasks)
    else:
        tasks = sample_tasks(env, args.tasks, seed=args.seed)
    unique = {t.id: Item(t.id, env.prompt_for(t), t) for t in tasks}
    return list(unique.values()), {"env": env.name, "options": env.options}


def build(args: argparse.Namespace) -> tuple[Workbench, Path]:
    """The workbench the arguments describe, and its directory; every check before any model loads."""
    run = Path(args.run) if args.run else None
    if run is not None and not (run / "config.yaml").is_file():
        raise _fail(f"--run {run}: not a run directory (no config.yaml)")
    config = _run_config(run) if run is not None else None
    env = None
    if args.env or (config is not None and config.is_reward_env):
        try:
            options = json.loads(args.env_options) if args.env else config.env_options
            env = envs.make(args.env, **options) if args.env else config.reward_env()
        except (ValueError, TypeError, envs.UnknownEnvError) as e:
            raise _fail(f"--env / --env-options: {e}") from None
        if not isinstance(env, envs.RewardEnv):
            raise _fail(f"{env.name} is a game; the workbench labels a reward environment's text")
        if env.max_turns != 1:
            raise _fail(f"{env.name} is multi-turn; the workbench labels single-turn answers")
    items, source = _items(args, env, config if not args.env else None)
    checkpoints = {} if args.mode == "audit" else _checkpoints(args, run)
    audited = _audited(args, run) if args.mode == "audit" else []
    if args.temperature is None:
        args.temperature = 0.0 if args.mode == "correct" else 1.0
    if args.max_new_tokens is None:
        if env is not None:
            args.max_new_tokens = completion_tokens(config.rl.max_new_tokens if config else None, env)
        else:
            args.max_new_tokens = 64
    sampling = Sampling(args.temperature, args.top_k, args.max_new_tokens, args.seed)
    out = Path(args.out) if args.out else (run / "labels" if run is not None else Path("runs/labels"))
    if why := cannot_write(out):
        raise _fail(f"the labels' directory {why}")
    queue = Queue(out, args.mode, lease_s=args.lease_minutes * 60)
    if args.mode not in ("arena", "audit") and not items:
        raise _fail(f"{args.mode} needs prompts: --run (a reward environment's), --env or --prompts")
    import agents  # here: labelling from files needs no torch

    models = {}
    for name, path in checkpoints.items():
        try:
            policy = agents.load(path, device=args.device)
        except agents.CheckpointError as e:
            raise _fail(str(e)) from None
        policy.model.eval()
        for item in items:  # every prompt readable by every model, before anyone is shown one
            if problem := _unreadable(policy, item.prompt):
                raise _fail(f"{item.where or item.id}: checkpoint {name} cannot read this prompt: {problem}")
        models[name] = sampler(policy, env) if env is not None else policy
    try:
        bench = Workbench(
            args.mode,
            queue,
            models,
            items=items,
            sampling=sampling,
            n=args.n,
            env=env,
            source=source,
            wrong=_wrong(args, env),
            audited=audited,
        )
    except ValueError as e:
        raise _fail(str(e)) from None
    return bench, out


def _unreadable(policy, prompt: str) -> str | None:
    """Why `policy` cannot answer `prompt` (a character its tokenizer lacks, no room left in its context),
    or None."""
    try:
        n = len(policy.encode_prompt(prompt))
    except ValueError as e:  # agents.TokenizerError
        return str(e)
    block = getattr(policy.model.cfg, "block_size", None)
    return f"{n} tokens leave no room for an answer in a context of {block}" if block and n >= block else None


def _audited(args, run: Path | None) -> list[dict]:
    """`--sample` records of `--of`'s file (a judge's, or `--audited`'s), drawn with `--seed`."""
    out = Path(args.out) if args.out else (run / "labels" if run is not None else Path("runs/labels"))
    path = out / FILES[args.of]
    try:
        rows = [r for _, r in records(path)]
    except LabelFileError as e:
        raise _fail(f"audit: {e}") from None
    who = args.audited
    rows = [
        r for r in rows if (r.get("labeller") == who if who else str(r.get("labeller")).startswith("judge:"))
    ]
    if not rows:
        raise _fail(f"audit: {path} holds no records of {who or 'a judge'}")
    return random.Random(args.seed).sample(rows, min(args.sample, len(rows)))


def _wrong(args, env):
    """Correct mode: why an answer is wrong (the env's score below 1, else the verifier's below the
    threshold), None when right; with neither, every answer goes to the person."""
    if args.mode != "correct":
        return None
    verifier = None
    if args.verifier:
        import agents  # here: labelling from files needs no torch

        verifier = agents.load_verifier(args.verifier, device=args.device)

    def judge(item: Item, answer: str) -> dict | None:
        if env is not None and item.task is not None:
            score = env.score(item.task, answer)
            return None if score >= 1.0 else {"by": "env", "score": score}
        if verifier is not None:
            score = float(verifier.score([item.prompt], [answer])[0])
            return None if score >= args.threshold else {"by": "verifier", "score": score}
        return {"by": "none"}

    return judge


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    judge = None
    if args.judge:
        try:
            parse_spec(args.judge)
        except JudgeSpecError as e:
            raise _fail(str(e)) from None
    bench, out = build(args)
    print(f"label {args.mode}: records in {out / FILES[args.mode]}", file=sys.stderr)
    if args.judge:
        try:
            judge = make_judge(args.judge, env=bench.env, device=args.device, seed=args.seed)
            prompts = [it for it in bench.items.values() if args.mode == "arena"]
            made = run_judge(bench, judge, items=args.items, prompts=prompts, votes=args.votes)
        except (JudgeSpecError, FormError, ValueError) as e:
            raise _fail(str(e)) from None
        print(f"{judge.name}: {made} records in {out / FILES[args.mode]}")
        if args.mode == "audit":
            print((out / "audit.md").read_text(), end="")
        return 0
    if args.terminal:
        return run_terminal(bench, args.labeller, sys.stdin, sys.stdout)

    return serve(bench, host=args.host, port=args.port)

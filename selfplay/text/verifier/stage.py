"""The verifier stage of a reward environment (when `rl.reward` is `verifier` or `mixed`): an outcome
verifier trained on the imitation policy's own samples, each labelled by the environment's score, then
measured on held-out tasks: ROC-AUC, and best-of-N against greedy decoding.

Files: `RUN/checkpoints/verifier` (meta `stage: verifier`, with its metrics), `RUN/verifier.json`, and with
`verifier.init: imitation:STEPS` the verifier's own imitation run in `RUN/verifier_base/`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

import agents
import selfplay.core.memory as memory
import selfplay.core.rundir as rundir
import selfplay.text.verifier as V
from agents.verifier import Verifier, load_verifier, new_verifier, save_verifier
from envs import files
from selfplay.config import Config, fingerprint, section_dump
from selfplay.core.rundir import rel
from selfplay.core.training import config_hash
from selfplay.io import atomic_write_text
from selfplay.label import Queue
from selfplay.label.judges import make_judge, run_judge
from selfplay.label.workbench import Item, Sampling, Workbench
from selfplay.text.actor import VERIFIER_DIR
from selfplay.text.episodes import (
    TaskSampler,
    accuracy,
    held_out_ids,
    held_out_tasks,
    majority,
    make_env,
    max_new_tokens,
    sampler,
)
from selfplay.text.imitate import imitation_stage


def verifier_hash(config: Config) -> str:
    """What the verifier depends on: the imitation checkpoint, the verifier section and, when it learns
    from comparisons, the judge making them."""
    judged = {"judge": section_dump(config.judge, "judge")} if config.verifier.labels == "comparisons" else {}
    return fingerprint(config, {"verifier"}, imitation=config_hash(config), **judged)


def _pretrained_dir(path: Path) -> bool:
    """Whether `path` is a model directory as `save_pretrained` writes it (not a selfplay checkpoint)."""
    try:
        config = files.read_json(path / "config.json", ValueError)
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "format" not in config


def initial_verifier(
    config: Config, policy: agents.Policy, run_dir: Path | None = None, *, progress: bool = True
):
    """The verifier before training, per `verifier.init` (see the config reference); `imitation:STEPS`
    trains (or reuses) its base in `run_dir/verifier_base` on the run's transcripts."""

    vc = config.verifier
    likelihood = 0.0 if vc.likelihood else None
    if vc.init == "policy":
        return Verifier.from_policy(policy, seed=vc.seed, likelihood=likelihood)
    if vc.init == "scratch":
        cfg = policy.model.cfg
        return new_verifier(
            cfg, tokenizer=policy.tokenizer, device=str(policy.device), seed=vc.seed, likelihood=likelihood
        )
    if vc.init.startswith("imitation:"):
        if run_dir is None:
            raise ValueError("verifier.init: imitation:STEPS needs the run directory")
        base_dir = run_dir / "verifier_base"
        base_dir.mkdir(parents=True, exist_ok=True)
        data = Path(config.transcripts.path) if config.transcripts.path else run_dir / "transcripts.jsonl"
        path = imitation_stage(_base_config(config), data, base_dir, progress=progress)
        base = agents.load(path, device=str(policy.device))
        return Verifier.from_policy(base, seed=vc.seed, likelihood=likelihood)
    if config.model.backbone == "hf" and _pretrained_dir(Path(vc.init)):  # the usual start of a reward model
        from agents.hf import policy_from_pretrained  # the `hf` extra

        base = policy_from_pretrained(vc.init, device=str(policy.device), dtype=config.model.dtype)
        if base.tokenizer.to_dict() != policy.tokenizer.to_dict():
            raise agents.CheckpointError(
                f"verifier.init: {vc.init} has a tokenizer of its own; the verifier must read the "
                "policy's (start from model.path, or from a checkpoint of this run)"
            )
        return Verifier.from_policy(base, seed=vc.seed, likelihood=likelihood)
    try:
        base = agents.load(vc.init, device=str(policy.device))
    except agents.CheckpointError as e:
        raise agents.CheckpointError(f"verifier.init: {e}") from None
    if getattr(base.model.cfg, "backbone", "native") != config.model.backbone:
        raise agents.CheckpointError(
            f"verifier.init: {vc.init} is a {getattr(base.model.cfg, 'backbone', 'native')} checkpoint "
            f"but model.backbone is {config.model.backbone}"
        )
    if base.meta.get("game") != config.game or base.tokenizer.to_dict() != policy.tokenizer.to_dict():
        raise agents.CheckpointError(
            f"verifier.init: {vc.init} is a {base.meta.get('game')!r} checkpoint with its own tokenizer; "
            f"it must be a {config.game!r} policy with the policy's tokenizer"
        )
    return Verifier.from_policy(base, seed=vc.seed, likelihood=likelihood)


def _base_config(config: Config) -> Config:
    """The config of the verifier's own imitation run (`verifier.init: imitation:STEPS`)."""
    vc = config.verifier
    if not vc.init.startswith("imitation:"):
        return config
    steps = int(vc.init.split(":", 1)[1])
    return config.model_copy(update={"imitation": config.imitation.model_copy(update={"max_steps": steps})})


def verifier_outputs(config: Config, run_dir: Path) -> list[rundir.Output]:
    """What this stage writes (the verifier's base model, the verifier), each allowed to stay if this
    config made it."""
    base, ver = run_dir / "verifier_base" / "checkpoints" / "imitation", run_dir / VERIFIER_DIR
    return [
        rundir.made_output("the verifier's base model", base, config_hash(_base_config(config))),
        rundir.made_output("a verifier", ver, verifier_hash(config)),
    ]


def verifier_stage(config: Config, run_dir: Path, imitation: Path, *, progress: bool = True) -> Path:
    """The verifier of the imitation checkpoint `imitation`: trained and measured once per configuration."""
    path, summary = run_dir / VERIFIER_DIR, run_dir / "verifier.json"
    make = lambda: _make(config, run_dir, imitation, progress=progress)  # noqa: E731
    return rundir.reuse_or_make("verifier", path, summary, verifier_hash(config), make)


def _make(config: Config, run_dir: Path, imitation: Path, *, progress: bool) -> Path:
    vc, path = config.verifier, run_dir / VERIFIER_DIR
    if config.rl.threads:
        torch.set_num_threads(config.rl.threads)
    t0 = time.perf_counter()
    memory.reset()
    env = make_env(config)
    policy = agents.load(imitation, device=config.rl.device)
    sampling = {
        "temperature": vc.temperature,
        "max_new_tokens": max_new_tokens(config, env),
        "stop": env.stop,
    }
    tasks = TaskSampler(env, held_out_ids(config, env), seed=[vc.seed, 31])(vc.tasks)
    labels = run_dir / "labels"
    data, pairs = _data(
        config, run_dir, labels, policy, env, tasks, sampling, seed=vc.seed, progress=progress
    )
    verifier = initial_verifier(config, policy, run_dir, progress=progress)
    writer = SummaryWriter(str(run_dir / "tb" / "verifier"))
    result = V.train(
        verifier, pointwise=data, pairwise=pairs, writer=writer, progress=progress, **V.knobs(vc)
    )
    measured, held_data = _measure(config, env, policy, verifier, sampling, progress=progress)
    for key, value in measured.items():
        writer.add_scalar(f"verifier/{key}", value, vc.steps)
    writer.close()
    summary = {
        "checkpoint": rel(path, run_dir),
        "train_completions": len(data),
        "train_positive_rate": float(np.mean([r.label for r in data])) if data else None,
        "train_pairs": len(pairs),
        "heldout_tasks": vc.eval_tasks,
        "heldout_completions": len(held_data),
        "best_of": vc.best_of,
        **measured,
        "val": asdict(result.final),
        "kept_step": result.best_step,  # the weights with the best validation ROC-AUC
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mib": memory.peak_mib(),  # of this stage
    }
    meta = {"stage": "verifier", "game": config.game, "parent": rel(imitation, run_dir)}
    meta["config_hash"] = verifier_hash(config)
    save_verifier(verifier, path, meta={**meta, "metrics": measured})
    atomic_write_text(run_dir / "verifier.json", json.dumps(summary, indent=2) + "\n")
    k = vc.best_of
    print(
        f"verifier: held-out ROC-AUC {measured['heldout_roc_auc']:.3f} on {len(held_data)} completions; "
        f"best-of-{k} {measured['best_of_n_accuracy']:.3f} vs greedy {measured['greedy_accuracy']:.3f} "
        f"(majority {measured['majority_of_n_accuracy']:.3f}, pass@{k} {measured['pass_at_n']:.3f})"
    )
    return path


def _data(
    config: Config,
    run_dir: Path,
    labels: Path,
    policy,
    env,
    tasks,
    sampling: dict,
    *,
    seed: int,
    progress: bool,
) -> tuple[list[V.Labelled], list[V.Comparison]]:
    """The verifier's training data from `policy`'s samples of `tasks`, as `verifier.labels` says: each
    labelled by the env's score (plus the expert's answers, plus pairs), or comparisons by the judge
    through the workbench in the directory `labels`."""
    vc = config.verifier
    if vc.labels == "comparisons":
        return [], _compared(config, run_dir, labels, policy, env, tasks, sampling, seed, progress=progress)
    data = _labelled(policy, env, tasks, vc.samples, seed=seed, progress=progress, **sampling)
    if vc.with_expert:
        data += [V.Labelled(env.prompt_for(t), env.expert(t), 1.0, f"expert, task {t.id}") for t in tasks]
    labels.mkdir(parents=True, exist_ok=True)
    V.save_records(labels / LABELLED, data)  # for the refreshes, which train on every round so far
    return data, V.make_pairs(data, max_per_prompt=vc.pairs, seed=seed) if vc.pairs else []


LABELLED = "labelled.jsonl"  # the env-labelled samples of a labels directory (`verifier.labels: env`)


def _recorded(config: Config, labels: Path) -> tuple[list[V.Labelled], list[V.Comparison]]:
    """What a labels directory holds for the verifier: env-labelled samples (and their pairs), and the
    run's judge's comparisons."""
    vc, data, pairs = config.verifier, [], []
    if (labels / LABELLED).exists():
        data = V.load_labelled(labels / LABELLED)
        pairs = V.make_pairs(data, max_per_prompt=vc.pairs, seed=vc.seed) if vc.pairs else []
    if (labels / "comparisons.jsonl").exists():
        who = None if config.judge.kind == "people" else f"judge:{config.judge.spec()}"
        pairs += V.load_comparisons(labels / "comparisons.jsonl", labeller=who)
    return data, pairs


def refresh(
    config: Config, run_dir: Path, policy, current: Path, step: int, *, progress: bool = True
) -> Path:
    """The verifier `current` retrained on `policy`'s samples (at the RL temperature) of fresh training
    tasks, labelled as the verifier stage labels, for `rl.verifier_refresh_steps` steps from its weights;
    saved as `RUN/checkpoints/verifier_step_STEP` (its held-out metrics before and after in the meta).

    It trains on every round labelled so far (the verifier stage's, earlier refreshes'), the newest
    repeated to make about half: on the new samples alone it forgot what it knew, and its ROC-AUC on the
    policy's answers fell below the verifier's as trained. It is judged (and its best weights kept) on
    the new round's held-out prompts alone, the policy's answers that the reward reads next: on all rounds
    the old ones outvoted them, and a SmolLM2 refresh kept its starting weights."""

    rc, vc = config.rl, config.verifier
    env = make_env(config)
    sampling = {
        "temperature": rc.temperature,
        "max_new_tokens": max_new_tokens(config, env),
        "stop": env.stop,
    }
    tasks = TaskSampler(env, held_out_ids(config, env), seed=[vc.seed, 37, step])(rc.verifier_refresh_tasks)
    labels = run_dir / "labels" / f"refresh_{step:06d}"
    was_training = policy.model.training
    policy.model.eval()
    data, pairs = _data(
        config, run_dir, labels, policy, env, tasks, sampling, seed=vc.seed + step, progress=progress
    )
    policy.model.train(was_training)
    earlier = [
        run_dir / "labels",
        *(p for p in sorted(labels.parent.glob("refresh_*")) if p.name < labels.name),
    ]
    old = [_recorded(config, p) for p in earlier]
    old_data, old_pairs = [r for d, _ in old for r in d], [c for _, ps in old for c in ps]
    held_out = V.split_prompts([r.prompt for r in [*data, *pairs]], vc.val_fraction, vc.seed + step)

    def trained(records: list) -> list:  # held-out prompts are validated on, once, and never trained on
        return [r for r in records if r.prompt not in held_out]

    k = max(1, round((len(old_data) + len(old_pairs)) / max(1, len(data) + len(pairs))))
    data = trained(old_data) + trained(data) * (k - 1) + data  # the new round k times over
    pairs = trained(old_pairs) + trained(pairs) * (k - 1) + pairs
    verifier = load_verifier(current, device=str(policy.device))
    steps = rc.verifier_refresh_steps
    knobs = {**V.knobs(vc), "steps": steps, "seed": vc.seed + step, "warmup_steps": min(20, steps // 5)}
    result = V.train(verifier, pointwise=data, pairwise=pairs, held_out=held_out, progress=progress, **knobs)
    meta = {"stage": "verifier", "game": config.game, "parent": rel(current, run_dir), "refreshed_at": step}
    meta["val_before"] = {k: v for k, v in asdict(result.initial).items() if np.isfinite(v)}
    meta["val"] = {k: v for k, v in asdict(result.final).items() if np.isfinite(v)}
    meta["kept_step"] = result.best_step  # 0: no step did better on validation than the weights it began with
    for stale in ("metrics", "config_hash"):  # the verifier stage's measurements of the one it began from
        verifier.meta.pop(stale, None)
    return save_verifier(verifier, run_dir / "checkpoints" / f"verifier_step_{step:06d}", meta=meta)


def _compared(
    config: Config,
    run_dir: Path,
    labels: Path,
    policy,
    env,
    tasks,
    sampling: dict,
    seed: int,
    *,
    progress: bool,
) -> list[V.Comparison]:
    """Comparisons of three samples of each task through the labelling workbench (in `labels`): made by
    the run's judge, or (`judge.kind: people`) read from what people labelled there."""
    items = [Item(t.id, env.prompt_for(t), t) for t in {t.id: t for t in tasks}.values()]
    who = None
    if config.judge.kind != "people":
        judge = make_judge(config.judge.spec(), env=env, device=str(policy.device), seed=config.judge.seed)
        sampling = Sampling(sampling["temperature"], None, sampling["max_new_tokens"], seed)
        bench = Workbench(
            "compare",
            Queue(labels, "compare"),
            {"policy": sampler(policy, env)},
            items=items,
            sampling=sampling,
            n=3,
            env=env,
        )
        run_judge(bench, judge, progress=progress)
        who = judge.name
    path = labels / "comparisons.jsonl"
    if not path.exists():
        raise V.VerifierDataError(
            f"{path}: no comparisons yet; with judge.kind: people, label first: python -m selfplay.label "
            f"compare --run {run_dir}; then python -m selfplay.run --resume {run_dir}"
        )
    return V.load_comparisons(path, labeller=who, ids={it.id for it in items} if who else None)


def _labelled(policy, env, tasks, n: int, *, seed: int, progress: bool, **sampling) -> list[V.Labelled]:
    """`n` sampled completions of each task, labelled by the env's score (a bar over the sampling)."""
    prompts = [env.prompt_for(t) for t in tasks]

    def score(i: int, completion: str) -> float:
        return env.score(tasks[i], completion)

    gen = sampler(policy, env)
    return V.label_completions(gen, prompts, score, n, seed=seed, progress=progress, **sampling)


def _measure(
    config: Config, env, policy, verifier, sampling: dict, *, progress: bool
) -> tuple[dict[str, Any], list]:
    """The verifier on held-out tasks (no stage trains on them), completions sampled afresh from the
    imitation policy: ROC-AUC and accuracy, and best-of-N, majority-of-N and pass@N against greedy."""
    vc = config.verifier
    held = held_out_tasks(config, env, vc.eval_tasks)
    n, k = max(vc.samples, vc.best_of), vc.best_of
    held_data = _labelled(policy, env, held, n, seed=vc.seed + 1, progress=progress, **sampling)
    heldout = V.evaluate(verifier, pointwise=held_data)
    if vc.best_of_temperature is not None:  # best-of-N candidates at their own temperature
        hotter = {**sampling, "temperature": vc.best_of_temperature}
        cands = _labelled(policy, env, held, k, seed=vc.seed + 2, progress=progress, **hotter)
    else:
        cands = [r for i, r in enumerate(held_data) if i % n < k]
    scores = verifier.score([r.prompt for r in cands], [r.completion for r in cands]).reshape(len(held), k)
    labels = np.array([r.label for r in cands]).reshape(len(held), k)
    comps = np.array([r.completion for r in cands], dtype=object).reshape(len(held), k)
    picked = scores.argmax(1)
    voted = [majority(env, list(row)) for row in comps]
    measured = {
        "heldout_roc_auc": heldout.roc_auc,
        "heldout_accuracy": heldout.accuracy,
        "greedy_accuracy": accuracy(policy, env, held, max_new_tokens=sampling["max_new_tokens"]),
        "best_of_n_accuracy": float(labels[np.arange(len(held)), picked].mean()),
        "majority_of_n_accuracy": float(np.mean([env.score(t, c) for t, c in zip(held, voted, strict=True)])),
        "sample_accuracy": float(labels.mean()),
        "pass_at_n": float((labels >= 0.5).any(1).mean()),
        "best_of_temperature": vc.best_of_temperature or vc.temperature,
    }
    return measured, held_data

"""The stage-2 learner loop, once, for game self-play (`selfplay.learner`) and text RL (`selfplay.text_rl`).

Actors (`selfplay.runtime`) deliver finished games, or groups of scored completions; the learner keeps
the newest `replay_size` samples and trains when the buffer holds `min_replay` and no sample would be
used more than `replay_ratio` times on average; it publishes its weights every `publish_every` steps and
every `checkpoint_every` steps writes a checkpoint, then the resume state that points at it
(`selfplay.resume`), then `RUN/<stage>/stats.json` (what the runtime delivered). A killed run resumes from
its last checkpoint (`resume=True`); a run whose minutes ran out ends with a checkpoint of its last step.

What differs between the two is a `Stage`: its config section, how collected items become samples, the
loss, what a checkpoint records, what is logged and evaluated.
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import agents
from selfplay import resume as resume_state
from selfplay.io import atomic_write_text
from selfplay.rundir import rel, resolve


class Replay:
    """The newest `capacity` samples; uniform sampling."""

    def __init__(self, capacity: int) -> None:
        self.items: deque = deque(maxlen=capacity)

    def add(self, samples: list) -> None:
        self.items.extend(samples)

    def sample(self, n: int, rng: random.Random) -> list:
        return [self.items[rng.randrange(len(self.items))] for _ in range(n)]

    def __len__(self) -> int:
        return len(self.items)


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def add_counters(earlier: dict[str, float], now: dict[str, float]) -> dict[str, float]:
    """Counters of this runtime added to those of the runs it resumes."""
    return {k: earlier.get(k, 0) + now.get(k, 0) for k in {**earlier, **now}}


class Stage:
    """One kind of stage 2, as the loop sees it. Subclasses set the class attributes and `cfg` (their
    config section: steps, batch_size, lr, replay_*, publish_every, checkpoint_every, ...)."""

    name: str  # "selfplay" or "rl": RUN/<name>/stats.json, RUN/tb/<name>, messages
    state_dir: str  # the resume state's directory in the run directory
    what: str  # "a self-play run", for the message refusing to start over one
    # Resume-state keys of `Learner.samples` and `Learner.episodes`, then their names in stats.json.
    state_keys: tuple[str, str]
    stats_keys: tuple[str, str]
    waiting_for: str  # "games": what the progress bar says the learner waits for
    sample: Any  # the replay's sample class: `to_json()`, and `from_json(row)` for the resume state
    extra_keys: tuple[str, ...] = ()  # the stage's own keys in the resume state (`state()`)

    def __init__(self, config, run_dir: Path) -> None:
        self.config, self.run_dir = config, run_dir
        self.label = self.name  # the progress bar's description

    def make_runtime(self, current: Path, model: torch.nn.Module, version: int):
        """The runtime whose actors play with the checkpoint `current` (then the published weights)."""
        raise NotImplementedError

    def ingest(self, items: list, stats: Any, version: int) -> tuple[list, int]:
        """The replay samples of a batch of collected items, and how many episodes (games) they end."""
        raise NotImplementedError

    def loss(self, policy: agents.Policy, batch: list, ref: agents.Policy | None):
        """(loss, metrics) of one batch."""
        raise NotImplementedError

    def meta(self) -> dict[str, Any]:
        """What a checkpoint records besides its step, version and parent."""
        raise NotImplementedError

    def log(self, learner: Learner, metrics: dict[str, float]) -> None:
        """TensorBoard scalars, every 10 steps."""

    def state(self) -> dict[str, Any]:
        """The stage's own part of the resume state."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what `state` saved."""

    def started(self, learner: Learner) -> None:
        """Before the actors start."""

    def stepped(self, learner: Learner) -> None:
        """After each learner step (and its publication), before a checkpoint."""

    def saved(self, learner: Learner, ckpt: Path) -> None:
        """After a checkpoint and its resume state are written."""

    def finished(self, learner: Learner) -> None:
        """After the last checkpoint."""


@dataclass
class Learner:
    """The learner's side of a stage-2 run: what the stage hooks may read."""

    stage: Stage
    start: Path  # the checkpoint stage 2 began from
    policy: agents.Policy
    writer: SummaryWriter
    bar: Any  # tqdm
    step: int = 0
    version: int = 0  # of the weights last published
    samples: int = 0  # collected (positions, completions)
    episodes: int = 0  # finished (games, episodes)
    elapsed: float = 0.0  # seconds, over every run this one resumes
    history: list[Path] = field(default_factory=list)  # checkpoints, the start first
    earlier: dict[str, float] = field(default_factory=dict)  # runtime counters of the runs it resumes
    runtime: Any = None

    @property
    def run_dir(self) -> Path:
        return self.stage.run_dir


def load_state(stage: type[Stage] | Stage, run_dir: Path) -> dict[str, Any] | None:
    """The resume state of a `stage` run (`selfplay.resume`), its paths resolved and its replay as
    samples; None if there is none."""
    keys = ("checkpoint", "replay", "rng", "step", "version", *stage.state_keys, "elapsed", "history")
    state = resume_state.load(run_dir / stage.state_dir, (*keys, *stage.extra_keys, "runtime"))
    if state is None:
        return None
    try:
        state["checkpoint"] = resolve(state["checkpoint"], run_dir)
        state["history"] = [resolve(p, run_dir) for p in state["history"]]
        state["replay"] = [stage.sample.from_json(r) for r in state["replay"]]
        agents.read_meta(state["checkpoint"])
    except (KeyError, TypeError, ValueError) as e:  # CheckpointError is a ValueError
        where = run_dir / stage.state_dir / resume_state.STATE
        raise resume_state.ResumeError(f"{where}: cannot resume from it ({e})") from None
    return state


def train(stage: Stage, start: Path, *, resume: bool = False, progress: bool = True) -> Path:
    """Stage 2 from the checkpoint `start`; returns the final checkpoint."""
    cfg, run_dir, name = stage.cfg, stage.run_dir, stage.name
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    state = load_state(stage, run_dir) if resume else None
    if not resume and (run_dir / stage.state_dir).exists():
        raise agents.CheckpointError(
            f"{run_dir} already holds {stage.what}; continue it with --resume {run_dir} "
            "or choose another run_dir"
        )
    current = state["checkpoint"] if state else start
    policy = agents.load(current, device=cfg.device)
    ref = agents.load(start, device=cfg.device) if cfg.kl_weight > 0 else None
    opt = agents.adamw(policy.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    replay = Replay(cfg.replay_size)
    rng = random.Random(cfg.seed)
    writer = SummaryWriter(str(run_dir / "tb" / name))
    bar = tqdm(total=cfg.steps, desc=stage.label, unit="step", disable=not progress)
    learner = Learner(stage, start, policy, writer, bar, history=[start])
    if state:
        opt.load_state_dict(state["optimizer"])
        replay.add(state["replay"])
        resume_state.set_rng_state(rng, state["rng"])
        learner.samples, learner.episodes = (state[k] for k in stage.state_keys)
        learner.step, learner.version, learner.elapsed = state["step"], state["version"], state["elapsed"]
        learner.history, learner.earlier = state["history"], state["runtime"]
        stage.restore(state)
        bar.update(learner.step)
        print(f"{name}: resuming at step {learner.step} from {current}")
    saved_at = learner.step  # the step of the newest checkpoint (the start's, or the resumed one's)
    stage.started(learner)
    learner.runtime = runtime = stage.make_runtime(current, policy.model, learner.version)
    runtime.start()
    t_start = time.perf_counter() - learner.elapsed

    def ready() -> bool:
        return (
            len(replay) >= cfg.min_replay
            and learner.step * cfg.batch_size < cfg.replay_ratio * learner.samples
        )

    def save() -> None:
        """Checkpoint, then the resume state that points at it, then what the runtime delivered."""
        learner.elapsed = time.perf_counter() - t_start
        meta = {**stage.meta(), "step": learner.step, "version": learner.version}
        meta["parent"] = rel(learner.history[-1], run_dir)
        ckpt = agents.save(policy, run_dir / "checkpoints" / checkpoint_name(learner.step), meta=meta)
        learner.history.append(ckpt)
        counters = add_counters(learner.earlier, runtime.stats())
        samples, episodes = stage.state_keys
        resume_state.save(
            run_dir / stage.state_dir,
            opt.state_dict(),
            {
                "checkpoint": rel(ckpt, run_dir),
                "replay": [s.to_json() for s in replay.items],
                "rng": resume_state.rng_state(rng),
                "step": learner.step,
                "version": learner.version,
                samples: learner.samples,
                episodes: learner.episodes,
                "elapsed": learner.elapsed,
                "history": [rel(p, run_dir) for p in learner.history],
                **stage.state(),
                "runtime": counters,
            },
        )
        samples, episodes = stage.stats_keys
        stats = {"step": learner.step, episodes: learner.episodes, samples: learner.samples}
        stats["learner"] = f"{socket.gethostname()}:{os.getpid()}"  # where it ran (a Ray node?)
        stats.update(counters, pids=runtime.pids())  # the processes of this run, for ps, py-spy or kill
        atomic_write_text(run_dir / name / "stats.json", json.dumps(stats, indent=2) + "\n")
        stage.saved(learner, ckpt)

    metrics: dict[str, float] = {}
    try:
        while learner.step < cfg.steps:
            if cfg.max_minutes is not None and time.perf_counter() - t_start > 60 * cfg.max_minutes:
                print(f"{name}: {cfg.max_minutes} minute budget used at step {learner.step}")
                break
            if not ready():  # say what the learner waits for, or a stalled run looks like a hung one
                bar.set_postfix_str(_waiting(stage, len(replay), learner))
            for _, items, stats in runtime.collect(timeout=0.0 if ready() else 1.0):
                samples, episodes = stage.ingest(items, stats, learner.version)
                replay.add(samples)
                learner.samples += len(samples)
                learner.episodes += episodes
            if not ready():
                continue
            policy.model.train()
            for group in opt.param_groups:
                group["lr"] = agents.lr_at(learner.step, lr=cfg.lr, warmup_steps=cfg.warmup_steps)
            with policy.autocast():
                loss, metrics = stage.loss(policy, replay.sample(cfg.batch_size, rng), ref)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.model.parameters(), cfg.grad_clip)
            opt.step()
            policy.model.eval()
            learner.step += 1
            bar.set_postfix_str("", refresh=False)
            bar.update()
            if learner.step % cfg.publish_every == 0:
                learner.version += 1
                runtime.publish(policy.model, learner.version)
            if learner.step % 10 == 0:
                stage.log(learner, metrics)
            stage.stepped(learner)
            if learner.step % cfg.checkpoint_every == 0 or learner.step == cfg.steps:
                save()
                saved_at = learner.step
    finally:
        runtime.close()
    if learner.step != saved_at:  # minutes ran out between checkpoints
        save()
    bar.close()
    learner.elapsed = time.perf_counter() - t_start
    stage.finished(learner)
    writer.close()
    return learner.history[-1]


def _waiting(stage: Stage, replay: int, learner: Learner) -> str:
    cfg, (samples, episodes) = stage.cfg, stage.stats_keys
    what = f"waiting for {stage.waiting_for}"
    if replay < cfg.min_replay:
        return f"{what}: replay {replay}/{cfg.min_replay} {samples} ({learner.episodes} {episodes})"
    return f"{what}: {learner.samples} {samples} so far, each used {cfg.replay_ratio:g} times at most"

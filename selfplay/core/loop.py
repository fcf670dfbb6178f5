"""The stage-2 learner loop, once, for game self-play (`selfplay.games.selfplay`) and text RL
(`selfplay.text.rl`).

Actors (`selfplay.runtime`) deliver finished games, or groups of scored completions; the learner keeps
the newest `replay_size` samples and trains when the buffer holds `min_replay` and no sample would be
used more than `replay_ratio` times on average; it publishes its weights every `publish_every` steps and
every `checkpoint_every` steps writes a checkpoint, then the resume state that points at it
(`selfplay.core.resume`), then `RUN/<stage>/stats.json` (what the runtime delivered). A killed run resumes
from its last checkpoint (`resume=True`); a run whose minutes ran out ends with a checkpoint of its last step.

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
from typing import Any, ClassVar

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import agents
import selfplay.core.memory as memory
import selfplay.core.resume as resume_state
from selfplay.core.rundir import rel
from selfplay.io import atomic_write_text


class Diverged(RuntimeError):
    """The learner's loss, gradients or weights stopped being finite: the run stops without saving them,
    naming the step and the last good checkpoint."""


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
    # The replay's sample class: `to_json()`, and `from_json(row)` (which checks it) for the resume state.
    sample: Any
    # The stage's own resume-state keys (`state()`), checked on resume: name -> (type, default).
    state_fields: ClassVar[dict[str, Any]] = {}

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
    """The learner's side of a stage-2 run, which the stage's hooks may read."""

    stage: Stage
    start: Path  # the checkpoint stage 2 began from
    policy: agents.Policy
    ref: agents.Policy | None  # the start, frozen, for the KL penalty
    opt: torch.optim.Optimizer
    replay: Replay
    rng: random.Random
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

    def ready(self) -> bool:
        """Whether to train now: enough samples, and none used more than `replay_ratio` times on average."""
        cfg = self.stage.cfg
        fresh = self.step * cfg.batch_size < cfg.replay_ratio * self.samples
        return len(self.replay) >= cfg.min_replay and fresh


def load_state(stage: type[Stage] | Stage, run_dir: Path) -> dict[str, Any] | None:
    """The resume state of a `stage` run (`selfplay.core.resume`), every field checked, its paths resolved
    (each inside the run directory, the checkpoint the last of a history whose steps and parents agree) and
    its replay as samples; None if there is none. `ResumeError` names the file and the key at fault."""
    where = run_dir / stage.state_dir / resume_state.STATE
    state = resume_state.load(run_dir / stage.state_dir)
    if state is None:
        return None
    model = resume_state.fields_of(stage.name, stage.state_keys, stage.state_fields)
    state = dict(resume_state.check_fields(state, model, where))
    resume_state.check_rng(state["rng"], where)
    checkpoint, history = resume_state.check_history(state, run_dir, where)
    replay = []
    for i, row in enumerate(state["replay"]):
        try:
            replay.append(stage.sample.from_json(row))
        except (TypeError, ValueError) as e:
            raise resume_state.ResumeError(f"{where}: replay[{i}]: {e}") from None
    return {**state, "checkpoint": checkpoint, "history": history, "replay": replay}


def train(stage: Stage, start: Path, *, resume: bool = False, progress: bool = True) -> Path:
    """Stage 2 from the checkpoint `start`; returns the final checkpoint."""
    cfg, name = stage.cfg, stage.name
    memory.reset()
    learner = _open(stage, start, resume=resume, progress=progress)
    saved_at = learner.step  # the step of the newest checkpoint (the start's, or the resumed one's)
    stage.started(learner)
    current = learner.history[-1]
    learner.runtime = runtime = stage.make_runtime(current, learner.policy.model, learner.version)
    runtime.start()
    t_start = time.perf_counter() - learner.elapsed
    try:
        while learner.step < cfg.steps:
            if cfg.max_minutes is not None and time.perf_counter() - t_start > 60 * cfg.max_minutes:
                print(f"{name}: {cfg.max_minutes} minute budget used at step {learner.step}")
                break
            if not learner.ready():  # say what the learner waits for, or a stalled run looks like a hung one
                learner.bar.set_postfix_str(_waiting(stage, learner))
            for _, items, stats in runtime.collect(timeout=0.0 if learner.ready() else 1.0):
                samples, episodes = stage.ingest(items, stats, learner.version)
                learner.replay.add(samples)
                learner.samples += len(samples)
                learner.episodes += episodes
            if not learner.ready():
                continue
            learner.elapsed = time.perf_counter() - t_start  # the learning-rate schedule may follow the clock
            metrics = _learn(learner)
            if learner.step % cfg.publish_every == 0:
                learner.version += 1
                runtime.publish(learner.policy.model, learner.version)
            if learner.step % 10 == 0:
                stage.log(learner, metrics)
            stage.stepped(learner)
            if learner.step % cfg.checkpoint_every == 0 or learner.step == cfg.steps:
                learner.elapsed = time.perf_counter() - t_start
                _save(learner)
                saved_at = learner.step
    finally:
        runtime.close()
    learner.elapsed = time.perf_counter() - t_start
    if learner.step != saved_at:  # minutes ran out between checkpoints
        _save(learner)
    learner.bar.close()
    stage.finished(learner)
    learner.writer.close()
    return learner.history[-1]


def _open(stage: Stage, start: Path, *, resume: bool, progress: bool) -> Learner:
    """The learner of a new run from `start`, or of the run the resume state describes."""
    cfg, run_dir = stage.cfg, stage.run_dir
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
    history = [start]
    lora = stage.config.model.lora_for(stage.name)
    if lora is not None and getattr(policy.model, "lora", False) is None:  # adapters over a whole model
        from agents import hf  # the `hf` extra, for an HF backbone only

        base = hf.Base(str(current / "lm"), hf.weights_hash(policy.model.lm))
        policy.model.attach_lora(lora, base)
        policy.model.to(policy.device)
        meta = {**policy.meta, **stage.meta(), "step": 0, "version": 0, "parent": rel(current, run_dir)}
        history = [agents.save(policy, run_dir / "checkpoints" / checkpoint_name(0), meta=meta)]
    learner = Learner(
        stage,
        start,
        policy,
        ref=agents.load(start, device=cfg.device) if cfg.kl_weight > 0 else None,
        opt=agents.adamw(policy.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
        replay=Replay(cfg.replay_size),
        rng=random.Random(cfg.seed),
        writer=SummaryWriter(str(run_dir / "tb" / stage.name)),
        bar=tqdm(total=cfg.steps, desc=stage.label, unit="step", disable=not progress),
        history=history,
    )
    if state:
        resume_state.check_optimizer(
            state["optimizer"], learner.opt, run_dir / stage.state_dir / resume_state.STATE
        )
        learner.opt.load_state_dict(state["optimizer"])
        learner.replay.add(state["replay"])
        resume_state.set_rng_state(learner.rng, state["rng"])
        learner.samples, learner.episodes = (state[k] for k in stage.state_keys)
        learner.step, learner.version, learner.elapsed = state["step"], state["version"], state["elapsed"]
        learner.history, learner.earlier = state["history"], state["runtime"]
        stage.restore(state)
        learner.bar.update(learner.step)
        print(f"{stage.name}: resuming at step {learner.step} from {current}")
    return learner


def used(learner: Learner) -> float:
    """The share of the stage's budget spent: of its steps or of its minutes, whichever runs out first."""
    cfg = learner.stage.cfg
    minutes = learner.elapsed / (60 * cfg.max_minutes) if cfg.max_minutes is not None else 0.0
    return max(learner.step / cfg.steps, minutes)


def _learn(learner: Learner) -> dict[str, float]:
    """One optimizer step on a batch from the replay; its metrics."""
    cfg, policy, opt = learner.stage.cfg, learner.policy, learner.opt
    policy.model.train()
    lr = agents.lr_at(
        learner.step,
        lr=cfg.lr,
        warmup_steps=cfg.warmup_steps,
        min_lr_ratio=cfg.min_lr_ratio,
        progress=used(learner),
    )
    for group in opt.param_groups:
        group["lr"] = lr
    with policy.autocast():
        batch = learner.replay.sample(cfg.batch_size, learner.rng)
        loss, metrics = learner.stage.loss(policy, batch, learner.ref)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(policy.model.parameters(), cfg.grad_clip)
    if not (torch.isfinite(loss) and torch.isfinite(norm)):  # the step would make every weight NaN
        what = f"the loss ({loss.item():g}) or its gradient norm ({norm.item():g}) is not finite"
        _diverged(learner, learner.step + 1, what)
    opt.step()
    policy.model.eval()
    learner.step += 1
    learner.bar.set_postfix_str("", refresh=False)
    learner.bar.update()
    return {**metrics, "charts/lr": lr}


def _save(learner: Learner) -> None:
    """Checkpoint, then the resume state that points at it, then what the runtime delivered."""
    stage, run_dir, runtime = learner.stage, learner.run_dir, learner.runtime
    state = learner.policy.model.trained_state()
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        _diverged(
            learner, learner.step, f"the weights are not finite (NaN or inf in {', '.join(bad[:3])}{more})"
        )
    meta = {**stage.meta(), "step": learner.step, "version": learner.version}
    meta["parent"] = rel(learner.history[-1], run_dir)
    ckpt = agents.save(learner.policy, run_dir / "checkpoints" / checkpoint_name(learner.step), meta=meta)
    learner.history.append(ckpt)
    counters = add_counters(learner.earlier, runtime.stats())
    samples, episodes = stage.state_keys
    resume_state.save(
        run_dir / stage.state_dir,
        learner.opt.state_dict(),
        {
            "checkpoint": rel(ckpt, run_dir),
            "replay": [s.to_json() for s in learner.replay.items],
            "rng": resume_state.rng_state(learner.rng),
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
    stats["peak_rss_mib"] = memory.peak_mib()  # the learner's process, this stage so far
    stats.update(counters, pids=runtime.pids())  # the processes of this run, for ps, py-spy or kill
    atomic_write_text(run_dir / stage.name / "stats.json", json.dumps(stats, indent=2) + "\n")
    stage.saved(learner, ckpt)


def _diverged(learner: Learner, step: int, what: str) -> None:
    last = learner.history[-1]
    raise Diverged(
        f"{learner.stage.name}: step {step}: {what}; nothing was saved. The last good checkpoint is "
        f"{rel(last, learner.run_dir)} (step {agents.read_meta(last).get('step', 0)}): lower the learning "
        "rate, or continue from it with --resume"
    )


def _waiting(stage: Stage, learner: Learner) -> str:
    cfg, (samples, episodes), replay = stage.cfg, stage.stats_keys, len(learner.replay)
    what = f"waiting for {stage.waiting_for}"
    if replay < cfg.min_replay:
        return f"{what}: replay {replay}/{cfg.min_replay} {samples} ({learner.episodes} {episodes})"
    return f"{what}: {learner.samples} {samples} so far, each used {cfg.replay_ratio:g} times at most"

"""What the imitation of games and of text share: the error that refuses data before training, the
steps of a run (`Steps`), what it trained on (`ImitationCompute`), early stopping (`KeepBest`), the hash of
what an imitation checkpoint depends on (`config_hash`) and the rounds of corrections that continue it
(`each_round`)."""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tqdm import tqdm

import agents
import selfplay.core.rundir as rundir
from selfplay.config import Config, ImitationConfig, fingerprint


class ImitationError(ValueError):
    """Data or configuration that cannot be trained on; raised before training starts."""


class Steps:
    """The steps of an imitation run, for both imitation stages: iterating yields (step, the indices of
    its batch of `n` examples, epoch after shuffled epoch) with the step's learning rate set on `opt`
    (warm-up, cosine to the last step), for `max_steps` (or `epochs` passes) or until `max_minutes`;
    `bar` is the progress bar."""

    def __init__(self, cfg: ImitationConfig, opt, n: int, rng: random.Random, *, progress: bool) -> None:
        self.cfg, self.opt, self.n, self.rng, self.order = cfg, opt, n, rng, []
        self.total = (
            cfg.max_steps if cfg.epochs is None else max(1, math.ceil(cfg.epochs * n / cfg.batch_size))
        )
        self.bar = tqdm(total=self.total, desc="imitation", unit="step", disable=not progress)
        self.start, self.lr = time.perf_counter(), cfg.lr

    def __iter__(self) -> Iterator[tuple[int, list[int]]]:
        cfg = self.cfg
        try:
            for step in range(self.total):
                if cfg.max_minutes is not None and time.perf_counter() - self.start > 60 * cfg.max_minutes:
                    return
                self.lr = agents.lr_at(
                    step,
                    lr=cfg.lr,
                    warmup_steps=cfg.warmup_steps,
                    steps=self.total,
                    min_lr_ratio=cfg.min_lr_ratio,
                )
                for group in self.opt.param_groups:
                    group["lr"] = self.lr
                while len(self.order) < cfg.batch_size:
                    self.order += self.rng.sample(range(self.n), self.n)
                batch, self.order = self.order[: cfg.batch_size], self.order[cfg.batch_size :]
                yield step, batch
                self.bar.update()
        finally:
            self.bar.close()


class ImitationCompute:
    """What an imitation run trained on, step by step, for scaling laws: tokens the loss fell on (D) and
    tokens processed, and the non-embedding parameters N (Kaplan et al. 2020), so C ~ 6 N x processed."""

    def __init__(self, model) -> None:
        count = getattr(model, "non_embedding_parameters", None)
        self.n = count() if count is not None else None  # an HF backbone's is not counted
        self.targets: list[int] = []
        self.processed: list[int] = []

    def add(self, targets: int, processed: int) -> None:
        self.targets.append(int(targets))
        self.processed.append(int(processed))

    def summary(self, step: int) -> dict:
        """The counts up to `step` (the checkpoint kept), as the run summary records them."""
        d, p = sum(self.targets[:step]), sum(self.processed[:step])
        flops = None if self.n is None else 6 * self.n * p
        return {
            "non_embedding_parameters": self.n,
            "train_tokens": d,
            "tokens_processed": p,
            "train_flops": flops,
        }


class KeepBest:
    """Early stopping on held-out evaluations: `improved(score, step)` says whether `score` (higher is
    better) beats every earlier one, so the checkpoint is saved; `done` once `patience` evaluations in a
    row did not."""

    def __init__(self, patience: int) -> None:
        self.patience, self.score, self.step, self.stale = patience, -math.inf, -1, 0

    def improved(self, score: float, step: int) -> bool:
        if score > self.score:
            self.score, self.step, self.stale = score, step, 0
            return True
        self.stale += 1
        return False

    @property
    def done(self) -> bool:
        return self.stale >= self.patience


def config_hash(config: Config) -> str:
    """Hash of what the imitation checkpoint depends on (not the run directory or later stages); for a
    reward environment also its options and the length of the greedy evaluation's answers."""
    if config.is_reward_env:
        sections = {"game", "env_options", "transcripts", "model", "imitation"}
        extra = {"rl_max_new_tokens": config.rl.max_new_tokens}
        if config.transcripts.corrections:  # what the files hold, not only where they are
            extra["corrections"] = [
                hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in config.transcripts.corrections
            ]
        return fingerprint(config, sections, **extra)
    return fingerprint(config, {"game", "transcripts", "model", "imitation"})


def each_round(
    config: Config,
    run_dir: Path,
    start: Path,
    make: Callable[[Path, int], Path],
    round_hash: Callable[[Config, int], str],
) -> Path:
    """Rounds 1..`corrections.rounds`, each `make(previous checkpoint, r)` -> `RUN/checkpoints/corrections_R`
    (summary `RUN/corrections_R.json`), reused when `round_hash(config, r)` made it; the last checkpoint."""
    current = start
    for r in range(1, config.corrections.rounds + 1):
        ckpt, summary = run_dir / "checkpoints" / f"corrections_{r}", run_dir / f"corrections_{r}.json"
        step = lambda r=r, current=current: make(current, r)  # noqa: E731
        current = rundir.reuse_or_make(f"corrections {r}", ckpt, summary, round_hash(config, r), step)
    return current

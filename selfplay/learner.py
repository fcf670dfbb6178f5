"""The learner: replay buffer, the two self-play losses, and the training loop of stage 2.

`alphazero` (expert iteration): the policy learns the search's visit distribution, the value the game's
outcome. `pg` (the AlphaGo RL stage): PPO-clip on the moves the learner's policy sampled against pool
opponents, advantage = outcome - the value the network predicted then; the value head learns the outcome.
Both can pull toward the start checkpoint with a KL penalty.

The loop (`train`) collects finished games from the runtime, trains when the replay buffer holds enough
positions and no position would be used more than `replay_ratio` times on average, publishes weights
every `publish_every` steps, and every `checkpoint_every` steps writes a checkpoint, the resume state and
an evaluation. A killed run resumes from its last checkpoint (`resume=True`).
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import agents
import envs
from selfplay import resume as resume_state
from selfplay.actor import Trajectory, write_pool
from selfplay.config import Config, SelfPlayConfig
from selfplay.io import atomic_write_text
from selfplay.rundir import rel, resolve

STATE_DIR = resume_state.SELFPLAY_DIR


@dataclass(frozen=True)
class Sample:
    """One position for the learner."""

    prompt: str
    legal: tuple[str, ...]
    chosen: int  # index of the move played
    target: np.ndarray | None  # visit distribution over `legal` (alphazero)
    outcome: float  # final return of the mover
    logprob: float  # behaviour log-prob of `chosen`
    value: float  # behaviour value estimate (the pg baseline)
    version: int
    planes: np.ndarray | None = None  # the board face's planes (C, H, W)

    @property
    def query(self) -> agents.Query:
        return agents.Query(self.prompt, self.legal, self.planes)

    def to_json(self) -> list:
        target = None if self.target is None else [float(x) for x in self.target]
        planes = None if self.planes is None else self.planes.astype(np.int8).tolist()  # 0/1 cells
        row = [self.prompt, list(self.legal), self.chosen, target, self.outcome, self.logprob, self.value]
        return [*row, self.version, planes]

    @classmethod
    def from_json(cls, row: list) -> Sample:
        prompt, legal, chosen, target, outcome, logprob, value, version, *rest = row
        target = None if target is None else np.asarray(target, dtype=np.float32)
        planes = None if not rest or rest[0] is None else np.asarray(rest[0], dtype=np.float32)
        return cls(prompt, tuple(legal), chosen, target, outcome, logprob, value, version, planes)


def samples_of(traj: Trajectory) -> list[Sample]:
    return [
        Sample(
            traj.prompts[i],
            traj.legal[i],
            traj.chosen[i],
            traj.targets[i] if traj.targets else None,
            traj.returns[traj.players[i]],
            traj.logprobs[i],
            traj.values[i],
            traj.version,
            traj.planes[i] if traj.planes else None,
        )
        for i in range(len(traj.prompts))
    ]


def symmetric_samples(traj: Trajectory, game: envs.Game, face: agents.Face, perm) -> list[Sample]:
    """The samples of `traj`'s game replayed under the symmetry `perm` (`Game.symmetries`): each position
    read in `face`, its legal moves, search targets and chosen move carried over to their images."""
    original, image = game.new_initial_state(), game.new_initial_state()
    at = dict(zip(traj.plies, range(len(traj.plies)), strict=True))  # ply -> recorded position
    out = []
    for ply, text in enumerate(traj.moves):
        action = original.text_to_action(text)
        k = at.get(ply)
        if k is not None:
            mapped = {perm[original.text_to_action(t)]: i for i, t in enumerate(traj.legal[k])}
            legal = image.legal_actions()  # the image's order; `mapped` holds the same actions
            q = face.query(image, [image.action_to_text(a) for a in legal])
            target = None
            if traj.targets:
                target = np.asarray([traj.targets[k][mapped[a]] for a in legal], dtype=np.float32)
            chosen = legal.index(perm[original.text_to_action(traj.legal[k][traj.chosen[k]])])
            outcome = traj.returns[traj.players[k]]
            row = (q.prompt, q.moves, chosen, target, outcome, traj.logprobs[k], traj.values[k], traj.version)
            out.append(Sample(*row, q.planes))
        original.apply_action(action)
        image.apply_action(perm[action])
    return out


class Replay:
    """The newest `capacity` positions; uniform sampling."""

    def __init__(self, capacity: int) -> None:
        self.items: deque[Sample] = deque(maxlen=capacity)

    def add(self, samples: list[Sample]) -> None:
        self.items.extend(samples)

    def sample(self, n: int, rng: random.Random) -> list[Sample]:
        return [self.items[rng.randrange(len(self.items))] for _ in range(n)]

    def __len__(self) -> int:
        return len(self.items)


# --- losses --------------------------------------------------------------------------------------
def _rows(cand_lp: torch.Tensor, batch: list[Sample]) -> list[torch.Tensor]:
    """Per position, log-probabilities over its legal moves (cand_lp is flat over every candidate)."""
    sizes = [len(s.legal) for s in batch]
    return [torch.log_softmax(r, 0) for r in torch.split(cand_lp, sizes)]


def losses(
    policy: agents.Policy,
    batch: list[Sample],
    cfg: SelfPlayConfig,
    ref: agents.Policy | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one batch for `cfg.algorithm`, and its metrics."""
    cand_lp, values = policy.forward_packed(policy.pack([s.query for s in batch]))
    logp = _rows(cand_lp, batch)
    outcome = torch.tensor([s.outcome for s in batch], dtype=torch.float32, device=values.device)
    value_loss = F.mse_loss(values, outcome)
    entropy = torch.stack([-(lp.exp() * lp).sum() for lp in logp]).mean()
    if cfg.algorithm == "pg":
        new = torch.stack([lp[s.chosen] for lp, s in zip(logp, batch, strict=True)])
        old = torch.tensor([s.logprob for s in batch], device=new.device)
        adv = outcome - torch.tensor([s.value for s in batch], device=new.device)
        ratio = torch.exp(new - old)
        clipped = torch.clamp(ratio, 1 - cfg.clip, 1 + cfg.clip)
        policy_loss = -torch.min(ratio * adv, clipped * adv).mean() - cfg.entropy_weight * entropy
        extra = {"clip_fraction": float(((ratio - 1).abs() > cfg.clip).float().mean())}
    else:
        policy_loss = -torch.stack(
            [(torch.tensor(s.target, device=lp.device) * lp).sum() for lp, s in zip(logp, batch, strict=True)]
        ).mean()
        extra = {}
    loss = policy_loss + cfg.value_weight * value_loss
    kl = torch.zeros((), device=values.device)
    if ref is not None and cfg.kl_weight > 0:
        with torch.no_grad():
            ref_lp, _ = ref.forward_packed(ref.pack([s.query for s in batch]))
        ref_rows = _rows(ref_lp, batch)
        kl = torch.stack([(lp.exp() * (lp - r)).sum() for lp, r in zip(logp, ref_rows, strict=True)]).mean()
        loss = loss + cfg.kl_weight * kl
    decisive = outcome != 0
    agree = ((values > 0) == (outcome > 0))[decisive].float().mean() if decisive.any() else torch.tensor(0.0)
    return loss, {
        "losses/policy": policy_loss.item(),
        "losses/value": value_loss.item(),
        "losses/kl": kl.item(),
        "charts/entropy": entropy.item(),
        "charts/value_accuracy": agree.item(),
        **{f"charts/{k}": v for k, v in extra.items()},
    }


# --- checkpoints and resume ----------------------------------------------------------------------
def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def load_state(run_dir: Path) -> dict[str, Any] | None:
    """The resume state (`selfplay.resume`), its paths resolved and its replay as `Sample`s; None if none."""
    keys = ("checkpoint", "replay", "rng", "step", "version", "positions", "games", "elapsed", "history")
    state = resume_state.load(run_dir / STATE_DIR, (*keys, "runtime"))
    if state is None:
        return None
    where = run_dir / STATE_DIR / resume_state.STATE
    try:
        state["checkpoint"] = resolve(state["checkpoint"], run_dir)
        state["history"] = [resolve(p, run_dir) for p in state["history"]]
        state["replay"] = [Sample.from_json(r) for r in state["replay"]]
        agents.read_meta(state["checkpoint"])
    except (KeyError, TypeError, ValueError) as e:  # CheckpointError is a ValueError
        raise resume_state.ResumeError(f"{where}: cannot resume from it ({e})") from None
    return state


# --- the loop ------------------------------------------------------------------------------------
class Evaluator:
    """Runs the gauntlet of each new checkpoint; the training loop only calls `__call__`."""

    def __init__(self, config: Config, run_dir: Path, writer: SummaryWriter) -> None:
        self.config, self.run_dir, self.writer = config, run_dir, writer

    def __call__(self, ckpt: Path, step: int, history: list[Path]) -> dict[str, float]:
        if self.config.evaluation.games == 0:
            return {}
        from selfplay import evaluation

        return evaluation.gauntlet(self.config, self.run_dir, ckpt, step, history, self.writer)


def train(config: Config, run_dir: Path, start: Path, *, resume: bool = False, progress: bool = True) -> Path:
    """Stage 2 from the checkpoint `start`; returns the final checkpoint."""
    from selfplay.inference import use_server
    from selfplay.runtime import make_runtime

    cfg = config.selfplay
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    state = load_state(run_dir) if resume else None
    if not resume and (run_dir / STATE_DIR).exists():
        raise agents.CheckpointError(
            f"{run_dir} already holds a self-play run; continue it with --resume {run_dir} "
            "or choose another run_dir"
        )
    current = state["checkpoint"] if state else start
    policy = agents.load(current, device=cfg.device)
    ref = agents.load(start, device=cfg.device) if cfg.kl_weight > 0 else None
    opt = agents.adamw(policy.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    replay = Replay(cfg.replay_size)
    rng = random.Random(cfg.seed)
    game = envs.make(config.game)
    perms = [None, *game.symmetries()[1:]] if cfg.symmetries else [None]  # None: the game as played
    step = version = positions = games = 0
    elapsed = 0.0
    history: list[Path] = [start]
    earlier: dict[str, float] = {}  # runtime counters of the runs this one resumes
    if state:
        opt.load_state_dict(state["optimizer"])
        replay.add(state["replay"])
        resume_state.set_rng_state(rng, state["rng"])
        step, version, positions, games = state["step"], state["version"], state["positions"], state["games"]
        elapsed, history, earlier = state["elapsed"], state["history"], state["runtime"]
        print(f"selfplay: resuming at step {step} from {current}")
    pool_path = run_dir / "selfplay" / "pool.json"
    if cfg.algorithm == "pg":
        _write_pool(pool_path, history, cfg)
    writer = SummaryWriter(str(run_dir / "tb" / "selfplay"))
    evaluate = Evaluator(config, run_dir, writer)
    runtime = make_runtime(
        config,
        current,
        policy.model,
        version=version,
        pool=pool_path if cfg.algorithm == "pg" else None,
        server=use_server(config, cfg.actors),
    )
    runtime.start()
    bar = tqdm(total=cfg.steps, initial=step, desc="selfplay", unit="step", disable=not progress)
    t_start = time.perf_counter() - elapsed
    window = {"t": time.perf_counter(), "games": 0, "moves": 0, "sims": 0, "net": 0.0, "busy": 0.0, "lag": []}
    metrics: dict[str, float] = {}
    last_log = -1

    def save_point() -> Path:
        """Checkpoint, then the resume state that points at it, then its evaluation."""
        ckpt = _checkpoint(config, run_dir, policy, step, version, history, start)
        history.append(ckpt)
        counters = add_counters(earlier, runtime.stats())
        resume_state.save(
            run_dir / STATE_DIR,
            opt.state_dict(),
            {
                "checkpoint": rel(ckpt, run_dir),
                "replay": [s.to_json() for s in replay.items],
                "rng": resume_state.rng_state(rng),
                "step": step,
                "version": version,
                "positions": positions,
                "games": games,
                "elapsed": time.perf_counter() - t_start,
                "history": [rel(p, run_dir) for p in history],
                "runtime": counters,
            },
        )
        if cfg.algorithm == "pg":
            _write_pool(pool_path, history, cfg, run_dir=run_dir)
        _write_stats(
            run_dir,
            {
                "step": step,
                "games": games,
                "positions": positions,
                "learner": f"{socket.gethostname()}:{os.getpid()}",  # where it ran (a Ray node?)
                **counters,
                "pids": runtime.pids(),  # the processes of this run, for ps, py-spy or kill
            },
        )
        results = evaluate(ckpt, step, history)
        bar.write(f"selfplay: step {step}, {games} games, checkpoint {ckpt.name} {_short(results)}")
        return ckpt

    try:
        while step < cfg.steps:
            if cfg.max_minutes is not None and time.perf_counter() - t_start > 60 * cfg.max_minutes:
                print(f"selfplay: {cfg.max_minutes} minute budget used at step {step}")
                break
            can_train = len(replay) >= cfg.min_replay and step * cfg.batch_size < cfg.replay_ratio * positions
            if not can_train:  # say what the learner waits for, or a stalled run looks like a hung one
                bar.set_postfix_str(_waiting(len(replay), games, positions, cfg))
            for _, trajs, stats in runtime.collect(timeout=0.0 if can_train else 1.0):
                for t in trajs:
                    for perm in perms:
                        images = (
                            samples_of(t) if perm is None else symmetric_samples(t, game, policy.face, perm)
                        )
                        replay.add(images)
                        positions += len(images)
                    window["lag"].append(version - t.version)
                games += len(trajs)
                window["games"] += len(trajs)
                window["moves"] += stats.moves
                window["sims"] += stats.simulations
                window["net"] += stats.net_seconds
                window["busy"] += stats.seconds
            if not (len(replay) >= cfg.min_replay and step * cfg.batch_size < cfg.replay_ratio * positions):
                continue
            policy.model.train()
            for group in opt.param_groups:
                group["lr"] = agents.lr_at(step, lr=cfg.lr, warmup_steps=cfg.warmup_steps)
            with policy.autocast():
                loss, metrics = losses(policy, replay.sample(cfg.batch_size, rng), cfg, ref)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.model.parameters(), cfg.grad_clip)
            opt.step()
            policy.model.eval()
            step += 1
            bar.set_postfix_str("", refresh=False)
            bar.update()
            if step % cfg.publish_every == 0:
                version += 1
                runtime.publish(policy.model, version)
            if step % 10 == 0 and step != last_log:
                last_log = step
                _log(writer, step, metrics, window, runtime, games)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                current = save_point()
    finally:
        runtime.close()
    if step > 0 and (history[-1] == start or _step_of(history[-1]) != step):  # minutes ran out
        current = save_point()
    bar.close()
    writer.close()
    return history[-1]


def _step_of(ckpt: Path) -> int:
    return int(agents.read_meta(ckpt).get("step", 0))


def _waiting(replay: int, games: int, positions: int, cfg: SelfPlayConfig) -> str:
    if replay < cfg.min_replay:
        return f"waiting for games: replay {replay}/{cfg.min_replay} positions ({games} games)"
    return f"waiting for games: {positions} positions so far, each used {cfg.replay_ratio:g} times at most"


def add_counters(earlier: dict[str, float], now: dict[str, float]) -> dict[str, float]:
    """Counters of this runtime added to those of the runs it resumes."""
    return {k: earlier.get(k, 0) + now.get(k, 0) for k in {**earlier, **now}}


def _checkpoint(config, run_dir, policy, step, version, history, start) -> Path:
    from selfplay.imitate import config_hash

    path = run_dir / "checkpoints" / checkpoint_name(step)
    meta = {
        "game": config.game,
        "stage": f"selfplay/{config.selfplay.algorithm}",
        "step": step,
        "version": version,
        "parent": rel(history[-1] if history else start, run_dir),
        "config_hash": config_hash(config),
    }
    return agents.save(policy, path, meta=meta)


def _write_pool(path: Path, history: list[Path], cfg: SelfPlayConfig, run_dir: Path | None = None) -> None:
    """RUN/selfplay/pool.json: the recent checkpoints (relative to the run directory) and their weights."""
    recent = history[-cfg.pool_size :]
    home = path.parent.parent
    weights = {rel(p, home): 1.0 for p in recent}
    if cfg.pool_by_rating and run_dir is not None and len(recent) > 1:
        from selfplay import evaluation

        by_rating = evaluation.pool_weights(run_dir, [str(p) for p in recent])
        if by_rating:
            weights = {rel(p, home): w for p, w in by_rating.items()}
    write_pool(path, list(weights.items()))


def _short(results: dict[str, float]) -> str:
    return " ".join(f"{k.split('/')[-1]}={v:.2f}" for k, v in results.items())


def _write_stats(run_dir: Path, stats: dict) -> None:
    """What the runtime delivered (games, duplicates dropped, actor restarts), as of the last checkpoint."""
    atomic_write_text(run_dir / "selfplay" / "stats.json", json.dumps(stats, indent=2) + "\n")


def _log(writer, step, metrics, window, runtime, games) -> None:
    now = time.perf_counter()
    dt = max(1e-9, now - window["t"])
    for k, v in metrics.items():
        writer.add_scalar(k, v, step)
    writer.add_scalar("charts/games_per_s", window["games"] / dt, step)  # games finished / wall s
    writer.add_scalar("charts/moves_per_s", window["moves"] / dt, step)
    writer.add_scalar("charts/simulations_per_s", window["sims"] / dt, step)
    writer.add_scalar("charts/queue_depth", runtime.depth(), step)
    for k, v in runtime.stats().items():
        writer.add_scalar(f"runtime/{k}", v, step)
    writer.add_scalar("charts/games", games, step)
    if window["busy"] > 0:
        writer.add_scalar("charts/actor_net_share", window["net"] / window["busy"], step)
    if window["lag"]:
        writer.add_scalar("charts/policy_lag", float(np.mean(window["lag"])), step)
    window.update(t=now, games=0, moves=0, sims=0, net=0.0, busy=0.0, lag=[])

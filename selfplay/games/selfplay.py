"""Game self-play, stage 2: positions from finished games, the two self-play losses.

`alphazero` (expert iteration): the policy learns the search's visit distribution, the value the game's
outcome. `pg` (the AlphaGo RL stage): PPO-clip on the moves the learner's policy sampled against pool
opponents, advantage = outcome - the value the network predicted then; the value head learns the outcome.
Both can pull toward the start checkpoint with a KL penalty.

The loop is `selfplay.core.loop`'s (replay gate, publication, checkpoints, resume); `SelfPlay` is what
self-play brings to it: samples from finished games (and their symmetric images), the loss, the pool of
`pg` opponents and each checkpoint's gauntlet (`selfplay.arena.evaluation`).
"""

from __future__ import annotations

import reprlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

import agents
import envs
import selfplay.arena.evaluation as evaluation
import selfplay.core.loop as loop
import selfplay.core.resume as resume_state
from selfplay.config import Config, SelfPlayConfig
from selfplay.core.loop import Learner, Stage
from selfplay.core.rundir import rel
from selfplay.core.training import config_hash
from selfplay.games.actor import Trajectory, make_actor, write_pool
from selfplay.runtime import Actors, make_runtime
from selfplay.runtime.inference import use_server

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
    value: float  # value seen when moving: the network's (the pg baseline), the search root's (alphazero)
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
        """The sample `to_json` wrote, every value checked (a `ValueError` says which is wrong)."""
        if not isinstance(row, list) or len(row) not in (8, 9):
            raise ValueError(f"a sample is a list of 8 or 9 values, got {reprlib.repr(row)}")
        prompt, legal, chosen, target, outcome, logprob, value, version, *rest = row
        if not isinstance(prompt, str):
            raise ValueError(f"prompt: a string, got {reprlib.repr(prompt)}")
        if not (isinstance(legal, list) and legal and all(isinstance(m, str) for m in legal)):
            raise ValueError(f"legal: a list of move texts, got {reprlib.repr(legal)}")
        if not resume_state.is_count(chosen) or chosen >= len(legal):
            raise ValueError(f"chosen: the index of a legal move (< {len(legal)}), got {chosen!r}")
        if target is not None:
            target = resume_state.finite_array(target, "target", shape=(len(legal),))
        for name, x in (("outcome", outcome), ("logprob", logprob), ("value", value)):
            resume_state.finite_array(x, name, shape=())
        if not resume_state.is_count(version):
            raise ValueError(f"version: a count, got {version!r}")
        planes = None if not rest or rest[0] is None else resume_state.finite_array(rest[0], "planes", ndim=3)
        if planes is not None and not np.isin(planes, (0, 1)).all():
            raise ValueError("planes: cells of 0 and 1")
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
    target = outcome
    if cfg.value_mix:  # alphazero only (the config says so): `value` is the search's root value there
        searched = torch.tensor([s.value for s in batch], dtype=torch.float32, device=values.device)
        target = (1 - cfg.value_mix) * outcome + cfg.value_mix * searched
    value_loss = F.mse_loss(values, target)
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


# --- the stage -----------------------------------------------------------------------------------
class SelfPlay(Stage):
    """Game self-play as the stage-2 loop (`selfplay.core.loop`) runs it."""

    name, state_dir, what = "selfplay", STATE_DIR, "a self-play run"
    state_keys = stats_keys = ("positions", "games")
    waiting_for, sample = "games", Sample
    state_fields: ClassVar = {"compute": (dict[str, resume_state.Count] | None, None)}  # None: older runs

    def __init__(self, config: Config, run_dir: Path) -> None:
        super().__init__(config, run_dir)
        self.cfg = cfg = config.selfplay
        self.game = envs.make(config.game)
        self.perms = [None, *self.game.symmetries()[1:]] if cfg.symmetries else [None]  # None: as played
        self.pool = run_dir / "selfplay" / "pool.json" if cfg.algorithm == "pg" else None
        self.window = _Window()
        self.compute = SelfPlayCompute(cfg.batch_size)

    def make_runtime(self, current: Path, model, version: int):
        n, pool = self.cfg.actors, str(self.pool) if self.pool else None
        actors = Actors(self.config, make_actor, str(current), n, pool, use_server(self.config, n))
        return make_runtime(actors, model, version=version)

    def ingest(self, items: list[Trajectory], stats, version: int) -> tuple[list[Sample], int]:
        out: list[Sample] = []
        for t in items:
            for perm in self.perms:
                out += samples_of(t) if perm is None else symmetric_samples(t, self.game, self.face, perm)
            self.window.lag.append(version - t.version)
        self.window.add(len(items), stats)
        self.compute.evaluated += stats.positions
        return out, len(items)

    def loss(self, policy, batch, ref):
        return losses(policy, batch, self.cfg, ref)

    def meta(self) -> dict:
        return {
            "game": self.config.game,
            "stage": f"selfplay/{self.cfg.algorithm}",
            "config_hash": config_hash(self.config),
            "compute": self.compute.summary(),
        }

    def state(self) -> dict:
        return {"compute": {"evaluated": self.compute.evaluated}}

    def restore(self, state: dict) -> None:
        self.compute.evaluated = (state.get("compute") or {}).get("evaluated", 0)  # runs before it: unknown
        self.compute.step = state["step"]

    def stepped(self, learner: Learner) -> None:
        self.compute.step = learner.step

    def started(self, learner: Learner) -> None:
        self.face = learner.policy.face
        self.compute.measure(learner.policy, self.game)
        if self.pool is not None:
            _write_pool(self.pool, learner.history, self.cfg)
        if self.config.evaluation.games > 0:
            self._rate(learner)

    def _rate(self, learner: Learner) -> None:
        """The gauntlets of the stage-1 checkpoints (imitation, then the start if it is another, such as
        the last correction round) at step 0, so that the league and the Elo curve begin where stage 2
        does and every self-play checkpoint is rated against its imitation through one chain of games;
        on resume, the missing games of every checkpoint's gauntlet (a kill mid-gauntlet left them)."""

        start = learner.history[0]
        firsts = [self._imitation(learner)]
        if firsts[0].resolve() != start.resolve():
            firsts.append(start)
        plan = [(ckpt, 0, firsts[:i]) for i, ckpt in enumerate(firsts)]
        done = learner.history[1:]  # stage-2 checkpoints, each rated against those before it
        plan += [(c, agents.read_meta(c)["step"], learner.history[: i + 2]) for i, c in enumerate(done)]
        for ckpt, step, history in plan:
            if learner.step == 0 or evaluation.unplayed(self.config, self.run_dir, ckpt, history):
                results = evaluation.gauntlet(self.config, self.run_dir, ckpt, step, history, learner.writer)
                self._said(learner, ckpt, results)

    def log(self, learner: Learner, metrics: dict[str, float]) -> None:
        self.window.log(learner.writer, learner.step, metrics, learner.runtime, learner.episodes)

    def saved(self, learner: Learner, ckpt: Path) -> None:
        """Opponents for `pg`, then the new checkpoint's gauntlet (`evaluation`)."""
        if self.pool is not None:
            _write_pool(self.pool, learner.history, self.cfg, run_dir=self.run_dir)
        results = {}
        if self.config.evaluation.games > 0:
            results = evaluation.gauntlet(
                self.config, self.run_dir, ckpt, learner.step, learner.history, learner.writer
            )
        self._said(learner, ckpt, results)

    def _imitation(self, learner: Learner) -> Path:
        """The run's imitation checkpoint, else the checkpoint stage 2 started from."""
        imitation = self.run_dir / "checkpoints" / "imitation"
        return imitation if imitation.is_dir() else learner.history[0]

    def finished(self, learner: Learner) -> None:
        """The final checkpoint's last word (`evaluation.final_games`)."""
        if self.config.evaluation.final_games > 0:
            final = learner.history[-1]
            md = evaluation.final_gauntlet(
                self.config, self.run_dir, final, self._imitation(learner), learner.step, learner.writer
            )
            learner.bar.write(
                f"selfplay: final checkpoint {final.name} against its opponents:\n{md.read_text()}"
            )

    @staticmethod
    def _said(learner: Learner, ckpt: Path, results: dict) -> None:
        short = " ".join(f"{k.split('/')[-1]}={v:.2f}" for k, v in results.items())
        learner.bar.write(
            f"selfplay: step {learner.step}, {learner.episodes} games, checkpoint {ckpt.name} {short}"
        )


def train(config: Config, run_dir: Path, start: Path, *, resume: bool = False, progress: bool = True) -> Path:
    """Stage 2 from the checkpoint `start`; returns the final checkpoint."""
    return loop.train(SelfPlay(config, run_dir), start, resume=resume, progress=progress)


def load_state(run_dir: Path) -> dict | None:
    """The resume state of a self-play run (`selfplay.core.loop.load_state`); None if there is none."""
    return loop.load_state(SelfPlay, run_dir)


def _write_pool(path: Path, history: list[Path], cfg: SelfPlayConfig, run_dir: Path | None = None) -> None:
    """RUN/selfplay/pool.json: the recent checkpoints (relative to the run directory) and their weights."""
    recent = history[-cfg.pool_size :]
    home = path.parent.parent
    weights = {rel(p, home): 1.0 for p in recent}
    if cfg.pool_by_rating and run_dir is not None and len(recent) > 1:
        by_rating = evaluation.pool_weights(run_dir, [str(p) for p in recent])
        if by_rating:
            weights = {rel(p, home): w for p, w in by_rating.items()}
    write_pool(path, list(weights.items()))


class SelfPlayCompute:
    """The self-play run's compute so far, as its checkpoints record it (`meta["compute"]`): positions the
    actors' network evaluated (search leaves and roots) and positions the learner trained on, each
    about T tokens through N non-embedding parameters: C ~ 2 N T evaluated + 6 N T trained."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size, self.evaluated, self.step = batch_size, 0, 0
        self.n: int | None = None
        self.tokens = 0

    def measure(self, policy, game: envs.Game) -> None:
        count = getattr(policy.model, "non_embedding_parameters", None)
        self.n = count() if count is not None else None  # an HF backbone's is not counted
        state = game.new_initial_state()
        self.tokens = int(policy.pack([policy.query(state)]).tok.shape[1])

    def summary(self) -> dict:
        trained = self.step * self.batch_size
        flops = None if self.n is None else 2 * self.n * self.tokens * (self.evaluated + 3 * trained)
        return {
            "non_embedding_parameters": self.n,
            "tokens_per_position": self.tokens,
            "positions_evaluated": self.evaluated,
            "positions_trained": trained,
            "flops": flops,
        }


class _Window:
    """What the actors did since the last log: games, moves, simulations, time in the network, lag."""

    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.games = self.moves = self.sims = 0
        self.net = self.busy = 0.0
        self.lag: list[int] = []

    def add(self, games: int, stats) -> None:
        self.games += games
        self.moves += stats.moves
        self.sims += stats.simulations
        self.net += stats.net_seconds
        self.busy += stats.seconds

    def log(self, writer, step: int, metrics: dict[str, float], runtime, games: int) -> None:
        dt = max(1e-9, time.perf_counter() - self.t)
        for k, v in metrics.items():
            writer.add_scalar(k, v, step)
        writer.add_scalar("charts/games_per_s", self.games / dt, step)  # games finished / wall s
        writer.add_scalar("charts/moves_per_s", self.moves / dt, step)
        writer.add_scalar("charts/simulations_per_s", self.sims / dt, step)
        writer.add_scalar("charts/queue_depth", runtime.depth(), step)
        for k, v in runtime.stats().items():
            writer.add_scalar(f"runtime/{k}", v, step)
        writer.add_scalar("charts/games", games, step)
        if self.busy > 0:
            writer.add_scalar("charts/actor_net_share", self.net / self.busy, step)
        if self.lag:
            writer.add_scalar("charts/policy_lag", float(np.mean(self.lag)), step)
        self.__init__()

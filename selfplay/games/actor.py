"""Actors: play many games at once with the latest weights and hand finished games to the learner.

An `Actor` steps all its games in flight by one move per call, so every network call is one batch:
`alphazero` runs one batched PUCT search over every game's tree (trees are kept between moves), `pg`
scores the learner's positions in one `evaluate` and each pool opponent's in another. `make_actor` is
the factory the runtime (`selfplay.runtime`) builds it with, in an actor process or in the learner's.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import agents
import envs
import selfplay.core.rundir as rundir
from agents import mcts
from selfplay.config import Config, SelfPlayConfig
from selfplay.io import atomic_write_text


@dataclass
class Trajectory:
    """One finished game, as the learner needs it. Positions are those the learner's policy moved in."""

    plies: list[int] = field(default_factory=list)  # move number of each position (index into `moves`)
    prompts: list[str] = field(default_factory=list)  # in the policy's face (`agents.Face`)
    planes: list[np.ndarray | None] = field(default_factory=list)  # the board face's planes, or None
    legal: list[tuple[str, ...]] = field(default_factory=list)  # legal move texts per position
    chosen: list[int] = field(default_factory=list)  # index into `legal` of the move played
    players: list[int] = field(default_factory=list)  # the mover at each position
    targets: list[np.ndarray] = field(default_factory=list)  # search visit distribution (alphazero)
    logprobs: list[float] = field(default_factory=list)  # behaviour log-prob of the chosen move
    values: list[float] = field(default_factory=list)  # network value at the position (mover's view)
    moves: list[str] = field(default_factory=list)  # every move of the game, both sides, as text
    returns: list[float] = field(default_factory=list)  # final return per player
    version: int = 0  # oldest weights version that chose a recorded move
    actor: int = 0
    opponent: str | None = None  # `pg`: the pool checkpoint the learner's policy played
    seat: int | None = None  # `pg`: the learner's player
    uid: str = ""  # unique per game of a run (stamped by the runtime): nothing is counted twice


@dataclass
class ActorStats:
    """Work done since the last report: wall time, the share of it inside the network, search effort."""

    seconds: float = 0.0
    net_seconds: float = 0.0
    simulations: int = 0
    positions: int = 0  # states the network evaluated (a leaf reached twice in a wave counts once)
    moves: int = 0
    games: int = 0


@dataclass
class _Slot:
    state: envs.State
    tree: mcts.Tree | None
    traj: Trajectory
    opponent: agents.Policy | None = None


class Actor:
    """Plays `cfg.games_per_actor` games at once; `step()` advances each by one move."""

    def __init__(
        self,
        cfg: SelfPlayConfig,
        game: envs.Game,
        policy: agents.Policy,
        *,
        actor_id: int = 0,
        seed: int = 0,
        pool: PoolReader | None = None,
    ) -> None:
        if cfg.algorithm == "pg" and pool is None:
            raise ValueError("the pg algorithm needs an opponent pool")
        self.cfg, self.game, self.policy, self.pool = cfg, game, policy, pool
        self.actor_id = actor_id
        self.version = 0
        self.rng = np.random.default_rng(seed)
        self.stats = ActorStats()
        self.started = 0  # games begun (the runtime counts those a dead actor never finished)
        self.slots = [self._new_slot() for _ in range(cfg.games_per_actor)]

    # --- network calls, timed for the actor's share-in-network figure ----------------------------
    def _evaluate(self, policy: agents.Policy, states: list[envs.State]) -> list[agents.Evaluation]:
        t0 = time.perf_counter()
        out = policy.evaluate(states)
        self.stats.net_seconds += time.perf_counter() - t0
        self.stats.positions += len(states)
        served = getattr(policy, "version", None)  # an inference server says which weights answered
        if policy is self.policy and served is not None:
            self.version = served
        return out

    def _new_slot(self) -> _Slot:
        state = self.game.new_initial_state()
        moves = []
        for _ in range(self.cfg.opening_plies):
            if state.is_terminal():
                break
            a = int(self.rng.choice(state.legal_actions()))
            moves.append(state.action_to_text(a))
            state.apply_action(a)
        if state.is_terminal():  # an opening that ends the game is no game to learn from
            return self._new_slot()
        traj = Trajectory(moves=moves, version=self.version, actor=self.actor_id)
        slot = _Slot(state, None, traj)
        self.started += 1
        if self.cfg.algorithm == "pg":
            assert self.pool is not None
            path = self.pool.sample(self.rng)
            slot.opponent = self.pool.policy(path)
            traj.opponent = path
            traj.seat = int(self.rng.integers(state.num_players()))
        elif self.cfg.simulations:
            slot.tree = mcts.Tree(state)
        return slot

    def _record(
        self, slot: _Slot, action: int, legal: list[int], logprob: float, value: float, target=None
    ) -> None:
        t, s = slot.traj, slot.state
        q = self.policy.face.query(s, [s.action_to_text(a) for a in legal])
        t.plies.append(s.move_number())
        t.prompts.append(q.prompt)
        t.planes.append(q.planes)
        t.legal.append(q.moves)
        t.chosen.append(legal.index(action))
        t.players.append(s.current_player())
        t.logprobs.append(float(logprob))
        t.values.append(float(value))
        if target is not None:
            t.targets.append(np.asarray(target, dtype=np.float32))
        t.version = min(t.version, self.version)

    def _temperature(self, slot: _Slot) -> float:
        return self.cfg.temperature if slot.state.move_number() < self.cfg.temperature_moves else 0.0

    def _sample(self, probs: np.ndarray, temperature: float) -> int:
        if temperature <= 0:
            return int(np.argmax(probs))
        logits = np.log(np.maximum(probs, 1e-30)) / temperature
        p = np.exp(logits - logits.max())
        return int(self.rng.choice(len(p), p=p / p.sum()))

    # --- one move in every game -----------------------------------------------------------------
    def step(self) -> list[Trajectory]:
        """Advance every game in flight by one move; return the games that finished (replaced by new)."""
        t0 = time.perf_counter()
        if self.cfg.algorithm == "pg":
            self._step_pg()
        else:
            self._step_alphazero()
        finished = []
        for i, slot in enumerate(self.slots):
            if slot.state.is_terminal():
                slot.traj.returns = [float(r) for r in slot.state.returns()]
                finished.append(slot.traj)
                self.slots[i] = self._new_slot()
        self.stats.games += len(finished)
        self.stats.seconds += time.perf_counter() - t0
        return finished

    def _play(self, slot: _Slot, action: int) -> None:
        slot.traj.moves.append(slot.state.action_to_text(action))
        slot.state.apply_action(action)
        if slot.tree is not None:
            slot.tree.advance(action)
        self.stats.moves += 1

    def _step_alphazero(self) -> None:
        cfg = self.cfg
        if cfg.simulations:
            # playout-cap randomisation (KataGo): a share of moves get the full search, with root noise,
            # and become training targets; the others a cheap one, only to move the game on
            full = [cfg.fast_simulations == 0 or self.rng.random() < cfg.full_search_prob for _ in self.slots]
            for wanted in (True, False):
                slots = [s for s, f in zip(self.slots, full, strict=True) if f == wanted]
                if slots:
                    self._search_and_play(slots, record=wanted)
            return
        evals = self._evaluate(self.policy, [s.state for s in self.slots])
        for slot, ev in zip(self.slots, evals, strict=True):
            k = self._sample(ev.probs, self._temperature(slot))
            self._record(slot, ev.actions[k], ev.actions, np.log(ev.probs[k]), ev.value, ev.probs)
            self._play(slot, ev.actions[k])

    def _search_and_play(self, slots: list[_Slot], *, record: bool) -> None:
        cfg = self.cfg
        outs = mcts.search(
            [s.tree for s in slots],
            lambda states: self._evaluate(self.policy, states),
            simulations=cfg.simulations if record else cfg.fast_simulations,
            c_puct=cfg.c_puct,
            dirichlet_alpha=cfg.dirichlet_alpha if cfg.dirichlet_frac > 0 and record else None,
            dirichlet_frac=cfg.dirichlet_frac if record else 0.0,
            rng=self.rng,
        )
        for slot, out in zip(slots, outs, strict=True):
            self.stats.simulations += out.simulations
            action = mcts.select_action(out, temperature=self._temperature(slot), rng=self.rng)
            if record:
                k = out.actions.index(action)
                logprob = np.log(max(out.prior[k], 1e-30))
                self._record(slot, action, out.actions, logprob, out.value, out.policy)
            self._play(slot, action)

    def _step_pg(self) -> None:
        mine = [s for s in self.slots if s.state.current_player() == s.traj.seat]
        if mine:
            for slot, ev in zip(mine, self._evaluate(self.policy, [s.state for s in mine]), strict=True):
                k = self._sample(ev.probs, self.cfg.temperature or 1.0)
                self._record(slot, ev.actions[k], ev.actions, np.log(ev.probs[k]), ev.value)
                self._play(slot, ev.actions[k])
        groups: dict[int, list[_Slot]] = {}
        for s in self.slots:
            if not s.state.is_terminal() and s.state.current_player() != s.traj.seat:
                groups.setdefault(id(s.opponent), []).append(s)
        for group in groups.values():
            opponent = group[0].opponent
            assert opponent is not None
            for slot, ev in zip(group, self._evaluate(opponent, [s.state for s in group]), strict=True):
                self._play(slot, ev.actions[self._sample(ev.probs, 1.0)])

    def take_stats(self) -> ActorStats:
        stats, self.stats = self.stats, ActorStats()
        return stats


class PoolReader:
    """The `pg` opponent pool as the learner publishes it (`RUN/selfplay/pool.json`: checkpoint paths,
    relative to the run directory, and weights).

    Opponent policies are loaded once and kept (up to the pool size) so a game start costs no disk read.
    """

    def __init__(self, path: Path, *, device: str = "cpu", keep: int = 8) -> None:
        self.path, self.device, self.keep = Path(path), device, keep
        self._mtime = -1.0
        self.entries: list[tuple[str, float]] = []
        self._cache: OrderedDict[str, agents.Policy] = OrderedDict()

    def refresh(self) -> None:
        mtime = self.path.stat().st_mtime
        if mtime != self._mtime:
            data = rundir.read_json(self.path)
            home = self.path.parent.parent  # the run directory
            self.entries = [(str(home / e["path"]), float(e["weight"])) for e in data["opponents"]]
            self._mtime = mtime

    def sample(self, rng: np.random.Generator) -> str:
        self.refresh()
        w = np.array([w for _, w in self.entries], dtype=np.float64)
        return self.entries[int(rng.choice(len(w), p=w / w.sum()))][0]

    def policy(self, path: str) -> agents.Policy:
        if path not in self._cache:
            self._cache[path] = agents.load(path, device=self.device)
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)
        self._cache.move_to_end(path)
        return self._cache[path]


def write_pool(path: Path, opponents: list[tuple[str, float]]) -> None:
    entries = [{"path": p, "weight": w} for p, w in opponents]
    atomic_write_text(path, json.dumps({"opponents": entries}, indent=2) + "\n")


def make_actor(
    actor_id: int, config: Config, ckpt: str, pool_path: str | None = None, *, policy=None
) -> Actor:
    """The game actor of a process (the default `actor_factory` of the runtime).

    Any factory with this signature fits the runtime: it returns an object with a `policy`, a `version`,
    `started` (games or groups begun), `step() -> list[finished]` and `take_stats()` (see
    `selfplay.text.actor.make_text_actor`). `policy`,
    when given, replaces loading `ckpt` (a `RemotePolicy` answered by the inference server).
    """
    cfg = config.selfplay
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if policy is None:
        policy = agents.load(ckpt, device=cfg.actor_device)
    game = envs.make(config.game)
    pool = PoolReader(Path(pool_path), device=cfg.actor_device, keep=cfg.pool_size) if pool_path else None
    return Actor(cfg, game, policy, actor_id=actor_id, seed=cfg.seed * 1000 + 1 + actor_id, pool=pool)

"""Where actors run. The learner sees one small interface: `start`, `publish`, `collect`, `depth`,
`stats`, `close`; which backend is behind it is the only thing `runtime.backend` changes.

`LocalRuntime` spawns actor processes (torch multiprocessing): weights travel through tensors in shared
memory with a version number, finished games through a queue; with an inference server the actors hold
no network and send their positions to it instead. `InProcessRuntime` plays in the learner's own process
(`actors: 0`), for tests and debugging. `selfplay.ray_runtime.RayRuntime` runs the same actors on Ray.

Every finished trajectory carries a unique id; `Ledger` drops any the learner was already given, so a
retried or restarted actor can never make the learner count a game twice.
"""

from __future__ import annotations

import queue as queue_mod
import time
import uuid
from pathlib import Path

import torch
import torch.multiprocessing as mp

from selfplay.actor import ActorStats, Stamper, Trajectory, actor_main, make_actor
from selfplay.config import Config

Batch = list[tuple[int, list[Trajectory], ActorStats]]


class Ledger:
    """The ids of every trajectory handed to the learner; a second delivery of one is dropped."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.duplicates = 0

    def admit(self, batch: Batch) -> Batch:
        out = []
        for actor_id, items, stats in batch:
            fresh = []
            for t in items:
                if t.uid in self.seen:
                    self.duplicates += 1
                    continue
                self.seen.add(t.uid)
                fresh.append(t)
            out.append((actor_id, fresh, stats))
        return out

    def stats(self) -> dict[str, int]:
        return {"trajectories": len(self.seen), "duplicates_dropped": self.duplicates}


def run_token() -> str:
    """Distinguishes this runtime's trajectory ids from those of an earlier (resumed) one."""
    return uuid.uuid4().hex[:8]


class SharedWeights:
    """A model's parameters in shared memory plus a version counter; copies happen under a lock so no
    reader ever sees half of an update."""

    def __init__(self, model: torch.nn.Module, ctx) -> None:
        self.tensors = {
            k: v.detach().to("cpu").clone().share_memory_() for k, v in model.state_dict().items()
        }
        self.version = ctx.Value("l", 0)
        self.lock = ctx.Lock()

    def publish(self, model: torch.nn.Module, version: int) -> None:
        with self.lock, torch.no_grad():
            for k, v in model.state_dict().items():
                self.tensors[k].copy_(v.detach())
            self.version.value = version

    def pull(self, model: torch.nn.Module, have: int) -> int:
        """Copy the published weights into `model` unless it has them already; returns their version."""
        with self.lock, torch.no_grad():
            version = int(self.version.value)
            if version != have:
                state = model.state_dict()
                for k, v in self.tensors.items():
                    state[k].copy_(v)
        return version


class LocalRuntime:
    """`n` actor processes on this machine (`config.selfplay.actors` unless `actors` is given), and with
    `server` one inference server process that runs the network for all of them."""

    def __init__(
        self,
        config: Config,
        ckpt: Path,
        model: torch.nn.Module,
        *,
        version: int,
        pool: Path | None,
        actor_factory=make_actor,
        actors: int | None = None,
        server: bool = False,
    ):
        from selfplay.inference import LocalServer

        self.config = config
        self.n = config.selfplay.actors if actors is None else actors
        self.ctx = mp.get_context("spawn")
        self.weights = SharedWeights(model, self.ctx)
        self.weights.version.value = version
        self.queue = self.ctx.Queue(maxsize=4 * self.n)
        self.stop_event = self.ctx.Event()
        self.server = LocalServer(self.ctx, config, str(ckpt), self.weights, self.n) if server else None
        self.token = run_token()
        self.ledger = Ledger()
        self.args = (
            config,
            str(ckpt),
            self.weights,
            self.queue,
            self.stop_event,
            str(pool) if pool else None,
            actor_factory,
        )
        self.procs: list = []

    def start(self) -> None:
        if self.server is not None:
            self.server.start()
        for i in range(self.n):
            client = self.server.client(i) if self.server is not None else None
            p = self.ctx.Process(
                target=actor_main,
                args=(i, *self.args, f"{self.token}.{i}.0", client),
                daemon=True,
                name=f"actor-{i}",
            )
            p.start()
            self.procs.append(p)

    def publish(self, model: torch.nn.Module, version: int) -> None:
        self.weights.publish(model, version)

    def depth(self) -> int:
        return self.queue.qsize()

    def collect(self, timeout: float) -> Batch:
        """Finished games waiting (blocking up to `timeout` for the first)."""
        out = []
        try:
            out.append(self.queue.get(timeout=timeout))
            while True:
                out.append(self.queue.get_nowait())
        except queue_mod.Empty:
            pass
        procs = self.procs + ([self.server.proc] if self.server is not None else [])
        for p in procs:
            if not p.is_alive() and p.exitcode not in (0, None):
                raise RuntimeError(f"{p.name} process died (exit code {p.exitcode})")
        return self.ledger.admit(out)

    def stats(self) -> dict[str, float]:
        out: dict[str, float] = {**self.ledger.stats(), "actor_restarts": 0}
        if self.server is not None:
            out.update(self.server.stats())
        return out

    def close(self) -> None:
        # No reads from the queue here: an actor stopping mid-write (it does not flush, see actor_main)
        # leaves half a message in the pipe, and reading it would block forever. An actor waiting on a
        # full queue gives up within a second once `stop` is set (`actor._put`).
        self.stop_event.set()
        if self.server is not None:
            self.server.close()
        deadline = time.monotonic() + 10
        for p in self.procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
            p.join()
        self.procs = []


class InProcessRuntime:
    """One actor stepped by the learner itself: `collect` plays until some game finishes."""

    def __init__(
        self,
        config: Config,
        ckpt: Path,
        model: torch.nn.Module,
        *,
        version: int,
        pool: Path | None,
        actor_factory=make_actor,
        actors: int | None = None,
        server: bool = False,
    ):
        self.actor = actor_factory(0, config, str(ckpt), str(pool) if pool else None)
        self.actor.policy.model.load_state_dict(model.state_dict())
        self.actor.version = version
        self.stamp = Stamper(f"{run_token()}.0.0")
        self.ledger = Ledger()

    def start(self) -> None:
        pass

    def publish(self, model: torch.nn.Module, version: int) -> None:
        self.actor.policy.model.load_state_dict(model.state_dict())
        self.actor.version = version

    def depth(self) -> int:
        return 0

    def collect(self, timeout: float) -> Batch:
        while True:
            finished = self.actor.step()
            if finished:
                return self.ledger.admit([(0, self.stamp(finished), self.actor.take_stats())])

    def stats(self) -> dict[str, float]:
        return {**self.ledger.stats(), "actor_restarts": 0}

    def close(self) -> None:
        pass


def make_runtime(
    config: Config,
    ckpt: Path,
    model: torch.nn.Module,
    *,
    version: int,
    pool: Path | None,
    actor_factory=make_actor,
    actors: int | None = None,
    server: bool = False,
):
    """The runtime of `config.runtime.backend`: Ray actors, local actor processes, or (0 actors) one
    actor in this process.

    `actor_factory(actor_id, config, ckpt, pool_path, *, policy=None)` builds each actor (a picklable,
    module-level function; `policy` replaces loading `ckpt`); `actors` defaults to
    `config.selfplay.actors`; `server` sends every actor's evaluations to one batched inference server
    (game actors only, see `selfplay.inference.use_server`).
    """
    n = config.selfplay.actors if actors is None else actors
    if config.runtime.backend == "ray":
        from selfplay.ray_runtime import RayRuntime

        cls = RayRuntime
    else:
        cls = LocalRuntime if n > 0 else InProcessRuntime
    return cls(
        config, ckpt, model, version=version, pool=pool, actor_factory=actor_factory, actors=n, server=server
    )

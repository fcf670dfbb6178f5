"""The Ray backend (`runtime.backend: ray`): the same actors as the local runtime, run as Ray actors on
this machine or a cluster; the learner's code does not change.

- Weights travel through Ray's object store: `publish` puts the state dict once, and each actor's next
  `play` call carries a reference to it (loaded only when its version is new).
- Each actor always has `IN_FLIGHT` `play` calls queued, so it keeps playing while the learner trains.
  A call returns as soon as some game finishes.
- An actor that dies (its process killed, its node lost) is replaced by a fresh one, up to
  `runtime.max_restarts` times per actor. Games it had in flight are lost, never delivered twice: the new
  actor stamps ids of a new life, and the `Ledger` drops any id already seen.
- With an inference server (`runtime.inference_server`), one async Ray actor holding
  `runtime.server_gpus` GPUs answers every actor's evaluations, batching the requests that arrive together.

The run directory must be storage every node sees (checkpoints are read by path), as with Ray Train's
`storage_path`.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import torch

import agents
from selfplay.config import Config, RuntimeConfig
from selfplay.runtime.inference import RemotePolicy, serve, server_stats
from selfplay.runtime.ledger import Batch, Ledger, RuntimeFailure, Stamper, run_token
from selfplay.runtime.spec import Actors

IN_FLIGHT = 2


def ray_module():
    """`ray`, or an error saying how to install it."""
    try:
        import ray  # the `ray` extra
    except ImportError:
        raise RuntimeError(
            "runtime.backend: ray needs Ray; install it with `pip install -e .[ray]`"
        ) from None
    return ray


def init_ray(rt: RuntimeConfig):
    """Connect to `rt.ray_address`, or start Ray on this machine; a no-op inside a Ray worker."""
    ray = ray_module()
    if not ray.is_initialized():
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no token written under ~ for a local Ray
        kwargs = {"address": rt.ray_address} if rt.ray_address else {}
        ray.init(**kwargs, include_dashboard=False, log_to_driver=True, configure_logging=False)
    return ray


def on_ray(train, config: Config, run_dir: Path, start: Path, **kwargs) -> Path:
    """Run the learner `train(config, run_dir, start, **kwargs)` as a Ray task holding
    `runtime.learner_gpus` GPUs (so a driver without a GPU can train on a cluster's); it starts the
    actors itself, from there."""
    ray = init_ray(config.runtime)
    remote = ray.remote(train).options(num_cpus=1, num_gpus=config.runtime.learner_gpus)
    return ray.get(remote.remote(config, Path(run_dir).resolve(), Path(start).resolve(), **kwargs))


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in model.trained_state().items()}


class Worker:
    """One actor (game or text) inside a Ray actor process."""

    def __init__(self, actor_id, uid_prefix, config: Config, ckpt, pool, factory, server=None) -> None:
        ray = ray_module()
        policy = None
        if server is not None:
            face = agents.Face.of(agents.read_model_config(ckpt))
            policy = RemotePolicy(lambda request: ray.get(server.score.remote(actor_id, request)), face)
        self.actor = factory(actor_id, config, ckpt, pool, policy=policy)
        self.version = -1
        self.stamp = Stamper(uid_prefix)

    def play(self, weights: list, version: int):
        """Take the weights if they are new, then play until some game finishes."""
        model = self.actor.policy.model
        if model is not None and version != self.version:
            model.load_trained(ray_module().get(weights[0]))  # a list: Ray must not fetch it unasked
            self.actor.version = self.version = version
        while True:
            finished = self.actor.step()
            if finished:
                return self.stamp(finished), self.actor.take_stats(), self.actor.started

    def pid(self) -> int:
        return os.getpid()


class InferenceServer:
    """The batched inference server as an async Ray actor: concurrent `score` calls wait a moment, then
    share one forward pass."""

    def __init__(self, config: Config, ckpt: str, weights: list, version: int, clients: int) -> None:
        if config.selfplay.threads:
            torch.set_num_threads(config.selfplay.threads)
        self.rt = config.runtime
        self.policy = agents.load(ckpt, device=config.selfplay.actor_device)
        self.policy.model.load_trained(ray_module().get(weights[0]))
        self.version, self.clients = version, clients
        self.waiting: list = []
        self.flushing = False
        self.counters = [0, 0, 0.0]  # forward passes, positions, seconds in the network (`serve`)

    async def score(self, client: int, request: list):
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(((client, request), future))
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:

        try:
            deadline = time.monotonic() + self.rt.server_wait_ms / 1000
            while self.waiting:
                clients = {r[0] for r, _ in self.waiting}
                full = sum(len(r[1]) for r, _ in self.waiting) >= self.rt.server_batch
                if not full and len(clients) < self.clients and time.monotonic() < deadline:
                    await asyncio.sleep(0.0005)
                    continue
                batch, n = [], 0
                while self.waiting and (not batch or n + len(self.waiting[0][0][1]) <= self.rt.server_batch):
                    item = self.waiting.pop(0)
                    batch.append(item)
                    n += len(item[0][1])
                answers = serve(self.policy, [r for (_, r), _ in batch], self.version, self.counters)
                for (_, future), answer in zip(batch, answers, strict=True):
                    future.set_result(answer)
                deadline = time.monotonic() + self.rt.server_wait_ms / 1000
        finally:
            self.flushing = False

    async def set_weights(self, weights: list, version: int) -> None:
        state = await weights[0]
        self.policy.model.load_trained(state)
        self.version = version

    def stats(self) -> dict[str, float]:
        return server_stats(self.counters)


class RayRuntime:
    """`n` actors as Ray actors, and optionally one inference server, behind the runtime interface."""

    def __init__(self, actors: Actors, model: torch.nn.Module, *, version: int) -> None:
        config, self.n = actors.config, actors.n
        if self.n < 1:
            raise ValueError("runtime.backend: ray needs at least 1 actor (selfplay.actors / rl.actors)")
        self.ray = init_ray(config.runtime)
        self.config, self.rt = config, config.runtime
        self.ckpt, self.pool, self.factory = actors.ckpt, actors.pool, actors.factory
        server = actors.server
        self.weights = self.ray.put(cpu_state(model))
        self.version = version
        self.token = run_token()
        self.ledger = Ledger()
        self._check_resources(server)
        self.server = None
        if server:
            cls = self.ray.remote(InferenceServer).options(
                num_cpus=1, num_gpus=self.rt.server_gpus, max_concurrency=1000
            )
            self.server = cls.remote(config, self.ckpt, [self.weights], version, self.n)
        self.workers: list = [None] * self.n
        self.lives = [0] * self.n
        self.restarts = self.lost = 0
        self.started = [0] * self.n  # games the actor's current life had begun, as of its last reply
        self.delivered = [0] * self.n
        self.pending: dict = {}  # ObjectRef of a play call -> (actor id, life)

    def _check_resources(self, server: bool) -> None:
        """Resources a local Ray can never give are an error now, not actors pending forever."""
        rt, have = self.rt, self.ray.cluster_resources()
        cpus = self.n * rt.actor_cpus + (1 if server else 0)
        gpus = rt.learner_gpus + (rt.server_gpus if server else self.n * rt.actor_gpus)
        wants = []
        if cpus > have.get("CPU", 0):
            extra = " + 1 for the inference server" if server else ""
            wants.append(f"{cpus:g} CPUs ({self.n} actors x runtime.actor_cpus = {rt.actor_cpus:g}{extra})")
        if gpus > have.get("GPU", 0):
            wants.append(
                f"{gpus:g} GPUs (runtime.learner_gpus + "
                + ("runtime.server_gpus)" if server else f"{self.n} actors x runtime.actor_gpus)")
            )
        if not wants:
            return
        msg = (
            f"the Ray cluster has {have.get('CPU', 0):g} CPUs and {have.get('GPU', 0):g} GPUs, "
            f"the run asks for {' and '.join(wants)}"
        )
        if rt.ray_address is None:
            raise RuntimeError(msg)
        print(f"runtime: {msg}; waiting for the cluster to provide them")

    def _spawn(self, i: int) -> None:
        cls = self.ray.remote(Worker).options(
            num_cpus=self.rt.actor_cpus,
            num_gpus=0 if self.server is not None else self.rt.actor_gpus,
            name=f"selfplay-actor-{i}-{self.token}-{self.lives[i]}",
            max_restarts=0,  # a dead actor is replaced here, with a new life and new trajectory ids
        )
        self.workers[i] = cls.remote(
            i,
            f"{self.token}.{i}.{self.lives[i]}",
            self.config,
            self.ckpt,
            self.pool,
            self.factory,
            self.server,
        )
        for _ in range(IN_FLIGHT):
            self._submit(i)

    def _submit(self, i: int) -> None:
        ref = self.workers[i].play.remote([self.weights], self.version)
        self.pending[ref] = (i, self.lives[i])

    def start(self) -> None:
        for i in range(self.n):
            self._spawn(i)

    def publish(self, model: torch.nn.Module, version: int) -> None:
        self.weights = self.ray.put(cpu_state(model))
        self.version = version
        if self.server is not None:
            self.server.set_weights.remote([self.weights], version)

    def depth(self) -> int:
        ready, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
        return len(ready)

    def collect(self, timeout: float) -> Batch:
        """Finished games of every play call done (blocking up to `timeout` for the first)."""
        ray = self.ray
        ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
        out = []
        for ref in ready:
            i, life = self.pending.pop(ref)
            try:
                trajs, stats, started = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as e:
                if life == self.lives[i]:
                    self._restart(i, e)
                continue
            if life == self.lives[i]:
                self._submit(i)
                self.started[i] = max(self.started[i], started)
                self.delivered[i] += len(trajs)
            out.append((i, trajs, stats))
        return self.ledger.admit(out)

    def _restart(self, i: int, error: Exception) -> None:
        if self.lives[i] >= self.rt.max_restarts:
            raise RuntimeFailure(
                f"actor {i} died {self.lives[i] + 1} times (runtime.max_restarts = {self.rt.max_restarts}); "
                f"last error: {error}"
            )
        lost = max(0, self.started[i] - self.delivered[i])  # in flight at its last reply, at least
        print(f"runtime: actor {i} died ({type(error).__name__}), {lost} games in flight lost; restarting it")
        self.ray.kill(self.workers[i], no_restart=True)
        self.lives[i] += 1
        self.restarts += 1
        self.lost += lost
        self.started[i] = self.delivered[i] = 0
        self._spawn(i)

    def stats(self) -> dict[str, float]:
        out: dict[str, float] = {
            **self.ledger.stats(),
            "actor_restarts": self.restarts,
            "games_lost": self.lost,
        }
        if self.server is not None:
            out.update(self.ray.get(self.server.stats.remote()))
        return out

    def pids(self) -> dict[str, int]:
        return {}  # Ray's own tools (`ray list actors`) show where its actors run

    def close(self) -> None:
        for w in self.workers:
            if w is not None:
                self.ray.kill(w, no_restart=True)
        if self.server is not None:
            self.ray.kill(self.server, no_restart=True)
        self.workers, self.pending, self.server = [None] * self.n, {}, None

"""Actors as processes on this machine (`LocalRuntime`), or one actor in the learner's own process
(`InProcessRuntime`, `actors: 0`), and the actor process's loop (`actor_main`)."""

from __future__ import annotations

import os
import queue
import threading
import time
from multiprocessing.connection import wait

import torch
import torch.multiprocessing as mp

import agents
from selfplay.config import Config
from selfplay.runtime.inference import LocalServer, RemotePolicy, ServerGone
from selfplay.runtime.ledger import Batch, Ledger, RuntimeFailure, Stamper, run_token
from selfplay.runtime.spec import Actors

INBOX = 4096  # batches of finished games read from the actors and not yet collected, at most


class SharedWeights:
    """A model's parameters in shared memory plus a version, under a sequence lock: the learner (the only
    writer) makes `seq` odd while it copies and even again after, and a reader keeps its copy only if
    `seq` was even and unchanged across it. Readers never block the writer, and a reader killed mid-copy
    holds nothing (a real lock held by a dead actor would stop the learner's next publish forever)."""

    def __init__(self, model: torch.nn.Module, ctx) -> None:
        self.tensors = {
            k: v.detach().to("cpu").clone().share_memory_() for k, v in model.trained_state().items()
        }
        self.seq = ctx.RawValue("q", 0)
        self.version = ctx.RawValue("q", 0)

    def publish(self, model: torch.nn.Module, version: int) -> None:
        self.seq.value += 1
        with torch.no_grad():
            for k, v in model.trained_state().items():
                self.tensors[k].copy_(v.detach())
        self.version.value = version
        self.seq.value += 1

    def pull(self, model: torch.nn.Module, have: int) -> int:
        """Copy the published weights into `model` unless it has them already; returns their version."""
        while True:
            seq = self.seq.value
            if seq % 2 == 0:
                version = int(self.version.value)
                if version == have:
                    return version
                with torch.no_grad():
                    state = model.state_dict()
                    for k, v in self.tensors.items():
                        state[k].copy_(v)
                if self.seq.value == seq:
                    return version
            time.sleep(0.001)  # a publish is under way


class LocalRuntime:
    """`actors.n` actor processes on this machine, and with `server` one inference server process
    that runs the network for all of them.

    Each actor has a pipe of its own to the learner, so an actor that dies, even mid-message, harms no
    other: its pipe reads as ended, the games it had in flight are counted lost (`games_lost`: begun,
    never delivered; counted when the end is read, so a death in a run's last seconds counts too) and a
    new actor takes its place with new trajectory ids, up to `runtime.max_restarts` times per actor. A
    dead inference server is restarted the same way.

    A reader thread drains the pipes into an inbox as games arrive, so actors go on playing while the
    learner is busy elsewhere (a checkpoint's evaluation gauntlet) instead of blocking on a full pipe (a
    pipe holds a few games); `collect` takes from the inbox.
    """

    def __init__(self, actors: Actors, model: torch.nn.Module, *, version: int):
        self.config, self.n = actors.config, actors.n
        self.ctx = mp.get_context("spawn")
        self.weights = SharedWeights(model, self.ctx)
        self.weights.version.value = version
        self.stop = self.ctx.RawValue("b", 0)  # a flag, not an Event: a killed actor must hold no lock
        server = (
            LocalServer(self.ctx, self.config, actors.ckpt, self.weights, self.n) if actors.server else None
        )
        self.server = server
        self.token = run_token()
        self.ledger = Ledger()
        self.args = (self.config, actors.ckpt, self.weights, self.stop, actors.pool, actors.factory)
        self.procs: list = [None] * self.n
        self.conns: list = [None] * self.n  # the learner's end of each actor's pipe
        self.started: list = [None] * self.n  # games each actor began (shared counters)
        self.read = [0] * self.n  # games read from each actor's pipe, this life (the reader's count)
        self.lost_by = [0] * self.n  # games the last death of each actor lost
        self.lives = [0] * self.n
        self.restarts = self.lost = 0
        self.inbox: queue.Queue = queue.Queue(maxsize=INBOX)  # (actor, item), or (actor, None): it ended
        self.closing = False
        self.reader = threading.Thread(target=self._read, name="runtime-reader", daemon=True)

    def _spawn(self, i: int) -> None:
        reader, writer = self.ctx.Pipe(duplex=False)
        self.started[i] = self.ctx.RawValue("q", 0)
        client = self.server.client(i) if self.server is not None else None
        p = self.ctx.Process(
            target=actor_main,
            args=(i, *self.args, writer, self.started[i], f"{self.token}.{i}.{self.lives[i]}", client),
            daemon=True,
            name=f"actor-{i}",
        )
        p.start()
        writer.close()  # the actor holds the only write end: its death reads as the end of the pipe
        self.read[i] = 0  # before the reader thread can see the new pipe
        self.procs[i], self.conns[i] = p, reader

    def start(self) -> None:
        if self.server is not None:
            self.server.start()
        for i in range(self.n):
            self._spawn(i)
        self.reader.start()

    def _read(self) -> None:
        """The reader thread: each message of each live pipe into the inbox, in order, then an end marker
        when the pipe ends (the actor died), which `collect` answers by replacing the actor."""
        ended: set = set()
        while not self.closing:
            live = [c for c in self.conns if c is not None and c not in ended]
            try:
                ready = wait(live, 0.1) if live else []
            except (OSError, ValueError):  # a pipe closed under us: the runtime is closing
                continue
            if not live:
                time.sleep(0.05)
            for conn in ready:
                i = self.conns.index(conn)
                try:
                    item = conn.recv()
                    self.read[i] += len(item[1])
                except (EOFError, OSError):  # the actor died (perhaps mid-message): what it began is final
                    ended.add(conn)
                    item = None
                    self.lost_by[i] = max(0, self.started[i].value - self.read[i])
                    self.lost += self.lost_by[i]  # the only writer, in this thread
                self._put((i, item))

    def _put(self, entry) -> None:
        while not self.closing:  # a full inbox holds the actors back, as a full pipe did
            try:
                return self.inbox.put(entry, timeout=0.1)
            except queue.Full:
                continue

    def publish(self, model: torch.nn.Module, version: int) -> None:
        self.weights.publish(model, version)

    def depth(self) -> int:
        return self.inbox.qsize()

    def collect(self, timeout: float) -> Batch:
        """Finished games waiting (blocking up to `timeout` for the first)."""
        got = []
        try:
            got.append(self.inbox.get(timeout=timeout) if timeout > 0 else self.inbox.get_nowait())
            while True:
                got.append(self.inbox.get_nowait())
        except queue.Empty:
            pass
        out = []
        for i, item in got:
            if item is None:
                self._replace(i)
                continue
            out.append(item)
        if self.server is not None and self.server.dead():
            self._check_restarts("the inference server", self.server.restarts, self.server.proc.exitcode)
            print(
                f"runtime: the inference server died (exit code {self.server.proc.exitcode}); restarting it"
            )
            self.server.restart()
        return self.ledger.admit(out)

    def _replace(self, i: int) -> None:
        p = self.procs[i]
        p.join(timeout=5)
        self.conns[i].close()
        self._check_restarts(f"actor {i}", self.lives[i], p.exitcode)
        lost = self.lost_by[i]
        print(f"runtime: actor {i} died (exit code {p.exitcode}), {lost} games in flight lost; restarting it")
        self.lives[i] += 1
        self.restarts += 1
        self._spawn(i)

    def _check_restarts(self, who: str, restarts: int, exitcode) -> None:
        limit = self.config.runtime.max_restarts
        if restarts >= limit:
            raise RuntimeFailure(
                f"{who} died (exit code {exitcode}) after {restarts} restart(s) (runtime.max_restarts = "
                f"{limit}); the last checkpoint is kept: continue with --resume"
            )

    def stats(self) -> dict[str, float]:
        out: dict[str, float] = {
            **self.ledger.stats(),
            "actor_restarts": self.restarts,
            "games_lost": self.lost,
        }
        if self.server is not None:
            out.update(self.server.stats())
        return out

    def pids(self) -> dict[str, int]:
        """Process ids of the actors (and the server), for people who look at a running run."""
        out = {f"actor-{i}": p.pid for i, p in enumerate(self.procs) if p is not None}
        if self.server is not None and self.server.proc is not None:
            out["inference-server"] = self.server.proc.pid
        return out

    def close(self) -> None:
        # The reader stops first; then nothing more is read from the pipes: closing them makes an actor
        # blocked on a full pipe fail its write and stop, and one stopping mid-write harms no other pipe.
        self.stop.value = 1
        self.closing = True
        if self.reader.is_alive():
            self.reader.join(timeout=5)
        for c in self.conns:
            if c is not None:
                c.close()
        if self.server is not None:
            self.server.close()
        deadline = time.monotonic() + 10
        for p in self.procs:
            if p is not None:
                p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p is not None and p.is_alive():
                p.terminate()
                p.join()
        self.procs = [None] * self.n


class InProcessRuntime:
    """One actor stepped by the learner itself: `collect` plays until some game finishes."""

    def __init__(self, actors: Actors, model: torch.nn.Module, *, version: int):
        self.actor = actors.factory(0, actors.config, actors.ckpt, actors.pool)
        self.actor.policy.model.load_trained(model.trained_state())
        self.actor.version = version
        self.stamp = Stamper(f"{run_token()}.0.0")
        self.ledger = Ledger()

    def start(self) -> None:
        pass

    def publish(self, model: torch.nn.Module, version: int) -> None:
        self.actor.policy.model.load_trained(model.trained_state())
        self.actor.version = version

    def depth(self) -> int:
        return 0

    def collect(self, timeout: float) -> Batch:
        while True:
            finished = self.actor.step()
            if finished:
                return self.ledger.admit([(0, self.stamp(finished), self.actor.take_stats())])

    def stats(self) -> dict[str, float]:
        return {**self.ledger.stats(), "actor_restarts": 0, "games_lost": 0}

    def pids(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


def actor_main(
    actor_id,
    config: Config,
    ckpt: str,
    weights,
    stop,
    pool_path: str | None,
    factory,
    conn,
    started,
    uid_prefix: str,
    client=None,
) -> None:
    """An actor process: build the actor (`factory`), play until `stop` is set, taking new weights between
    steps (or, with an inference server `client`, asking it for every evaluation), and send what finishes
    down `conn`. `started` counts the games (groups) it began, so the runtime knows how many a death loses."""
    remote = RemotePolicy(client, agents.Face.of(agents.read_model_config(ckpt))) if client else None
    actor = factory(actor_id, config, ckpt, pool_path, policy=remote)
    model = actor.policy.model
    if model is not None:
        actor.version = weights.pull(model, -1)
    stamp = Stamper(uid_prefix)
    started.value = actor.started
    parent = os.getppid()
    try:
        while not stop.value and os.getppid() == parent:  # a killed learner takes its actors with it
            finished = actor.step()
            started.value = actor.started
            if finished:
                conn.send((actor_id, stamp(finished), actor.take_stats()))  # blocks while the pipe is full
            if model is not None and weights.version.value != actor.version:
                actor.version = weights.pull(model, actor.version)
    except (ServerGone, BrokenPipeError):  # the run is ending (the learner closed its end)
        return

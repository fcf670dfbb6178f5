"""Batched inference for many actors: one process owns the network, actors send it positions and get back
each legal move's score and the position's value.

With one GPU and several actor processes this is what keeps the GPU busy: each actor's search asks for a
batch of `games_per_actor` leaves, and the server merges every request waiting into one forward pass
(up to `runtime.server_batch` positions). Actors then hold no network at all. The local runtime runs
`server_main` in a process of its own, each actor on a connection of its own to its Unix socket (so a
client or server that dies mid-message harms no one else); the Ray runtime runs the same `serve` in a
Ray actor. It serves game actors (legal moves and a value), so it runs on `selfplay.actor_device` with
`selfplay.threads`.
"""

from __future__ import annotations

import contextlib
import os
import queue as queue_mod
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Client, Listener, wait

import numpy as np
import torch

import agents
from agents.policy import Face, Query, evaluations, queries
from selfplay.config import Config

Request = list[Query]  # the positions of one client's call
Reply = tuple[
    list[np.ndarray], np.ndarray, int
]  # per position: move log-likelihoods; values; weights version


def serve(policy: agents.Policy, requests: Sequence[Request], version: int, counters=None) -> list[Reply]:
    """Score every request's positions in one forward pass and split the result back per request.

    `counters` (forward passes, positions, seconds in the network; a list or a shared array) are added to.
    """
    flat = [q for r in requests for q in r]
    t0 = time.perf_counter()
    logprobs, values = policy.score(flat) if flat else ([], np.zeros(0, np.float32))
    if counters is not None:
        counters[0] += 1
        counters[1] += len(flat)
        counters[2] += time.perf_counter() - t0
    out, i = [], 0
    for r in requests:
        out.append((logprobs[i : i + len(r)], values[i : i + len(r)], version))
        i += len(r)
    return out


class RemotePolicy:
    """An actor's stand-in for `agents.Policy`: `evaluate` is answered by the inference server.

    `face` is how the server's model reads a position (`agents.Face.of` its checkpoint's config);
    `version` is the weights version of the last answer, so trajectories record what really chose
    their moves. `model` is None: there are no weights here to update.
    """

    model = None

    def __init__(self, call: Callable[[Request], Reply], face: Face) -> None:
        self.call, self.face = call, face
        self.version: int | None = None

    def evaluate(self, states: Sequence) -> list[agents.Evaluation]:
        if not states:
            return []
        actions, qs = queries(states, self.face)
        logprobs, values, self.version = self.call(qs)
        return evaluations(actions, logprobs, values)


class ServerGone(RuntimeError):
    """The inference server stopped (the run is ending), or the learner is gone."""


class LocalClient:
    """An actor's line to the local server: a connection of its own to the server's socket. When the
    server dies the client connects to its successor (the runtime starts one at the same address) and asks
    again, so an actor never notices a server restart. Picklable: it travels to the actor at spawn."""

    def __init__(self, address: str, stop) -> None:
        self.address, self.stop = address, stop
        self.conn = None
        self.parent = os.getppid()

    def __getstate__(self) -> dict:
        return {"address": self.address, "stop": self.stop}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["address"], state["stop"])

    def _gone(self) -> bool:
        return bool(self.stop.value) or os.getppid() != self.parent  # stopped, or the learner is dead

    def _connect(self):
        while True:
            if self._gone():
                raise ServerGone("the run is ending")
            try:
                return Client(self.address, family="AF_UNIX")
            except OSError:  # not listening yet, or restarting
                time.sleep(0.05)

    def __call__(self, request: Request) -> Reply:
        while True:
            if self.conn is None:
                self.conn = self._connect()
            try:
                self.conn.send(request)
                while not self.conn.poll(1.0):
                    if self._gone():
                        raise ServerGone("the run is ending")
                return self.conn.recv()
            except (EOFError, OSError):  # the server died mid-request: ask its successor
                self.conn.close()
                self.conn = None


class LocalServer:
    """The inference server process of the local runtime, listening on a Unix socket; `restart` replaces a
    dead one at the same address (clients reconnect by themselves)."""

    def __init__(self, ctx, config: Config, ckpt: str, weights, n_clients: int) -> None:
        self.ctx, self.args = ctx, (config, ckpt, weights, n_clients)
        self.dir = tempfile.mkdtemp(prefix="selfplay-server-")
        self.address = os.path.join(self.dir, "socket")
        self.stop = ctx.RawValue("b", 0)  # a flag, not an Event: a killed process must hold no lock
        self.counters = ctx.RawArray("d", 3)  # forward passes, positions, seconds in the network
        self.proc = None
        self.restarts = 0

    def client(self, i: int | None = None) -> LocalClient:
        return LocalClient(self.address, self.stop)

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)  # a dead server's socket
        self.proc = self.ctx.Process(
            target=server_main,
            args=(*self.args, self.address, self.stop, self.counters),
            daemon=True,
            name="inference-server",
        )
        self.proc.start()

    def dead(self) -> bool:
        return self.proc is not None and not self.proc.is_alive()

    def restart(self) -> None:
        self.proc.join()
        self.restarts += 1
        self.start()

    def stats(self) -> dict[str, float]:
        return {**server_stats(self.counters), "server_restarts": self.restarts}

    def close(self) -> None:
        self.stop.value = 1
        if self.proc is not None:
            self.proc.join(timeout=10)
            if self.proc.is_alive():
                self.proc.terminate()
                self.proc.join()
        shutil.rmtree(self.dir, ignore_errors=True)


def server_stats(counters) -> dict[str, float]:
    forwards, positions, seconds = list(counters)
    return {"server_forwards": forwards, "server_positions": positions, "server_net_seconds": seconds}


def gather(get: Callable[[float], tuple], first: tuple, *, max_positions: int, wait_s: float, clients: int):
    """`first` plus whatever else arrives within `wait_s`, stopping early at `max_positions` or once every
    client is waiting on this batch (none can send more until it is answered)."""
    batch, n = [first], len(first[1])
    deadline = time.monotonic() + wait_s
    while n < max_positions and len({r[0] for r in batch}) < clients:
        try:
            item = get(max(0.0, deadline - time.monotonic()))
        except queue_mod.Empty:
            break
        batch.append(item)
        n += len(item[1])
    return batch


class _Requests:
    """Requests from the connected clients, one at a time (each client waits for its reply before it asks
    again). A client that disconnects, or dies mid-request, is dropped; new ones are accepted meanwhile."""

    def __init__(self, address: str) -> None:
        self.listener = Listener(address, family="AF_UNIX")
        self.conns: list = []
        self.new: list = []  # appended by the accepting thread
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.new.append(self.listener.accept())
            except OSError:  # a client that gave up during the handshake
                continue

    def get(self, timeout: float):
        """(connection, request) of the next request; `queue.Empty` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            while self.new:
                self.conns.append(self.new.pop())
            for conn in wait(self.conns, timeout=min(0.05, max(0.0, deadline - time.monotonic()))):
                try:
                    return conn, conn.recv()
                except (EOFError, OSError):  # gone, perhaps mid-message: it will never be answered
                    self.conns.remove(conn)
            if time.monotonic() >= deadline:
                raise queue_mod.Empty


def server_main(config: Config, ckpt: str, weights, n_clients: int, address: str, stop, counters) -> None:
    """The local server process: answer batches of requests of up to `n_clients` clients until stopped,
    taking new weights between batches."""
    rt = config.runtime
    if config.selfplay.threads:
        torch.set_num_threads(config.selfplay.threads)
    requests = _Requests(address)
    policy = agents.load(ckpt, device=config.selfplay.actor_device)
    version = weights.pull(policy.model, -1)
    parent = os.getppid()
    while not stop.value and os.getppid() == parent:
        try:
            first = requests.get(0.5)
        except queue_mod.Empty:
            continue
        batch = gather(
            requests.get,
            first,
            max_positions=rt.server_batch,
            wait_s=rt.server_wait_ms / 1000,
            clients=n_clients,
        )
        if weights.version.value != version:
            version = weights.pull(policy.model, version)
        answers = serve(policy, [r for _, r in batch], version, counters)
        for (conn, _), answer in zip(batch, answers, strict=True):
            with contextlib.suppress(OSError):  # a client that died waiting
                conn.send(answer)


def use_server(config: Config, actors: int) -> bool:
    """Whether game actors go through the inference server (`runtime.inference_server`)."""
    mode = config.runtime.inference_server
    if mode == "auto":
        return actors >= 2 and agents.resolve_device(config.selfplay.actor_device).type == "cuda"
    return mode == "on" and actors >= 1

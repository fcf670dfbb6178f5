"""Batched inference for many actors: one process owns the network, actors send it positions and get back
each legal move's score and the position's value.

With one GPU and several actor processes this is what keeps the GPU busy: each actor's search asks for a
batch of `games_per_actor` leaves, and the server merges every request waiting into one forward pass
(up to `runtime.server_batch` positions). Actors then hold no network at all. The local runtime runs
`server_main` in a process of its own; the Ray runtime runs the same `serve` in a Ray actor.
"""

from __future__ import annotations

import os
import queue as queue_mod
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

import agents
from agents.policy import evaluations, queries
from selfplay.config import Config

Request = tuple[list[str], list[list[str]]]  # prompts, each prompt's legal move texts
Reply = tuple[list[np.ndarray], np.ndarray, int]  # per prompt: move log-likelihoods; values; weights version


def serve(policy: agents.Policy, requests: Sequence[Request], version: int, counters=None) -> list[Reply]:
    """Score every request's positions in one forward pass and split the result back per request.

    `counters` (forward passes, positions, seconds in the network; a list or a shared array) are added to.
    """
    prompts = [p for r in requests for p in r[0]]
    texts = [t for r in requests for t in r[1]]
    t0 = time.perf_counter()
    logprobs, values = policy.score(prompts, texts) if prompts else ([], np.zeros(0, np.float32))
    if counters is not None:
        counters[0] += 1
        counters[1] += len(prompts)
        counters[2] += time.perf_counter() - t0
    out, i = [], 0
    for r in requests:
        n = len(r[0])
        out.append((logprobs[i : i + n], values[i : i + n], version))
        i += n
    return out


class RemotePolicy:
    """An actor's stand-in for `agents.Policy`: `evaluate` is answered by the inference server.

    `version` is the weights version of the last answer, so trajectories record what really chose
    their moves. `model` is None: there are no weights here to update.
    """

    model = None

    def __init__(self, call: Callable[[list[str], list[list[str]]], Reply]) -> None:
        self.call = call
        self.version: int | None = None

    def evaluate(self, states: Sequence) -> list[agents.Evaluation]:
        if not states:
            return []
        actions, prompts, texts = queries(states)
        logprobs, values, self.version = self.call(prompts, texts)
        return evaluations(actions, logprobs, values)


class ServerGone(RuntimeError):
    """The inference server stopped (the run is ending, or it died)."""


class LocalClient:
    """An actor's line to the local server: its request goes on the shared queue, its reply comes back on
    the actor's own queue. Picklable, so it travels to the actor process at spawn."""

    def __init__(self, client_id: int, requests, replies, stop) -> None:
        self.client_id, self.requests, self.replies, self.stop = client_id, requests, replies, stop

    def __call__(self, prompts: list[str], texts: list[list[str]]) -> Reply:
        self.requests.put((self.client_id, prompts, texts))
        while True:
            try:
                return self.replies.get(timeout=1.0)
            except queue_mod.Empty:
                if self.stop.is_set():
                    raise ServerGone("the inference server was stopped") from None


class LocalServer:
    """The inference server process of the local runtime, and the queues that reach it."""

    def __init__(self, ctx, config: Config, ckpt: str, weights, n_clients: int) -> None:
        self.requests = ctx.Queue()
        self.replies = [ctx.Queue() for _ in range(n_clients)]
        self.stop = ctx.Event()
        self.counters = ctx.Array("d", 3)  # forward passes, positions, seconds in the network
        self.proc = ctx.Process(
            target=server_main,
            args=(config, ckpt, weights, self.requests, self.replies, self.stop, self.counters),
            daemon=True,
            name="inference-server",
        )

    def client(self, i: int) -> LocalClient:
        return LocalClient(i, self.requests, self.replies[i], self.stop)

    def start(self) -> None:
        self.proc.start()

    def stats(self) -> dict[str, float]:
        return server_stats(self.counters)

    def close(self) -> None:
        self.stop.set()
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join()


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


def server_main(config: Config, ckpt: str, weights, requests, replies, stop, counters) -> None:
    """The local server process: answer batches of requests until stopped, taking new weights between
    batches."""
    rt = config.runtime
    if config.selfplay.threads:
        torch.set_num_threads(config.selfplay.threads)
    policy = agents.load(ckpt, device=config.selfplay.actor_device)
    version = weights.pull(policy.model, -1)
    parent = os.getppid()
    while not stop.is_set() and os.getppid() == parent:
        try:
            first = requests.get(timeout=0.5)
        except queue_mod.Empty:
            continue
        batch = gather(
            lambda t: requests.get(timeout=t) if t > 0 else requests.get_nowait(),
            first,
            max_positions=rt.server_batch,
            wait_s=rt.server_wait_ms / 1000,
            clients=len(replies),
        )
        if weights.version.value != version:
            version = weights.pull(policy.model, version)
        answers = serve(policy, [(p, t) for _, p, t in batch], version, counters)
        for (cid, _, _), answer in zip(batch, answers, strict=True):
            replies[cid].put(answer)


def use_server(config: Config, actors: int) -> bool:
    """Whether game actors go through the inference server (`runtime.inference_server`)."""
    mode = config.runtime.inference_server
    if mode == "auto":
        return actors >= 2 and agents.resolve_device(config.selfplay.actor_device).type == "cuda"
    return mode == "on" and actors >= 1

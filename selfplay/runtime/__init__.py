"""Where actors run, independent of what they play. The learner sees one small interface: `start`,
`publish`, `collect`, `depth`, `stats`, `pids`, `close`; which backend is behind it is the only thing
`runtime.backend` changes.

- `local.LocalRuntime` spawns actor processes (torch multiprocessing): weights travel through tensors in
  shared memory with a version number, finished items through a pipe per actor; with an inference server
  (`inference`, game actors) the actors hold no network and send their positions to it instead. A dead
  actor or server is restarted.
- `local.InProcessRuntime` plays in the learner's own process (`actors: 0`), for tests and debugging.
- `ray_backend.RayRuntime` runs the same actors on Ray.

What an actor plays is its factory's business (`Actors`: `selfplay.games.actor.make_actor` for games,
`selfplay.text.actor.make_text_actor` for reward environments): the runtime only builds actors with it
and steps them. Every finished item carries a unique id; the `Ledger` (`ledger`) drops any the learner
was already given, so a retried or restarted actor can never make the learner count a game twice.
"""

from __future__ import annotations

import torch

from selfplay.runtime.ledger import Batch, Ledger, RuntimeFailure, Stamper, run_token
from selfplay.runtime.local import InProcessRuntime, LocalRuntime, SharedWeights, actor_main
from selfplay.runtime.ray_backend import RayRuntime
from selfplay.runtime.spec import Actors

__all__ = [
    "Actors",
    "Batch",
    "InProcessRuntime",
    "Ledger",
    "LocalRuntime",
    "RuntimeFailure",
    "SharedWeights",
    "Stamper",
    "actor_main",
    "make_runtime",
    "run_token",
]


def make_runtime(actors: Actors, model: torch.nn.Module, *, version: int):
    """The runtime of `config.runtime.backend` for `actors`, whose weights start as `model`'s (published
    as `version`): Ray actors, local actor processes, or (`actors.n == 0`) one actor in this process."""
    if actors.config.runtime.backend == "ray":
        cls = RayRuntime
    else:
        cls = LocalRuntime if actors.n > 0 else InProcessRuntime
    return cls(actors, model, version=version)

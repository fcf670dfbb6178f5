"""Where actors run, independent of what they play. The learner sees one small interface: `start`,
`publish`, `collect`, `depth`, `stats`, `pids`, `close`; which backend is behind it is the only thing
`runtime.backend` changes.

- `local.LocalRuntime` spawns actor processes (torch multiprocessing): weights travel through tensors in
  shared memory with a version number, finished items through a pipe per actor; with an inference server
  (`inference`, game actors) the actors hold no network and send their positions to it instead. A dead
  actor or server is restarted.
- `local.InProcessRuntime` plays in the learner's own process (`actors: 0`), for tests and debugging.
- `ray_backend.RayRuntime` runs the same actors on Ray.

What an actor plays is its factory's business (`selfplay.actor.make_actor` for games,
`selfplay.text_actor.make_text_actor` for reward environments): the runtime only builds actors with it
and steps them. Every finished item carries a unique id; the `Ledger` (`ledger`) drops any the learner
was already given, so a retried or restarted actor can never make the learner count a game twice.
"""

from __future__ import annotations

from pathlib import Path

import torch

from selfplay.config import Config
from selfplay.runtime.ledger import Batch, Ledger, RuntimeFailure, Stamper, run_token
from selfplay.runtime.local import InProcessRuntime, LocalRuntime, SharedWeights, actor_main

__all__ = [
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


def make_runtime(
    config: Config,
    section,
    ckpt: Path,
    model: torch.nn.Module,
    *,
    version: int,
    actor_factory,
    pool: Path | None = None,
    server: bool = False,
):
    """The runtime of `config.runtime.backend` for a stage whose config `section` says how many actors
    (`actors`; 0 plays in this process), and on which device and threads: Ray actors, local actor
    processes, or one actor in this process.

    `actor_factory(actor_id, config, ckpt, pool_path, *, policy=None)` builds each actor (a picklable,
    module-level function; `policy` replaces loading `ckpt`). It returns an object with a `policy`, a
    `version`, `started` (games or groups begun), `step() -> list[finished]` and `take_stats()`.
    `server` sends every actor's evaluations to one batched inference server (game actors only, see
    `selfplay.runtime.inference.use_server`).
    """
    if config.runtime.backend == "ray":
        from selfplay.runtime.ray_backend import RayRuntime

        cls = RayRuntime
    else:
        cls = LocalRuntime if section.actors > 0 else InProcessRuntime
    return cls(
        config, section, ckpt, model, version=version, actor_factory=actor_factory, pool=pool, server=server
    )

"""What a runtime runs, whichever backend runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from selfplay.config import Config


@dataclass(frozen=True)
class Actors:
    """`n` actors, each built in its process by `factory(actor_id, config, ckpt, pool, *, policy=None)`:
    a picklable, module-level function (`selfplay.games.actor.make_actor`,
    `selfplay.text.actor.make_text_actor`) returning an object with a `policy`, a `version`, `started` (games
    or groups begun), `step() -> list[finished]` and `take_stats()`; `policy`, when given, replaces loading
    `ckpt`. `n = 0` plays in the learner's own process."""

    config: Config
    factory: Callable
    ckpt: str  # the weights they start from (then the published ones)
    n: int
    pool: str | None = None  # `pg`: the file naming past checkpoints to play against
    server: bool = False  # evaluations through one batched inference server (game actors only)

"""What every runtime backend shares: the batches actors deliver, the `Ledger` that drops a trajectory
delivered twice (so a retried or restarted actor never makes the learner count a game twice), the token
that tells one runtime's trajectory ids from an earlier one's, the `Stamper` that gives them, and the
failure that ends a run. What an item is (a game, a group of completions) is the actor's business: the
ledger reads only its `uid`."""

from __future__ import annotations

import uuid
from typing import Any

Batch = list[tuple[int, list[Any], Any]]  # (actor id, finished items, the actor's stats since its last)


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


class RuntimeFailure(RuntimeError):
    """An actor or the inference server died more often than `runtime.max_restarts` allows."""


class Stamper:
    """Gives every finished item a run-wide unique id: `<runtime token>.<actor>.<life>.<serial>`."""

    def __init__(self, prefix: str) -> None:
        self.prefix, self.serial = prefix, 0

    def __call__(self, finished: list) -> list:
        for t in finished:
            t.uid = f"{self.prefix}.{self.serial}"
            self.serial += 1
        return finished

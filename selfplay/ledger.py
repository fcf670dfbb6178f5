"""What every runtime backend shares: the batches actors deliver, the `Ledger` that drops a trajectory
delivered twice (so a retried or restarted actor never makes the learner count a game twice), the token
that tells one runtime's trajectory ids from an earlier one's, and the failure that ends a run."""

from __future__ import annotations

import uuid

from selfplay.actor import ActorStats, Trajectory

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


class RuntimeFailure(RuntimeError):
    """An actor or the inference server died more often than `runtime.max_restarts` allows."""

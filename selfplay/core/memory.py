"""Peak resident memory of a stage: the process's high-water mark, reset when the stage starts (Linux:
`/proc/self/clear_refs`), read when it ends; each stage's summary records it (`peak_rss_mib`). Where the
mark cannot be reset it is the process's peak so far; where it cannot be read, None."""

from __future__ import annotations

import contextlib
import resource


def reset() -> None:
    """Start measuring a stage: the high-water mark back to the memory in use now."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_mib() -> float | None:
    """The peak resident memory (MiB) since the last `reset`, of this process (actors are processes of
    their own)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    with contextlib.suppress(OSError, ValueError):
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux
    return None

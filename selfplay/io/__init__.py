"""Atomic file writes: a reader (or a resumed run) never sees a half-written file."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

LOCK = ".lock"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Write to a temporary file beside `path`; on success fsync and rename it over `path`.

    On an exception the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result should look like any written file
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def cannot_write(path: str | os.PathLike) -> str | None:
    """Why nothing could be written at `path` (a directory to write into or create): its nearest existing
    directory is on a read-only file system or not writable by this user; None when it can be. Commands
    ask first, so that a read-only place is one named error before any work, not a traceback after it."""
    full = Path(path).absolute()
    existing = next((p for p in (full, *full.parents) if p.exists()), full.anchor)
    at = "" if Path(existing) == full else f" ({existing}, where it would be made)"
    with contextlib.suppress(OSError):
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            return f"{path} cannot be written: a read-only file system{at}"
    if Path(existing).is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        return f"{path} cannot be written: permission denied{at}"
    return None


class InUseError(ValueError):
    """A directory another process is writing (it holds DIR/.lock); the message says who."""


_HELD: dict[Path, int] = {}  # directory -> lock file descriptor, for the life of `exclusive`


@contextlib.contextmanager
def exclusive(directory: str | os.PathLike, what: str) -> Iterator[Callable[[], None]]:
    """An exclusive lock on `directory` (a run or sweep directory) for the life of the block: an `flock` on
    DIR/.lock, let go when the process ends however it ends; `InUseError` naming the holder when another
    process has it. Yields `sign()`, which writes this process's id into the lock file for the next
    one's message; a command calls it once it is sure to write, so that a refusal rewrites nothing."""
    directory = Path(directory)
    key = directory.resolve()
    if key in _HELD:  # this process holds it already (a stage calling another)
        yield lambda: None
        return
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise InUseError(f"{directory} is in use by {holder}; wait for it, or use another {what}") from None

    def sign() -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)

    _HELD[key] = fd
    try:
        yield sign
    finally:
        del _HELD[key]
        os.close(fd)  # closing lets go of the lock

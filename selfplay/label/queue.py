"""The queue of items to label, shared by every labeller of one directory, in files only.

Two append-only files beside each other: the mode's records file (`formats.FILES`) and its log,
`MODE.queue.jsonl`, of events, each under one lock (`MODE.lock`, `fcntl.flock`) so that any number of
servers and terminals can share a queue:

    {"event": "claim", "item": ID, "labeller": NAME, "token": T, "time": ..., "shown": {...}}
    {"event": "skip", "item": ID, "labeller": NAME, "token": T, "time": ...}    labelled as nothing
    {"event": "pass", "item": ID, "time": ..., "why": ...}                      not to be labelled

A claim hands an item to one labeller with a one-time token and what was shown (answers, models), so the
record made when the form comes back is built from the claim, not from the form. An item is done once
a record or a skip holds its id; it is free when unclaimed, or when its claim is older than `lease_s`.
A labeller is handed their own open claim first (a reloaded page or a resumed session shows the same
item) and otherwise the first free item, so two labellers never hold the same item. A program labelling
(a judge) claims within a `session` of its own (host and process): two judges of one name share a queue
as two people do, and a judge's open claims go back to it only once the process that made them is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envs.files import loads
from selfplay.io.labels import FILES, LabelFileError, append, now, records


class FormError(ValueError):
    """A form the queue refuses: unknown, replayed, someone else's, or already labelled."""


@dataclass
class Claim:
    item: str
    labeller: str
    token: str
    time: float  # seconds since the epoch
    shown: dict[str, Any] = field(default_factory=dict)
    session: str | None = None  # "HOST:PID" of the program that claimed it (a judge); None: a person

    def held_by_other(self, session: str | None) -> bool:
        """Whether the claim belongs to another program that is still running (on this host; on another
        host it may be, so it counts as running until its lease ends)."""
        if self.session is None or session is None or self.session == session:
            return False
        host, _, pid = self.session.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return True
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process: alive
            return True
        return True


def this_session() -> str:
    """The `session` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class _State:
    done: dict[str, str] = field(default_factory=dict)  # item -> who labelled it
    used: set[str] = field(default_factory=set)  # tokens answered
    claims: dict[str, Claim] = field(default_factory=dict)  # item -> latest claim
    tokens: dict[str, Claim] = field(default_factory=dict)  # token -> its claim
    labelled: dict[str, int] = field(default_factory=dict)  # labeller -> records made


class Queue:
    """One mode's queue in `directory` (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike, mode: str, *, lease_s: float = 1800.0) -> None:
        if mode not in FILES:
            raise ValueError(f"mode must be one of {', '.join(FILES)}, got {mode!r}")
        self.dir, self.mode, self.lease_s = Path(directory), mode, lease_s
        self.records = self.dir / FILES[mode]
        self.log = self.dir / f"{mode}.queue.jsonl"
        self._lock = self.dir / f"{mode}.lock"
        self._state, self._seen = _State(), {}  # what was read, and where each file's reading stopped

    @contextlib.contextmanager
    def locked(self) -> Iterator[_State]:
        """The queue's state, read under the lock held until the block ends."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self._read()
        finally:
            os.close(fd)  # releases the lock

    def _read(self) -> _State:
        """The state, brought up to date with the lines appended since the last read (both files only
        grow; one that was replaced or shrank is read again from its start)."""
        for path in (self.log, self.records):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            inode, offset, _ = self._seen.get(path, (st.st_ino, 0, 0))
            if inode != st.st_ino or st.st_size < offset:
                self._state, self._seen = _State(), {}
                return self._read()
        for path, apply in ((self.log, self._apply_event), (self.records, self._apply_record)):
            for where, obj in self._new_lines(path):
                if not isinstance(obj, dict):
                    raise LabelFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
                apply(where, obj)
        return self._state

    def _new_lines(self, path: Path) -> Iterator[tuple[str, Any]]:
        if not path.exists():
            return
        with path.open("rb") as f:
            inode, offset, lineno = self._seen.get(path, (os.fstat(f.fileno()).st_ino, 0, 0))
            f.seek(offset)
            for raw in f:
                if not raw.endswith(b"\n"):  # a line still being written: read it next time
                    break
                offset, lineno = offset + len(raw), lineno + 1
                self._seen[path] = (inode, offset, lineno)
                if raw.strip():
                    try:
                        yield f"{path}:{lineno}", loads(raw)
                    except ValueError as e:
                        raise LabelFileError(f"{path}:{lineno}: {e}") from None

    def _apply_event(self, where: str, e: dict) -> None:
        st, kind, item = self._state, e.get("event"), e.get("item")
        if not isinstance(item, str):
            raise LabelFileError(f"{where}: an event needs an item id")
        if kind == "claim":
            c = Claim(item, e["labeller"], e["token"], float(e["t"]), e.get("shown", {}), e.get("session"))
            st.claims[item], st.tokens[c.token] = c, c
        elif kind == "skip":
            st.done[item] = e["labeller"]
            st.used.add(e["token"])
        elif kind == "pass":
            st.done[item] = ""
        else:
            raise LabelFileError(f"{where}: unknown event {kind!r}")

    def _apply_record(self, where: str, r: dict) -> None:
        st, who = self._state, r.get("labeller", "")
        st.done[r.get("id", "")] = who
        st.used.add(r.get("token", ""))
        st.labelled[who] = st.labelled.get(who, 0) + 1

    def _event(self, **event: Any) -> None:
        append(self.log, {**event, "time": now(), "t": time.time()})  # unrounded: a lease compares it

    def _claim(self, item: str, labeller: str, shown: dict[str, Any], session: str | None = None) -> Claim:
        c = Claim(item, labeller, secrets.token_urlsafe(16), time.time(), shown, session)
        extra = {"session": session} if session is not None else {}
        self._event(event="claim", item=item, labeller=labeller, token=c.token, shown=shown, **extra)
        return c

    # --- what labellers do ----------------------------------------------------------------------
    def next(
        self,
        labeller: str,
        items: Iterable[str],
        show: Callable[[str], dict[str, Any] | str],
        *,
        session: str | None = None,
    ) -> Claim | None:
        """The labeller's open claim, else a claim on the first free item of `items`; None when none is
        left. `show(item)` makes what the item shows (answers...), or a string saying why the item is not
        to be labelled (e.g. the model got it right), which marks it done. A program gives its `session`
        (`this_session()`): another running session's claims are not its own."""
        with self.locked() as st:
            mine = [
                c
                for c in st.claims.values()
                if c.labeller == labeller and c.item not in st.done and not c.held_by_other(session)
            ]
            if mine:
                return max(mine, key=lambda c: c.time)
            for item in items:
                if item in st.done:
                    continue
                held = st.claims.get(item)
                if held is not None and time.time() - held.time < self.lease_s:
                    continue
                shown = show(item)
                if isinstance(shown, str):
                    self._event(event="pass", item=item, why=shown)
                    continue
                return self._claim(item, labeller, shown, session)
        return None

    def open(self, labeller: str, item: str, shown: dict[str, Any]) -> Claim:
        """A claim on a new item made for this labeller (the arena's typed prompt)."""
        with self.locked():
            return self._claim(item, labeller, shown)

    def submit(
        self, token: str, labeller: str, make: Callable[[Claim], dict[str, Any] | None]
    ) -> dict | None:
        """Answer the claim holding `token`: `make(claim)` builds the record (appended to the records
        file) or returns None for a skip. Refuses an unknown or replayed token, another labeller's claim
        and an item already labelled."""
        with self.locked() as st:
            claim = st.tokens.get(token)
            if claim is None:
                raise FormError("unknown form token: this form was not handed out by this queue")
            if token in st.used:
                raise FormError("this form was already submitted (a replayed post); nothing was recorded")
            if claim.labeller != labeller:
                raise FormError(f"this item was handed to {claim.labeller!r}, not to {labeller!r}")
            if claim.item in st.done:
                who = st.done[claim.item]
                raise FormError(f"item {claim.item} was already labelled{f' by {who!r}' if who else ''}")
            record = make(claim)
            if record is None:
                self._event(event="skip", item=claim.item, labeller=labeller, token=token)
            else:
                append(self.records, {**record, "id": claim.item, "labeller": labeller, "token": token})
            return record

    def progress(self, labeller: str) -> tuple[int, int]:
        """(records this labeller made, items done by anyone)."""
        with self.locked() as st:
            return st.labelled.get(labeller, 0), len(st.done)

    def record(self, token: str, labeller: str) -> dict | None:
        """The record this labeller made answering `token` (the arena shows its names after the vote)."""
        if not token or not self.records.exists():
            return None
        with self.locked():
            found = [r for _, r in records(self.records) if r.get("token") == token]
        return found[0] if found and found[0].get("labeller") == labeller else None

    def claim_of(self, token: str) -> Claim | None:
        with self.locked() as st:
            return st.tokens.get(token)

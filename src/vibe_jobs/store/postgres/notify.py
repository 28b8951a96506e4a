"""Wake-ups over LISTEN/NOTIFY.

On channel `vibe_jobs.<schema>`, a JSON payload is sent when a job is inserted (`op: "insert"`, by a
trigger, delivered when the inserting transaction commits) and when it changes status or gets a
cancel request (`op: "update"`, sent by the writing `PostgresStore` right after its change committed,
batched; schema step 2 moved these out of the writing transaction, whose commit they serialised).
A `Listener` owns one dedicated connection (LISTEN state lives
in a session) and calls `callback(JobChange)` on the event loop for each notification.

Notifications are wake-ups, not a log: one sent while no listener was connected is lost. A worker
therefore also polls (claim until nothing is left, then wait for a notification OR a timeout).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import asyncpg

from vibe_jobs.logs import get_logger
from vibe_jobs.states import JobStatus
from vibe_jobs.store.base import JobChange

log = get_logger("vibe_jobs.store.postgres")


_STATUS = {s.value: s for s in JobStatus}


def parse(payload: str) -> JobChange | None:
    found = parse_all(payload)
    return found[0] if len(found) == 1 else None


def parse_all(payload: str) -> list[JobChange]:
    """The changes of one payload: one object (the insert trigger) or a list of them (the store
    batches the changes it announces, so each listener gets one notification per batch). Anyone who may connect
    to the database may notify on the channel: a payload not of that shape (a job id or tool name that is not a
    string, an unknown op) is unreadable as a whole, not handed on (a number for a job id ended the server)."""
    try:
        data = json.loads(payload)
        items = data if isinstance(data, list) else [data]
        return [_change(d) for d in items]
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: JSON nested thousands deep
        log.warning("store.notify_unreadable", payload=payload[:200])
        return []


def _change(d: Any) -> JobChange:
    """One change of a payload; TypeError or ValueError for one not of the shape the store sends."""
    op, job_id, tool = d["op"], d["id"], d["tool"]
    if not (isinstance(job_id, str) and isinstance(tool, str)):
        raise TypeError("a job id and a tool name are strings")
    if op not in ("insert", "update"):
        raise ValueError(f"unknown op {op!r}")
    return JobChange(op, job_id, _STATUS[d["status"]], tool, d["cancel"] is True)


class Listener:
    """LISTEN on one dedicated connection until `close()`; also an async context manager.

    `alive` turns False when the connection is lost (then `on_lost`, if given, is called once): the
    caller opens a new listener and, since notifications may have been missed, re-checks the queue.
    """

    def __init__(
        self,
        conn: asyncpg.Connection,
        channel: str,
        callback: Callable[[JobChange], Any],
        on_lost: Callable[[], Any] | None = None,
    ) -> None:
        self._conn, self.channel, self._callback, self._on_lost = conn, channel, callback, on_lost
        self.alive = False

    @property
    def server_pid(self) -> int:
        """The backend process id of the listening session."""
        return self._conn.get_server_pid()

    async def start(self) -> Listener:
        self._conn.add_termination_listener(self._terminated)
        await self._conn.add_listener(self.channel, self._notified)
        self.alive = True
        return self

    def _notified(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        for change in parse_all(str(payload)):
            self._callback(change)

    def _terminated(self, conn: Any) -> None:
        if self.alive:
            self.alive = False
            log.warning("store.listener_lost", channel=self.channel)
            if self._on_lost is not None:
                self._on_lost()

    async def close(self) -> None:
        was_alive, self.alive = self.alive, False
        if was_alive:
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await self._conn.remove_listener(self.channel, self._notified)
        self._conn.remove_termination_listener(self._terminated)
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await self._conn.close(timeout=5)

    async def __aenter__(self) -> Listener:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

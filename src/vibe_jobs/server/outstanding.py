"""A job's question put to a client as a server-to-client request (2025-11-25) stays outstanding past the
long-poll that sent it: a person may take longer to answer than one long-poll lasts.

The SDK keeps a server-to-client request's pending reply in the connection's dispatcher, not in the tool call,
so the request runs in a task of a task group that outlives the call (the manager's), one per client connection
and question (`put`), kept in the connection's state so that a later long-poll of the same connection finds it
(`outstanding`) instead of asking again. The task ends when its work ends (the reply fed the job, or the
question ended: see `server/asking.py`) and at the latest when the connection closes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup
from mcp.server.session import ServerSession

from vibe_jobs.logs import get_logger
from vibe_jobs.server.sdk import at_connection_close, connection_state

log = get_logger("vibe_jobs.server.outstanding")
OUTSTANDING = "vibe_jobs.outstanding_questions"  # in the connection's state: {(job id, question id): Outstanding}
CLOSE_KEY = "vibe_jobs.outstanding_questions.close"  # marks the connection's close callback registered

Key = tuple[str, str]


@dataclass
class Outstanding:
    """One question's request on one connection: `done` is set once its task ended (however it ended)."""

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)


def outstanding(session: ServerSession, key: Key) -> Outstanding | None:
    """The request for question `key` (job id, question id) this client's connection has outstanding, if any."""
    return _table(session).get(key)


def put(session: ServerSession, key: Key, tg: TaskGroup, ask: Callable[[], Awaitable[None]]) -> Outstanding:
    """Run `ask()` in `tg` as this connection's outstanding request for question `key`; it is cancelled when the
    connection closes. An error it raises is logged, never `tg`'s."""
    table = _table(session)
    entry = table[key] = Outstanding()
    at_connection_close(session, CLOSE_KEY, lambda _connection: _cancel_all(table))
    tg.start_soon(_run, table, key, entry, ask)
    return entry


async def _run(table: dict[Key, Outstanding], key: Key, entry: Outstanding, ask: Callable[[], Awaitable[None]]) -> None:
    try:
        with entry.scope:
            await ask()
    except Exception:  # a bug here must not end the manager's task group (every job of the server)
        log.exception("job.question_request_failed", job_id=key[0], request_id=key[1])
    finally:
        if table.get(key) is entry:
            del table[key]
        entry.done.set()


def _cancel_all(table: dict[Key, Outstanding]) -> None:
    """The connection closed: no reply can come, so each of its requests ends (as no answer)."""
    for entry in list(table.values()):
        entry.scope.cancel()


def _table(session: ServerSession) -> dict[Key, Outstanding]:
    table: dict[Key, Outstanding] = connection_state(session).setdefault(OUTSTANDING, {})
    return table

"""PostgreSQL failures as `StoreError`s of their condition, told by the driver's error class and the
SQLSTATE code (https://www.postgresql.org/docs/current/errcodes-appendix.html), never by message text."""

from __future__ import annotations

import asyncpg

from vibe_jobs.errors import DuplicateJob, StoreCorrupt, StoreError, StoreFull, StoreLocked, StoreUnavailable

# What a driver call raises when the database fails (anything else is a bug of ours, left to propagate).
DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
# A session the server ended (pg_terminate_backend, a restart) or a socket that broke: worth a retry.
CONNECTION_LOST = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.CrashShutdownError,
    asyncpg.InternalClientError,
    ConnectionError,
)


def connection_lost(exc: BaseException) -> bool:
    """A session lost (`CONNECTION_LOST`), also as a transaction block reports it: asyncpg's rollback on the way out
    of `conn.transaction()` raises InterfaceError ("the underlying connection is closed") in place of the loss."""
    if isinstance(exc, CONNECTION_LOST):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and isinstance(exc.__context__, CONNECTION_LOST)


_BY_SQLSTATE: dict[str, type[StoreError]] = {
    "23505": DuplicateJob,  # unique_violation
    "40001": StoreLocked,  # serialization_failure
    "40P01": StoreLocked,  # deadlock_detected
    "55P03": StoreLocked,  # lock_not_available
    "57014": StoreLocked,  # query_canceled: `statement_timeout` ran out (held up by a locked table, a busy server)
    "53300": StoreUnavailable,  # too_many_connections
    "57P01": StoreUnavailable,  # admin_shutdown
    "57P02": StoreUnavailable,  # crash_shutdown
    "57P03": StoreUnavailable,  # cannot_connect_now
    "XX001": StoreCorrupt,  # data_corrupted
    "XX002": StoreCorrupt,  # index_corrupted
}
_BY_CLASS: dict[str, type[StoreError]] = {
    "08": StoreUnavailable,  # connection exception
    "53": StoreFull,  # insufficient resources: disk full, out of memory
}


def error_class(exc: BaseException) -> type[StoreError]:
    """The `StoreError` subclass that names the condition of a driver error."""
    if connection_lost(exc) or isinstance(exc, OSError):  # OSError: the server cannot be reached at all
        return StoreUnavailable
    state = getattr(exc, "sqlstate", None)
    if not isinstance(state, str):
        return StoreError
    return _BY_SQLSTATE.get(state) or _BY_CLASS.get(state[:2], StoreError)


def store_error(exc: BaseException, message: str) -> StoreError:
    """`message` as the error of `exc`'s condition."""
    return error_class(exc)(message)

"""Health probes: /healthz (the process answers) and /readyz (the store answers within a time-out)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from vibe_jobs.errors import JobError
from vibe_jobs.store import JobStore

READY_TIMEOUT_SECONDS = 2.0
PROBE_ID = "readyz-probe"  # a key lookup: the cheapest question every store answers
SQLITE_MAGIC = b"SQLite format 3\x00"


async def store_problem(store: JobStore, seconds: float = READY_TIMEOUT_SECONDS) -> str | None:
    """Why the store is not ready, or None when it answered within `seconds`."""
    try:
        with anyio.fail_after(seconds):
            if (path := _sqlite_path(store)) is not None:
                await anyio.to_thread.run_sync(_check_sqlite_file, path, abandon_on_cancel=True)
            await store.get(PROBE_ID)
    except TimeoutError:
        return f"the store did not answer within {seconds:g} s"
    except (JobError, OSError) as exc:
        return f"the store failed: {exc}"
    return None


def _sqlite_path(store: JobStore) -> str | None:
    """A SQLite store's file: an open connection keeps working on a file nobody could open any more."""
    path = getattr(store, "path", None)
    return path if store.url.startswith("sqlite:") and isinstance(path, str) and path != ":memory:" else None


def _check_sqlite_file(path: str) -> None:
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head and head != SQLITE_MAGIC:
        raise OSError(f"{path} is not a SQLite database any more")
    if not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
        raise OSError(f"the directory of {path} is not writable")


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "alive"})


def readyz_endpoint(
    store: JobStore, timeout: float = READY_TIMEOUT_SECONDS
) -> Callable[[Request], Awaitable[Response]]:
    async def readyz(request: Request) -> Response:
        problem = await store_problem(store, timeout)
        if problem is not None:
            return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
        return JSONResponse({"status": "ready"})

    return readyz

"""Health probes: /healthz (the process answers) and /readyz (the store answers within a time-out)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from vibe_jobs.errors import JobError
from vibe_jobs.store import JobStore

READY_TIMEOUT_SECONDS = 2.0
PROBE_ID = "readyz-probe"  # a key lookup: the cheapest question every store answers


async def store_problem(store: JobStore, seconds: float = READY_TIMEOUT_SECONDS) -> str | None:
    """Why the store is not ready, or None when it answered within `seconds` and sees nothing wrong."""
    try:
        with anyio.fail_after(seconds):
            if (problem := await store.problem()) is not None:
                return problem
            await store.get(PROBE_ID)
    except TimeoutError:
        return f"the store did not answer within {seconds:g} s"
    except JobError as exc:
        return f"the store failed: {exc}"
    return None


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

"""Job tools that misbehave as work (loaded with `--tools tests.e2e.hostile_work_tools`): they raise what is
not an Exception, ignore cancellation, or block a worker thread past their time-out. Blocking tools wait on
`GATE`, which the plain tool `open-gate` opens (it lives in the server process, as the tools do)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import anyio
import anyio.lowlevel

from vibe_jobs import JobContext, job_tool, plain_tool

GATE = threading.Event()
GATE_SECONDS = 60.0  # a blocked thread gives up after this, whatever the test does
_copies = {"now": 0, "most": 0}
_lock = threading.Lock()


class CustomBase(BaseException):
    """Not an Exception: what a tool author's own control flow might raise."""


RAISES: dict[str, Callable[[], BaseException]] = {
    "custom": lambda: CustomBase("custom base exception"),
    "systemexit": lambda: SystemExit(3),
    "keyboard": KeyboardInterrupt,
    "generatorexit": GeneratorExit,
    "cancelled": asyncio.CancelledError,
}


@job_tool(description="Raise a BaseException that is not an Exception")
async def raise_base(kind: str, job: JobContext) -> str:
    await anyio.lowlevel.checkpoint()
    raise RAISES[kind]()


@job_tool(description="Raise a BaseException that is not an Exception, in a worker thread")
def raise_base_sync(kind: str) -> str:
    raise RAISES[kind]()


@job_tool(description="Catch every cancellation and go on until the gate opens")
async def swallow(job: JobContext) -> str:
    while not GATE.is_set():
        try:
            await anyio.sleep(0.05)
        except BaseException:  # hostile on purpose
            job.diagnostic("cancellation swallowed")
    return "finished after swallowing"


@job_tool(
    description="Block a worker thread until the gate opens; counts copies running at once", timeout=1, retry_safe=True
)
def block_sync() -> dict[str, int]:
    with _lock:
        _copies["now"] += 1
        _copies["most"] = max(_copies["most"], _copies["now"])
    try:
        GATE.wait(GATE_SECONDS)
    finally:
        with _lock:
            _copies["now"] -= 1
    return dict(_copies)


@job_tool(description="Block a worker thread until the gate opens (no time-out of its own)")
def block_sync_long() -> str:
    GATE.wait(GATE_SECONDS)
    return "unblocked"


@job_tool(description="Return at once")
async def quick() -> str:
    return "quick"


@plain_tool(name="open-gate", description="Let every blocked tool go on")
async def open_gate() -> str:
    GATE.set()
    return "open"


@plain_tool(name="copies", description="How many block_sync calls run now, and the most that ran at once")
async def copies() -> dict[str, int]:
    with _lock:
        return dict(_copies)

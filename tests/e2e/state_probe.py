"""A plain tool that reports the serving process's own state (loaded with `--tools tests.e2e.state_probe`, by
leak tests and bench/churn.py): RSS, open fds, threads, asyncio tasks, live objects of vibe_jobs/mcp classes, and
the size of every container attribute those objects hold. Nothing of the product is changed; the objects
frozen at start-up are unfrozen (only the collector's work changes)."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from collections import Counter
from collections.abc import Sized
from typing import Any

from vibe_jobs import plain_tool

OWN = ("vibe_jobs", "mcp", "mcp_types")


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _ours(obj: object) -> bool:
    return type(obj).__module__.split(".")[0] in OWN


def _containers(obj: object, sizes: Counter[str]) -> None:
    attrs = getattr(obj, "__dict__", None) or {
        s: getattr(obj, s) for s in getattr(type(obj), "__slots__", ()) if hasattr(obj, s)
    }
    for name, value in attrs.items():
        held = isinstance(value, dict | set | list) or type(value).__name__ == "deque"
        if held and isinstance(value, Sized):
            sizes[f"{type(obj).__qualname__}.{name}"] += len(value)


def _task_name(task: asyncio.Task[Any]) -> str:
    """The task's first frame in vibe_jobs or mcp code (anyio wraps every coroutine in one of its own)."""
    names: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None and (frame := getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)):
        names.append(f"{frame.f_globals.get('__name__')}.{frame.f_code.co_qualname}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return next((n for n in names if n.split(".")[0] in OWN), names[0] if names else "?")


@plain_tool(name="state-probe", description="The serving process's own figures (leak tests, bench/churn.py)")
async def state_probe() -> dict[str, Any]:
    gc.unfreeze()  # the server froze what start-up made (jobserver), out of gc.get_objects(): the manager too
    gc.collect()
    instances: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for obj in gc.get_objects():
        if _ours(obj) and not isinstance(obj, type):
            instances[f"{type(obj).__module__}.{type(obj).__qualname__}"] += 1
            _containers(obj, sizes)
    return {
        "pid": os.getpid(),
        "rss_kb": _rss_kb(),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "tasks": len(asyncio.all_tasks()),
        "task_names": dict(Counter(_task_name(t) for t in asyncio.all_tasks())),
        "objects": len(gc.get_objects()),
        "instances": dict(instances),
        "sizes": dict(sizes),
    }

"""Where a job's Python work goes: bytecodes and calls per job, by function, on the memory-store path.

Runs create -> running -> completed for N jobs through the JobManager on the memory store, one job at a time
(each coroutine driven to its end by hand: the memory store never suspends), under a tracer that counts every
bytecode executed and every Python call, by function. Unlike a timer, the counts are the same on every run,
so a change's cost shows exactly, however loaded the machine is. They count Python work only: what C does for
an opcode (an allocation, a dict lookup, the garbage collector) is not in them; `valgrind --tool=callgrind`
counts that (bench/MEASUREMENTS.md).

Run: .venv/bin/python bench/opcount.py [--jobs N] [--top K] [TREE]
     TREE: another checkout (its src/ is imported instead of this one's), to compare two commits.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Coroutine
from types import FrameType
from typing import Any

RESULT = {"content": [{"type": "text", "text": "ok"}], "isError": False}


def drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends to its end and return its value."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("the coroutine suspended: this path must not wait")


def batch(n: int) -> None:
    from vibe_jobs import JobManager, JobStatus, Settings
    from vibe_jobs.store import MemoryStore

    manager = JobManager(MemoryStore(), Settings())
    for i in range(n):
        job_id = drive(manager.create_job("noop", {"i": i}))
        drive(manager.update_job_status(job_id, JobStatus.RUNNING))
        drive(manager.set_job_result(job_id, RESULT))


def count(n: int) -> tuple[Counter[str], Counter[str]]:
    """(bytecodes, calls) by `file:function` for n jobs, after a warm-up."""
    batch(300)  # imports, caches, specialisation
    ops: Counter[str] = Counter()
    calls: Counter[str] = Counter()

    def tracer(frame: FrameType, event: str, _arg: Any) -> Any:
        frame.f_trace_opcodes = True
        code = frame.f_code
        key = f"{os.path.basename(code.co_filename)}:{code.co_name}"
        if event == "opcode":
            ops[key] += 1
        elif event == "call":
            calls[key] += 1
        return tracer

    sys.settrace(tracer)
    try:
        batch(n)
    finally:
        sys.settrace(None)
    for key in [k for k in ops if k.startswith("opcount.py:")]:  # the driver's own work
        del ops[key]
        calls.pop(key, None)
    return ops, calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tree", nargs="?", help="another checkout to measure instead of this one")
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    if args.tree:
        sys.path.insert(0, os.path.join(os.path.abspath(args.tree), "src"))
    from vibe_jobs.logs import configure_logging

    configure_logging("warning")
    ops, calls = count(args.jobs)
    n = args.jobs
    print(f"memory store, create -> running -> completed, {n:,} jobs ({args.tree or 'this checkout'})")
    print(f"  per job: {sum(ops.values()) / n:,.0f} bytecodes, {sum(calls.values()) / n:.1f} Python calls")
    print(f"  {'bytecodes':>10} {'calls':>6}  function")
    for key, value in ops.most_common(args.top):
        print(f"  {value / n:10.1f} {calls[key] / n:6.1f}  {key}")


if __name__ == "__main__":
    main()

"""What storing a job's plain return value costs: `bounded_result(to_call_result(value), max_result_bytes)`, as a
job's run (`JobToolSpec.invoke`) and `JobManager.set_job_result` do, for a small dict and a 20,000-row dict.

Printed: CPU time per call, the median [min-max] of the rounds (a round times 20,000 calls of the small one,
one of the large one). Even CPU time moves by tens of per cent on a shared machine: compare two trees in
alternate runs, or several runs of each.

Run: .venv/bin/python bench/stored_result.py [TREE] [--rounds N]
     TREE: another checkout (its src/ is imported instead of this one's), to compare two commits.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

MAX_RESULT_BYTES = 4 * 1024 * 1024  # Settings().max_result_bytes

SMALL = {"path": "src/app.py", "lines": 120, "ok": True, "score": 0.93, "tags": ["a", "b"]}
ROWS = {
    "rows": [
        {"id": i, "name": f"row {i}", "score": i * 0.5, "ok": i % 2 == 0, "tags": ["x", "y"]} for i in range(20_000)
    ]
}


def per_call(store: Callable[[Any], Any], value: Any, calls: int, rounds: int) -> list[float]:
    """Microseconds per call of `store(value)`, one figure a round of `calls` calls."""
    store(value)  # warm-up
    figures = []
    for _ in range(rounds):
        gc.collect()
        began = time.process_time()
        for _ in range(calls):
            store(value)
        figures.append((time.process_time() - began) / calls * 1e6)
    return figures


def shown(figures: list[float], unit: str = "us") -> str:
    scaled = [f / 1000 for f in figures] if unit == "ms" else figures
    return f"{statistics.median(scaled):,.1f} {unit} [{min(scaled):,.1f}-{max(scaled):,.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tree", nargs="?", help="another checkout to measure instead of this one")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    if args.tree:
        sys.path.insert(0, os.path.join(os.path.abspath(args.tree), "src"))
    from vibe_jobs.results import bounded_result, to_call_result

    def store(value: Any) -> Any:
        return bounded_result(to_call_result(value), MAX_RESULT_BYTES)

    print(f"bounded_result(to_call_result(value)) ({args.tree or 'this checkout'})")
    print(f"  small dict ({len(SMALL)} keys):    {shown(per_call(store, SMALL, 20_000, args.rounds))}")
    print(f"  20,000-row dict:        {shown(per_call(store, ROWS, 1, args.rounds), 'ms')}")


if __name__ == "__main__":
    main()

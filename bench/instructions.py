"""Instructions per job, counted by valgrind, for one or more trees: the memory-store path (figure 1a's loop)
or the scheduler path (figure 1c: `bench/scheduler.py`'s throughput, a no-op tool run by the local scheduler).

Wall and CPU time on a shared machine move by 30 % between runs; the instructions a run executes do not.
Per job = (run of N jobs - run of 0 jobs) / N, each after the same warm-up, so imports and one-time work
cancel. The garbage collector's work is counted too (it is part of what a job costs).

Run: .venv/bin/python bench/instructions.py [TREE ...] [--jobs N] [--path memory|scheduler]
     TREE: a directory holding a checkout (default: this one); `git worktree add /tmp/old REV` makes one.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# each runs inside the tree's own source, N jobs after a warm-up of 300
MEMORY = """
import asyncio, sys
sys.path.insert(0, sys.argv[1] + "/src")
from vibe_jobs import JobManager, JobStatus, Settings
from vibe_jobs.logs import configure_logging
from vibe_jobs.store import MemoryStore
RESULT = {"content": [{"type": "text", "text": "ok"}], "isError": False}
async def run(n):
    manager = JobManager(MemoryStore(), Settings())
    for i in range(n):
        job_id = await manager.create_job("noop", {"i": i})
        await manager.update_job_status(job_id, JobStatus.RUNNING)
        await manager.set_job_result(job_id, RESULT)
async def main():
    configure_logging("warning")
    await run(300)
    await run(int(sys.argv[2]))
asyncio.run(main())
"""

SCHEDULER = """
import sys
sys.path[:0] = [sys.argv[1] + "/src", sys.argv[1] + "/bench"]
import anyio, scheduler
from vibe_jobs.logs import configure_logging
configure_logging("warning")
anyio.run(scheduler.throughput, 300)
if int(sys.argv[2]):
    anyio.run(scheduler.throughput, int(sys.argv[2]))
"""

PROBES = {"memory": MEMORY, "scheduler": SCHEDULER}
TITLES = {"memory": "memory store, create -> running -> completed", "scheduler": "scheduler, create + run a no-op tool"}


def instructions(probe: str, tree: Path, jobs: int) -> int:
    """Instructions valgrind counts for `probe` running `jobs` jobs in `tree`."""
    out = subprocess.run(
        [
            "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
            sys.executable, "-c", probe, str(tree), str(jobs),
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if found is None:
        raise SystemExit(f"valgrind printed no instruction count:\n{out.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", type=Path, default=[HERE.parent])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--path", choices=sorted(PROBES), default="memory")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    probe = PROBES[args.path]
    print(f"{TITLES[args.path]}: instructions per job ({args.jobs:,} jobs - 0 jobs)")
    for tree in args.trees:
        per_job = (instructions(probe, tree, args.jobs) - instructions(probe, tree, 0)) / args.jobs
        print(f"  {per_job:>10,.0f}  {tree}")


if __name__ == "__main__":
    main()

"""A/B: the in-process figures (1a memory, 1b/1d SQLite, 1c scheduler) of two commits, measured in one run.

A change that must not cost speed is measured against the commit before it on the same machine at the same
time: each round runs every figure once per tree, each in a fresh interpreter, in the order A B B A (so a
drift of the machine's speed during the round falls on both sides), and ratios are taken round by round.
Wall time (jobs/s) and CPU time of the measuring process (jobs per CPU-second, less sensitive to other
work on a shared machine) are both reported.

Run: .venv/bin/python bench/ab.py BEFORE [AFTER] [--rounds N] [--figures mem,sql,sch] [--jobs N]
     BEFORE/AFTER are git revisions or directories holding a checkout (AFTER defaults to this checkout).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import common

# the probe runs inside a tree's own interpreter path: its src and its bench scripts
PROBE = """
import json, os, sys, time
tree, figure, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path[:0] = [os.path.join(tree, "src"), os.path.join(tree, "bench")]
os.chdir(os.path.join(tree, "bench"))
import throughput
from vibe_jobs.logs import configure_logging
configure_logging("warning")
run = {"mem": throughput.vibe_memory, "sql": throughput.vibe_sqlite, "sch": throughput.vibe_scheduler}[figure]
run(min(n, 1000))  # warm-up
cpu0, wall0 = time.process_time(), time.perf_counter()
rate = run(n)
cpu = time.process_time() - cpu0
print(json.dumps({"rate": rate, "per_cpu_s": n / cpu if cpu > 0 else None}))
"""

NAMES = {"mem": "1a memory store", "sql": "1b/1d SQLite durable", "sch": "1c scheduler, memory"}


@contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """A directory holding `rev`: the directory itself when it is one, else a temporary git worktree."""
    if Path(rev).is_dir():
        yield Path(rev).resolve()
        return
    with tempfile.TemporaryDirectory(prefix="vibe-jobs-ab-") as tmp:
        where = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(common.ROOT), "worktree", "add", "--detach", str(where), rev], check=True,
                       capture_output=True)  # fmt: skip
        try:
            yield where
        finally:
            subprocess.run(["git", "-C", str(common.ROOT), "worktree", "remove", "--force", str(where)], check=False)


def probe(tree: Path, figure: str, n: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(tree), figure, str(n)], check=True,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(trees: tuple[Path, Path], figures: list[str], n: int, rounds: int) -> list[common.Row]:
    got: dict[tuple[str, int, str], list[float]] = {}
    for _ in range(rounds):
        for figure in figures:
            for side in (0, 1, 1, 0):
                found = probe(trees[side], figure, n)
                for key in ("rate", "per_cpu_s"):
                    got.setdefault((figure, side, key), []).append(found[key])
    return [r for figure in figures for r in rows(figure, n, got)]


def rows(figure: str, n: int, got: dict[tuple[str, int, str], list[float]]) -> list[common.Row]:
    out = []
    for key, unit in (("rate", "jobs/s"), ("per_cpu_s", "jobs/CPU-s")):
        before, after = got[(figure, 0, key)], got[(figure, 1, key)]
        out.append(common.row(figure, f"{NAMES[figure]}, {n:,} jobs ({unit}): after", unit, after,
                              peer_name="before", peer=before, ratio=common.ratios(after, before),
                              ratio_label="after/before"))  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before")
    ap.add_argument("after", nargs="?", default=str(common.ROOT))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--figures", default="mem,sql,sch")
    ap.add_argument("--jobs", type=int, default=10_000)
    args = ap.parse_args()
    with checkout(args.before) as before, checkout(args.after) as after:
        print(f"before: {args.before}  after: {args.after}  load: {os.getloadavg()[0]:.2f}", flush=True)
        table = measure((before, after), args.figures.split(","), args.jobs, args.rounds)
    print(common.table(table))


if __name__ == "__main__":
    main()

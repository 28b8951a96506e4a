"""Recovery's cost per beat when a shared SQLite file holds many jobs of a tool this process lacks.

A process that is gone (no lease) left LEFT jobs of a tool this process does not have (a tenth of them
running, a few pending with a cancel asked) and MINE pending jobs of a tool it has. Every maintenance beat
runs `recover_orphans`: the first adopts this process's MINE jobs (and the cancelled ones), the later ones
find nothing to adopt and report the LEFT jobs, by tool, in health. The figure is a later beat (the
steady state, every few seconds for as long as no process with that tool comes): wall time, CPU of
the event loop's process, and CPU of the SQLite server process that runs the SQL (Linux /proc). With
--postgres the store is a schema of its own on that server (wall and event loop CPU only).

Run: .venv/bin/python bench/recovery.py [--left N] [--mine K] [--beats B] [--tools T] [--postgres URL] [TREE]
     TREE: another checkout (its src/ is imported instead of this one's), to compare two commits.

--restart N: a restart's recovery instead, the first beat over N pending jobs of a process that is gone (killed
with its queue full): wall time, CPU of the event loop's process and of the SQLite server process, each round on
a new store. --against OLD: this checkout and OLD measured in turn (each round a process of its own), on SQLite
and, with --postgres, on PostgreSQL, printed side by side.
     .venv/bin/python bench/recovery.py --restart 50000 --rounds 3 --against /tmp/old --postgres URL
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process (Linux /proc); 0 for none."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


async def fill(store: Any, left: int, mine: int, now: int) -> None:
    """LEFT jobs of "absent" (every tenth running, every thousandth pending with a cancel asked) and MINE of
    "present", all of a gone owner."""
    from vibe_jobs import JobRecord, JobStatus

    def job(i: int, tool: str) -> JobRecord:
        rec = JobRecord(f"{tool}-{i:06d}", tool, {"i": i, "text": "x" * 100}, JobStatus.PENDING, now - i, now - i)
        rec.owner = "gone"
        if tool == "absent" and i % 10 == 0:
            rec.status, rec.attempt, rec.started_at = JobStatus.RUNNING, 1, now
            rec.diagnostics = ["started"]
        elif tool == "absent" and i % 1000 == 1:
            rec.cancel_requested = "not wanted"
        return rec

    jobs = [job(i, "absent") for i in range(left)] + [job(i, "present") for i in range(mine)]
    for i in range(0, len(jobs), 2000):  # concurrent inserts: the store commits them in groups
        await asyncio.gather(*(store.insert(rec) for rec in jobs[i : i + 2000]))


async def run(left: int, mine: int, beats: int, more_tools: int, postgres: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        from vibe_jobs.store import open_store

        url = f"{postgres}{'&' if '?' in postgres else '?'}schema=bench_{os.urandom(4).hex()}" if postgres else ""
        store = open_store(url or f"sqlite:///{tmp}/jobs.db")
        await store.open()
        try:
            await fill(store, left, mine, int(time.time() * 1000))
            await beats_of(store, beats, more_tools)
        finally:
            await store.close()
            if postgres:
                await store.drop_schema()  # type: ignore[attr-defined]


async def beats_of(store: Any, beats: int, more_tools: int) -> None:
    """The first beat, then `beats` more: their median wall time and CPU."""
    from vibe_jobs import JobManager, Settings
    from vibe_jobs.engine.recovery import recover_orphans
    from vibe_jobs.jobtool import make_spec
    from vibe_jobs.retry import RetryPolicy

    async def present() -> str:
        return "ok"

    spec = make_spec(present, name="present")
    tools = {"present": spec, **{f"other-{i}": spec for i in range(more_tools)}}  # a proxy has thousands
    manager = JobManager(store, Settings(), owner="here")
    link = getattr(store, "_link", None)  # SQLite: its server process runs the SQL
    server = link._proc.pid if link is not None else None
    began = time.perf_counter()
    first = await recover_orphans(manager, tools, RetryPolicy())
    took = (time.perf_counter() - began) * 1000
    print(f"first beat: {len(first.adopted)} adopted in {took:,.0f} ms, left {first.left}")
    walls, cpus, servers = [], [], []
    for _ in range(beats):
        wall, cpu, sql = time.perf_counter(), time.process_time(), cpu_seconds(server)
        found = await recover_orphans(manager, tools, RetryPolicy())
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        servers.append(cpu_seconds(server) - sql)
        assert not found.adopted and sum(found.left.values()) == first.left.get("absent", 0)
    ms = [f"{statistics.median(v) * 1000:.1f} ms" for v in (walls, cpus, servers)]
    sql_cpu = f", SQLite server CPU {ms[2]}" if server is not None else ""
    print(f"a later beat, median of {beats}: wall {ms[0]}, event loop CPU {ms[1]}{sql_cpu}")


async def restart_round(pending: int, postgres: str | None) -> dict[str, float]:
    """One restart: `pending` pending jobs of a gone owner, adopted by the first beat of a new process."""
    from vibe_jobs import JobManager, Settings
    from vibe_jobs.engine.recovery import recover_orphans
    from vibe_jobs.jobtool import make_spec
    from vibe_jobs.retry import RetryPolicy
    from vibe_jobs.store import open_store

    async def present() -> str:
        return "ok"

    with tempfile.TemporaryDirectory() as tmp:
        url = f"{postgres}{'&' if '?' in postgres else '?'}schema=bench_{os.urandom(4).hex()}" if postgres else ""
        store = open_store(url or f"sqlite:///{tmp}/jobs.db")
        await store.open()
        try:
            await fill(store, 0, pending, int(time.time() * 1000))
            manager = JobManager(store, Settings(), owner="here")
            link = getattr(store, "_link", None)
            server = link._proc.pid if link is not None else None
            wall, cpu, sql = time.perf_counter(), time.process_time(), cpu_seconds(server)
            found = await recover_orphans(manager, {"present": make_spec(present, name="present")}, RetryPolicy())
            figures = {
                "wall_ms": (time.perf_counter() - wall) * 1000,
                "loop_cpu_ms": (time.process_time() - cpu) * 1000,
                "sql_cpu_ms": (cpu_seconds(server) - sql) * 1000,
            }
            assert len(found.adopted) == pending, len(found.adopted)
            return figures
        finally:
            await store.close()
            if postgres:
                await store.drop_schema()  # type: ignore[attr-defined]


def compare(pending: int, rounds: int, old: str, postgres: str | None) -> None:
    """This checkout and `old`, a round of each in turn (a process each), on SQLite and PostgreSQL."""
    import json
    import subprocess

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    stores = [("SQLite", None)] + ([("PostgreSQL", postgres)] if postgres else [])
    print(f"restart: {pending:,} pending orphans adopted by the first beat, median of {rounds} alternated rounds")
    for name, pg in stores:
        got: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        for _ in range(rounds):
            for label, tree in (("before", old), ("after", here)):
                cmd = [sys.executable, __file__, tree, "--restart", str(pending), "--json"]
                out = subprocess.run(cmd + (["--postgres", pg] if pg else []), capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(f"{label} ({tree}) failed:\n{out.stderr}")
                got[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
        for label in ("before", "after"):
            runs = got[label]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            each = " / ".join(f"{r['wall_ms']:,.0f}" for r in runs)
            sql_cpu = f", SQLite server CPU {med['sql_cpu_ms']:,.0f} ms" if pg is None else ""
            print(
                f"{name:10} {label:6} wall {med['wall_ms']:,.0f} ms ({each}), event loop CPU"
                f" {med['loop_cpu_ms']:,.0f} ms{sql_cpu}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tree", nargs="?", help="another checkout to measure instead of this one")
    ap.add_argument("--left", type=int, default=20_000)
    ap.add_argument("--mine", type=int, default=20)
    ap.add_argument("--beats", type=int, default=10)
    ap.add_argument("--tools", type=int, default=0, help="tools the process has besides the one of its jobs")
    ap.add_argument("--postgres", help="a PostgreSQL URL (a schema of its own, dropped after) instead of SQLite")
    ap.add_argument("--restart", type=int, help="time a restart's first beat over this many pending orphans")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--against", help="with --restart: an older checkout, measured in turn with this one")
    ap.add_argument("--json", action="store_true", help="with --restart: one round's figures as one JSON line")
    args = ap.parse_args()
    if args.restart and args.against:
        compare(args.restart, args.rounds, args.against, args.postgres)
        return
    if args.tree:
        sys.path.insert(0, os.path.join(os.path.abspath(args.tree), "src"))
    from vibe_jobs.logs import configure_logging

    configure_logging("warning")
    where = args.tree or "this checkout"
    if args.restart:
        import json

        for _ in range(1 if args.json else args.rounds):
            figures = asyncio.run(restart_round(args.restart, args.postgres))
            print(json.dumps(figures) if args.json else f"{where}: {figures}")
        return
    print(f"{args.left:,} jobs of a tool this process lacks, {args.mine} of one of its {args.tools + 1} ({where})")
    asyncio.run(run(args.left, args.mine, args.beats, args.tools, args.postgres))


if __name__ == "__main__":
    main()

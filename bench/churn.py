"""A server that runs for weeks: many short client sessions against one real `vibe-jobs serve`, then the server
process's own figures after each round (tests/e2e/state_probe.py, loaded as a tool). Prints RSS, fds, threads, asyncio
tasks and the containers and live objects that grew since the first round; growth that does not level off is a leak.

    python bench/churn.py [--rounds 6] [--sessions 35] [--store sqlite|memory://] [--transport streamable-http|stdio]
                          [--steps name,...] [--settle SECONDS]
    python bench/churn.py --quick   # 2 short rounds: a smoke run, not a figure

Over stdio one session lives for the whole run (a desktop client's) and its requests are cancelled and dropped;
legacy-era steps are skipped there. Retention and idle time-outs come from the environment as for `serve`
(JOB_MANAGER_MAX_RETENTION, JOB_MANAGER_CLEANUP_INTERVAL, VIBE_JOBS_SESSION_IDLE_SECONDS); --settle waits that long
and probes once more.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from vibe_jobs.client import TasksClientExtension
from vibe_jobs.testing.ports import free_port, stop, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
TOOLS = "tests.e2e.sample_tools,tests.e2e.state_probe"
ENV = {
    "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
    "VIBE_JOBS_LOG_LEVEL": "warning",
    "JOB_MANAGER_MAX_CONCURRENT": "50",
    "VIBE_JOBS_MAX_SESSIONS_PER_PRINCIPAL": "100000",
}
Opener = Callable[..., Any]


def structured(result: Any) -> dict[str, Any]:
    if result.structured_content is not None:
        return dict(result.structured_content)
    return dict(json.loads(result.content[0].text))


class Churn:
    def __init__(self, opener: Opener, base: str | None) -> None:
        self.open, self.base = opener, base

    async def job(self, client: Client, tool: str, args: dict[str, Any]) -> str:
        return str(structured(await client.call_tool(tool, args))["jobId"])

    async def legacy_subscribe_and_long_poll(self) -> None:
        async with self.open("legacy") as c:
            job = await self.job(c, "sleepy", {"seconds": 0.3, "steps": 3})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await c.subscribe_resource(f"job://{job}")
            await c.call_tool("get-job-result", {"jobId": job, "waitSeconds": 5})

    async def listen_and_cancel(self) -> None:
        async with self.open("auto") as c:
            job = await self.job(c, "wait_forever", {})
            async with c.listen(resource_subscriptions=[f"job://{job}"]):
                await c.call_tool("cancel-job", {"jobId": job})

    async def dropped_long_poll(self) -> None:
        """The client goes away in the middle of a long poll (its connection is closed under the request)."""
        for mode in ("legacy", "auto"):
            with anyio.move_on_after(0.3):
                async with self.open(mode) as c:
                    job = await self.job(c, "sleepy", {"seconds": 1.0, "steps": 2})
                    await c.call_tool("get-job-result", {"jobId": job, "waitSeconds": 10})

    async def dropped_listen(self) -> None:
        with anyio.move_on_after(0.3):
            async with self.open("auto") as c:
                job = await self.job(c, "sleepy", {"seconds": 1.0, "steps": 2})
                async with c.listen(resource_subscriptions=[f"job://{job}"]) as sub:
                    async for _ in sub:
                        pass

    async def tasks(self) -> None:
        async with self.open("auto", [TasksClientExtension()]) as c:
            handle = await c.session.call_tool("noop", {}, allow_claimed=True)
            await handle.result() if hasattr(handle, "result") else None

    async def events_dropped(self) -> None:
        if self.base is None:
            return
        with anyio.move_on_after(0.3):
            async with httpx.AsyncClient() as h, h.stream("GET", f"{self.base}/events") as r:
                async for _ in r.aiter_bytes():
                    pass

    async def raw_socket_dropped(self) -> None:
        if self.base is None:
            return
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "x", "version": "1"},
                },
            }
        )
        host, port = self.base.removeprefix("http://").split(":")
        stream = await anyio.connect_tcp(host, int(port))
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        await stream.send((head + body[: len(body) // 2]).encode())
        await stream.aclose()  # half a body, then gone

    def steps(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        if self.base is None:  # stdio: one auto-era session; nothing but its own requests
            return [self.listen_and_cancel, self.dropped_long_poll, self.dropped_listen]
        return [
            self.legacy_subscribe_and_long_poll,
            self.listen_and_cancel,
            self.dropped_long_poll,
            self.dropped_listen,
            self.tasks,
            self.events_dropped,
            self.raw_socket_dropped,
        ]

    async def probe(self) -> dict[str, Any]:
        async with self.open("auto") as c:
            return structured(await c.call_tool("state-probe", {}))


def http_opener(url: str) -> Opener:
    @asynccontextmanager
    async def open_(mode: str, extensions: Any = None) -> AsyncIterator[Client]:
        async with Client(url, mode=mode, read_timeout_seconds=30, extensions=extensions) as c:
            yield c

    return open_


def growth(first: dict[str, Any], last: dict[str, Any], key: str) -> list[str]:
    a, b = first[key], last[key]
    rows = [(k, a.get(k, 0), v) for k, v in b.items() if v - a.get(k, 0) > 2]
    return [f"    {k}: {x} -> {y}" for k, x, y in sorted(rows, key=lambda r: r[1] - r[2])[:25]]


def children_rss_kb(pid: int) -> int:
    """The RSS of the server's child processes (the SQLite store runs in one of its own)."""
    total = 0
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        with open(f"/proc/{child}/status") as f:
            total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
    return total


def db_bytes(db: Path | None) -> str:
    return str(sum(f.stat().st_size for f in db.parent.glob(db.name + "*"))) if db else "-"


async def run(args: argparse.Namespace, churn: Churn, db: Path | None, pid: int) -> None:
    rounds: list[dict[str, Any]] = [await churn.probe()]
    print("round  rss_kb  fds  threads  tasks  objects  db_bytes  child_rss_kb  (after N sessions)")
    steps = [s for s in churn.steps() if not args.steps or s.__name__ in args.steps.split(",")]
    for r in range(args.rounds):
        for i in range(args.sessions):
            await steps[i % len(steps)]()
        rounds.append(await churn.probe())
        p = rounds[-1]
        figures = f"{p['rss_kb']:6}  {p['fds']:3}  {p['threads']:7}  {p['tasks']:5}  {p['objects']:7}"
        print(f"{r + 1:5}  {figures}  {db_bytes(db):>8}  {children_rss_kb(pid):12}  ({(r + 1) * args.sessions})")
    if args.settle:
        await anyio.sleep(args.settle)  # a bench, not a test: the idle time-outs are what is measured
        p = await churn.probe()
        print(f"settled {p['rss_kb']:6}  {p['fds']:3}  {p['threads']:7}  {p['tasks']:5}  {p['objects']:7}")
        rounds.append(p)
    for what, key in (("containers", "sizes"), ("live objects", "instances"), ("asyncio tasks", "task_names")):
        print(f"{what} that grew (first probe after churn -> last):")
        print("\n".join(growth(rounds[1], rounds[-1], key)) or "    none")


def serve_command(store: str, *transport: str) -> list[str]:
    return [sys.executable, "-m", "vibe_jobs", "serve", "--store", store, "--tools", TOOLS, *transport]


async def over_stdio(args: argparse.Namespace, store: str, db: Path | None) -> None:
    """One stdio session for the whole run (a desktop client's): its requests are cancelled and dropped instead."""
    cmd = serve_command(store)
    params = StdioServerParameters(command=cmd[0], args=cmd[1:], env={**os.environ, **ENV}, cwd=str(ROOT))
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="auto", read_timeout_seconds=30) as client:

            @asynccontextmanager
            async def same(mode: str, extensions: Any = None) -> AsyncIterator[Client]:
                yield client

            pid = int(structured(await client.call_tool("state-probe", {}))["pid"])
            await run(args, Churn(same, None), db, pid)


def over_http(args: argparse.Namespace, store: str, db: Path | None) -> None:
    port = free_port()
    cmd = serve_command(store, "--transport", "streamable-http", "--port", str(port))
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **ENV}, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        base = f"http://127.0.0.1:{port}"
        anyio.run(run, args, Churn(http_opener(f"{base}/mcp"), base), db, proc.pid)
    finally:
        stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description="Many short client sessions against one server: its figures per round")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--sessions", type=int, default=35, help="sessions (steps) per round")
    ap.add_argument("--store", default="sqlite", help="sqlite (a file in a temporary directory) or a store URL")
    ap.add_argument("--transport", default="streamable-http", choices=["streamable-http", "stdio"])
    ap.add_argument("--quick", action="store_true", help="2 rounds of 7: a smoke run, not a figure")
    ap.add_argument("--steps", default="", help="comma-separated step names (default: all)")
    ap.add_argument("--settle", type=float, default=0.0, help="seconds idle before one more probe")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.sessions = 2, 7
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "jobs.db" if args.store == "sqlite" else None
        store = f"sqlite:///{db}" if db else args.store
        if args.transport == "stdio":
            anyio.run(over_stdio, args, store, db)
        else:
            over_http(args, store, db)


if __name__ == "__main__":
    main()

"""A server that runs for weeks: many short client sessions against one real `vibe-jobs serve`, then the server
process's own figures after each round (tests/e2e/state_probe.py, loaded as a tool). Prints RSS, fds, threads, asyncio
tasks and the containers and live objects that grew since the first round; growth that does not level off is a leak.

    python bench/churn.py [--rounds 6] [--sessions 30] [--store memory://|sqlite] [--transport streamable-http|stdio]
    python bench/churn.py --ci     # 3 short rounds: a smoke run, not a figure
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
from mcp import Client

from vibe_jobs.client import TasksClientExtension

ROOT = Path(__file__).resolve().parents[1]
TOOLS = "tests.e2e.sample_tools,tests.e2e.state_probe"
ENV = {
    "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
    "VIBE_JOBS_LOG_LEVEL": "warning",
    "JOB_MANAGER_MAX_CONCURRENT": "50",
    "VIBE_JOBS_MAX_SESSIONS_PER_PRINCIPAL": "100000",
}
Opener = Callable[..., Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def db_bytes(db: Path | None) -> str:
    return str(sum(f.stat().st_size for f in db.parent.glob(db.name + "*"))) if db else "-"


async def run(args: argparse.Namespace, base: str, db: Path | None) -> None:
    churn = Churn(http_opener(f"{base}/mcp"), base)
    rounds: list[dict[str, Any]] = [await churn.probe()]
    print("round  rss_kb  fds  threads  tasks  objects  db_bytes  (after N sessions)")
    for r in range(args.rounds):
        steps = [s for s in churn.steps() if not args.steps or s.__name__ in args.steps.split(",")]
        for i in range(args.sessions):
            await steps[i % len(steps)]()
        rounds.append(await churn.probe())
        p = rounds[-1]
        figures = f"{p['rss_kb']:6}  {p['fds']:3}  {p['threads']:7}  {p['tasks']:5}  {p['objects']:7}"
        print(f"{r + 1:5}  {figures}  {db_bytes(db):>8}  ({(r + 1) * args.sessions})", flush=True)
    if args.settle:
        await anyio.sleep(args.settle)
        p = await churn.probe()
        print(f"settled {p['rss_kb']:6}  {p['fds']:3}  {p['threads']:7}  {p['tasks']:5}  {p['objects']:7}")
        rounds.append(p)
    print("containers that grew (first probe after churn -> last):")
    print("\n".join(growth(rounds[1], rounds[-1], "sizes")) or "    none")
    print("live objects that grew (first probe after churn -> last):")
    print("\n".join(growth(rounds[1], rounds[-1], "instances")) or "    none")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--sessions", type=int, default=35)
    ap.add_argument("--store", default="sqlite")
    ap.add_argument("--ci", action="store_true")
    ap.add_argument("--steps", default="", help="comma-separated step names (default: all)")
    ap.add_argument("--settle", type=float, default=0.0, help="seconds idle before one more probe")
    args = ap.parse_args()
    if args.ci:
        args.rounds, args.sessions = 2, 7
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/jobs.db" if args.store == "sqlite" else args.store
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "vibe_jobs",
            "serve",
            "--store",
            store,
            "--tools",
            TOOLS,
            "--transport",
            "streamable-http",
            "--port",
            str(port),
        ]
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **ENV}, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.05)
            db = Path(tmp) / "jobs.db" if args.store == "sqlite" else None
            anyio.run(run, args, f"http://127.0.0.1:{port}", db)
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()

"""Figure 9: how soon a client knows a job has finished, and what knowing costs, by path (issue 9).

A `sleepy` job of L seconds (L = 30; --quick: 3) that reports progress once a second (steps = L) runs on the
real server over stdio (`python -m vibe_jobs serve --store memory:// --tools tests.e2e.sample_tools`, default
settings) and the official MCP client learns of its end by one of these paths:
  subscription (legacy)   resources/subscribe to job://ID (2025-11-25), read the resource on each update;
  subscription (listen)   subscriptions/listen naming job://ID (2026-07-28), read the resource on each event;
  tasks/get               the tasks extension (2026-07-28, TasksClientExtension): the job tool answers a task
                          handle; tasks/get after each pollIntervalMs the server recommends;
  long-poll               get-job-result with waitSeconds=50 (with a progress callback), again until finished;
  recommended polling     get-job-result, sleeping until each answer's pollingRecommendation.nextCheckTime.
Every path has its own connection (so its own server process: stdio serves one client) and its own jobs;
the paths run at the same time, JOBS jobs each, after one short warm-up job each; job starts are STAGGER
apart so that no two jobs end at once (simultaneous ends on a small machine add tens of ms to every path).
Figures: delay = when the client holds the finished status - when the job finished (the final status's
metrics.endTime, else updatedAt / lastUpdatedAt; epoch ms, one machine clock), and messages = the MCP
requests the client sent for the job (the tools/call that starts it included) + the notifications it got
about it (resource updates, progress).

Run: .venv/bin/python bench/push.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from common import Row, row
from mcp import Client
from mcp.client.session import IncomingMessage
from mcp_types import ResourceUpdatedNotification, TextResourceContents
from roundtrip import server

from vibe_jobs.client import GetTaskRequest, TaskHandle, TaskIdParams, TasksClientExtension, WireResult

FINISHED = ("completed", "failed", "cancelled")
LONG_POLL_SECONDS = 50
JOBS = 3  # jobs per path, all at once
STAGGER = 0.2  # seconds between one job's start (so its end) and the next's, across all paths
WARMUP_SECONDS = 0.3  # one short job per path first, not measured


def now_ms() -> float:
    return time.time() * 1000


@dataclass
class Outcome:
    """One job followed to its end by one path."""

    delay_ms: float
    requests: int
    notifications: int
    detail: dict[str, int] = field(default_factory=dict)
    waits: list[int] = field(default_factory=list)  # the polling paths: ms slept before each read

    @property
    def messages(self) -> int:
        return self.requests + self.notifications


@dataclass
class PathResult:
    path: str
    outcomes: list[Outcome]
    note: str


class Updates:
    """The connection's message handler: resource-updated notifications (both eras tee here), per URI."""

    def __init__(self) -> None:
        self.counts: defaultdict[str, int] = defaultdict(int)
        self._streams: dict[str, tuple[MemoryObjectSendStream[float], MemoryObjectReceiveStream[float]]] = {}

    def stream(self, uri: str) -> MemoryObjectReceiveStream[float]:
        if uri not in self._streams:
            self._streams[uri] = anyio.create_memory_object_stream[float](10_000)
        return self._streams[uri][1]

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            uri = str(message.params.uri)
            self.counts[uri] += 1
            if uri in self._streams:
                self._streams[uri][0].send_nowait(now_ms())


def finish_ms(msg: dict[str, Any]) -> float:
    """When the job finished, by its final status (a JobStatusMessage or a tasks/get DetailedTask)."""
    end = (msg.get("metrics") or {}).get("endTime")
    if isinstance(end, int | float):
        return float(end)
    if isinstance(msg.get("updatedAt"), int | float):
        return float(msg["updatedAt"])
    return datetime.fromisoformat(str(msg["lastUpdatedAt"]).replace("Z", "+00:00")).timestamp() * 1000


def job_args(length: float) -> dict[str, Any]:
    return {"seconds": length, "steps": max(1, round(length))}


async def start_job(client: Client, length: float) -> str:
    started = await client.call_tool("sleepy", job_args(length))
    sc = started.structured_content
    if started.is_error or not sc or "jobId" not in sc:
        raise RuntimeError(f"sleepy did not start a job: {started}")
    return str(sc["jobId"])


async def read_job(client: Client, job_id: str) -> dict[str, Any]:
    result = await client.read_resource(f"job://{job_id}", cache_mode="bypass")
    content = result.contents[0]
    if not isinstance(content, TextResourceContents):
        raise RuntimeError(f"job://{job_id} is not text: {content}")
    body: dict[str, Any] = json.loads(content.text)
    return body


# -- the paths: each follows one job from its start to the client knowing its end -------------------


async def legacy_subscription(client: Client, updates: Updates, length: float) -> Outcome:
    job_id = await start_job(client, length)
    uri = f"job://{job_id}"
    heard = updates.stream(uri)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MCPDeprecationWarning: resources/subscribe is gone in 2026-07-28
        await client.subscribe_resource(uri)
    reads = 0
    while True:
        last_heard = await heard.receive()
        while True:  # updates that queued up meanwhile: one read answers them all
            try:
                last_heard = heard.receive_nowait()
            except anyio.WouldBlock:
                break
        body = await read_job(client, job_id)
        reads += 1
        if body["status"] in FINISHED:
            known = now_ms()
            break
    # the server ends a legacy subscription with the job's last update: no unsubscribe needed
    end = finish_ms(body)
    return Outcome(known - end, 2 + reads, updates.counts[uri], {"reads": reads, "notified_ms": int(last_heard - end)})


async def listen_subscription(client: Client, updates: Updates, length: float) -> Outcome:
    job_id = await start_job(client, length)
    uri = f"job://{job_id}"
    reads = 0
    async with client.listen(resource_subscriptions=[uri]) as sub:
        async for _ in sub:  # events of one URI are deduplicated while unread: one read answers them all
            last_heard = now_ms()
            body = await read_job(client, job_id)
            reads += 1
            if body["status"] in FINISHED:
                known = now_ms()
                break
    end = finish_ms(body)
    return Outcome(known - end, 2 + reads, updates.counts[uri], {"reads": reads, "notified_ms": int(last_heard - end)})


async def tasks_get(client: Client, updates: Updates, length: float) -> Outcome:
    handle = await client.session.call_tool("sleepy", job_args(length), allow_claimed=True)
    if not isinstance(handle, TaskHandle):
        raise RuntimeError(f"sleepy did not answer a task handle: {handle}")
    task: dict[str, Any] = handle.model_dump(by_alias=True, exclude_none=True)
    gets, waits = 0, []
    while task.get("status") == "working":
        waits.append(int(task.get("pollIntervalMs") or 1000))
        await anyio.sleep(waits[-1] / 1000)
        request = GetTaskRequest(params=TaskIdParams(task_id=handle.task_id))
        task = (await client.session.send_request(request, WireResult)).wire()
        gets += 1
    known = now_ms()
    return Outcome(known - finish_ms(task), 1 + gets, 0, {"gets": gets}, waits)


async def long_poll(client: Client, updates: Updates, length: float) -> Outcome:
    job_id = await start_job(client, length)
    heard = [0]

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        heard[0] += 1

    polls = 0
    while True:
        args = {"jobId": job_id, "waitSeconds": LONG_POLL_SECONDS}
        reply = await client.call_tool(
            "get-job-result", args, read_timeout_seconds=LONG_POLL_SECONDS + 30, progress_callback=on_progress
        )
        polls += 1
        msg = reply.structured_content or {}
        if msg.get("status") in FINISHED:
            known = now_ms()
            break
    return Outcome(known - finish_ms(msg), 1 + polls, heard[0], {"polls": polls})


async def recommended_polling(client: Client, updates: Updates, length: float) -> Outcome:
    started = await client.call_tool("sleepy", job_args(length))
    msg: dict[str, Any] = started.structured_content or {}
    job_id = str(msg["jobId"])
    reads = limited = 0
    waits: list[int] = []
    while msg.get("status") not in FINISHED:
        next_check = (msg.get("pollingRecommendation") or {}).get("nextCheckTime")
        waits.append(round(max(0.0, float(next_check) - now_ms()) if next_check else 1000.0))
        await anyio.sleep(waits[-1] / 1000)
        msg = (await client.call_tool("get-job-result", {"jobId": job_id})).structured_content or {}
        reads += 1
        limited += bool(msg.get("rateLimited"))
    known = now_ms()
    return Outcome(known - finish_ms(msg), 1 + reads, 0, {"reads": reads, "rate_limited": limited}, waits)


Follow = Callable[[Client, Updates, float], Awaitable[Outcome]]
PATHS: list[tuple[str, str, bool, Follow]] = [  # name, client mode, declares the tasks extension, follower
    ("subscription (legacy resources/subscribe)", "legacy", False, legacy_subscription),
    ("subscription (2026-07-28 listen)", "auto", False, listen_subscription),
    ("tasks/get at pollIntervalMs", "auto", True, tasks_get),
    ("long-poll (waitSeconds=50)", "auto", False, long_poll),
    ("recommended polling (nextCheckTime)", "auto", False, recommended_polling),
]


async def run_path(
    mode: str, tasks: bool, follow: Follow, length: float, offsets: list[float], gate: Gate
) -> list[Outcome]:
    updates = Updates()
    extensions = [TasksClientExtension()] if tasks else None
    out: list[Outcome] = []
    async with Client(server(), mode=mode, message_handler=updates, extensions=extensions) as client:
        await client.list_tools()  # set-up, not counted (2026-07-28 wants a listing before tools/call)
        await follow(client, updates, WARMUP_SECONDS)  # warm-up: the path's code on both sides
        await gate.arrive()

        async def one(offset: float) -> None:
            await anyio.sleep(offset)
            out.append(await follow(client, updates, length))

        with anyio.fail_after(length + max(offsets) + LONG_POLL_SECONDS + 60):
            async with anyio.create_task_group() as tg:
                for offset in offsets:
                    tg.start_soon(one, offset)
    return out


class Gate:
    """Everyone waits here until all `n` have arrived (every path warmed up)."""

    def __init__(self, n: int) -> None:
        self.left, self.open = n, anyio.Event()

    async def arrive(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.open.set()
        await self.open.wait()


async def measure_all(length: float, jobs: int) -> dict[str, list[Outcome]]:
    """Every path at once; job starts (so job ends) STAGGER apart, so no two paths' ends coincide."""
    results: dict[str, list[Outcome]] = {}
    gate = Gate(len(PATHS))

    async def path(i: int, name: str, mode: str, tasks: bool, follow: Follow) -> None:
        offsets = [(j * len(PATHS) + i) * STAGGER for j in range(jobs)]
        results[name] = await run_path(mode, tasks, follow, length, offsets, gate)

    async with anyio.create_task_group() as tg:
        for i, (name, mode, tasks, follow) in enumerate(PATHS):
            tg.start_soon(path, i, name, mode, tasks, follow)
    return {name: results[name] for name, *_ in PATHS}


def med(values: list[float] | list[int]) -> float:
    return float(statistics.median(values))


def describe(name: str, outcomes: list[Outcome]) -> str:
    d = {k: med([o.detail[k] for o in outcomes]) for k in outcomes[0].detail}
    notes = med([o.notifications for o in outcomes])
    if name.startswith("subscription"):
        reads = d["reads"]
        return (
            f"start + subscribe + {reads:g} reads + {notes:g} updates heard; last update "
            f"{d['notified_ms']:g} ms after the end; reading only after the last: {3 + notes:g} messages"
        )
    waits = "/".join(str(w) for w in outcomes[0].waits)
    if name.startswith("tasks/get"):
        return f"tools/call (task handle) + {d['gets']:g} tasks/get; waits (ms) {waits}"
    if name.startswith("long-poll"):
        return (
            f"start + {d['polls']:g} long-poll + {notes:g} progress notifications "
            f"(opt-in: without a progress callback {1 + d['polls']:g} messages)"
        )
    return f"start + {d['reads']:g} reads ({d['rate_limited']:g} rate-limited); waits (ms) {waits}"


def path_results(quick: bool) -> tuple[float, list[PathResult]]:
    length = 3.0 if quick else 30.0
    data = anyio.run(measure_all, length, JOBS)
    return length, [PathResult(name, outcomes, describe(name, outcomes)) for name, outcomes in data.items()]


def to_rows(length: float, results: list[PathResult]) -> list[Row]:
    out = []
    for r in results:
        msgs = med([o.messages for o in r.outcomes])
        out.append(
            row("9", f"{r.path}: {length:g} s job, finish -> client knows ({msgs:g} messages)", "ms",
                [o.delay_ms for o in r.outcomes], note=f"{r.path}: {r.note}")
        )  # fmt: skip
    return out


def bench_rows(quick: bool) -> list[Row]:
    return to_rows(*path_results(quick))


def push_table(length: float, results: list[PathResult]) -> str:
    header = ["path", "delay p50 (ms) [min-max]", "messages", "notes"]
    lines = []
    for r in results:
        delays = [o.delay_ms for o in r.outcomes]
        msgs = [o.messages for o in r.outcomes]
        delay = f"{med(delays):.0f} [{min(delays):.0f}-{max(delays):.0f}]"
        count = f"{med(msgs):g}" if min(msgs) == max(msgs) else f"{med(msgs):g} [{min(msgs)}-{max(msgs)}]"
        lines.append([r.path, delay, count, r.note])
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header))]
    out = [f"a {length:g} s job reporting progress once a second, {JOBS} jobs per path, all paths at once"]
    out.append(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    out.append("-+-".join("-" * w for w in widths))
    out += [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a 3 s job instead of 30 s")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON line")
    args = parser.parse_args()
    began = time.perf_counter()
    length, results = path_results(args.quick)
    if args.json:
        print(json.dumps({"rows": to_rows(length, results), "seconds": time.perf_counter() - began}))
        return
    print(push_table(length, results))
    print(f"({time.perf_counter() - began:.1f} s)")


if __name__ == "__main__":
    main()

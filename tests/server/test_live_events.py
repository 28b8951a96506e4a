"""/events under load (server/http/live.py): the events buffered for a stream go out together, a job's superseded
progress left out, and a reader that takes nothing is dropped, its subscription closed (it held up to one event of
every job that changed meanwhile)."""

from __future__ import annotations

import json
import socket

import anyio
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from tests.e2e.conftest import free_port
from vibe_jobs.events import EventType, JobEvent
from vibe_jobs.manager import JobManager
from vibe_jobs.server.http.lifetime import Lease
from vibe_jobs.server.http.live import events_endpoint, stream
from vibe_jobs.states import JobStatus

pytestmark = pytest.mark.timeout(30)


def progress(job_id: str, version: int, message: str = "") -> JobEvent:
    return JobEvent(EventType.PROGRESS, job_id, "t", JobStatus.RUNNING, version, version, float(version), message)


def job_lines(chunk: dict[str, str] | bytes) -> list[dict[str, object]]:
    assert isinstance(chunk, bytes), chunk  # one write of every event buffered
    return [json.loads(line[6:]) for line in chunk.decode().splitlines() if line.startswith("data: ")]


def named(chunk: dict[str, str] | bytes) -> str:
    assert isinstance(chunk, dict), chunk
    return chunk["event"]


async def test_buffered_events_go_out_in_one_chunk_without_superseded_progress(manager: JobManager) -> None:
    events = stream(manager, None, stats_every=3600)
    with anyio.fail_after(5):
        assert [named(await anext(events)) for _ in range(2)] == ["hello", "stats"]
        for v in range(1, 101):  # a job reporting faster than the reader reads
            manager.bus.publish(progress("busy", v))
        manager.bus.publish(JobEvent(EventType.CREATED, "new", "t", JobStatus.PENDING, 1, 1))
        manager.bus.publish(progress("busy", 101))
        sent = job_lines(await anext(events))
    await events.aclose()
    # before: one event a write, each of the 100 reports (the first: busy's version 1)
    assert [(e["jobId"], e["type"], e["version"]) for e in sent] == [("new", "created", 1), ("busy", "progress", 101)]


async def test_a_reader_that_takes_nothing_is_dropped(manager: JobManager) -> None:
    async def no_token(request: Request) -> Lease | None:
        return None

    app = Starlette(routes=[Route("/events", events_endpoint(manager, no_token, 3600, send_timeout=0.5))])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="critical"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
            await anyio.sleep(0.02)
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", port))  # asks for the stream and never reads it
        stalled.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        with anyio.fail_after(20):
            while manager.bus.subscriber_count == 0:  # noqa: ASYNC110 (the stream's subscription: no event)
                await anyio.sleep(0.02)
            sent, filler = 0, "x" * 4000
            while manager.bus.subscriber_count:  # every job a new one: none supersedes another
                for _ in range(200):
                    manager.bus.publish(progress(f"job{sent}", 1, filler))
                    sent += 1
                await anyio.sleep(0.05)
        # before: its subscription stayed, buffering an event of each job, until the 20 s bound failed the test
        assert manager.bus.subscriber_count == 0
        stalled.close()
        server.should_exit = True
    assert sent < 100_000, sent  # dropped once its writes stopped, not after every job was buffered

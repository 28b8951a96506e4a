"""The job resources' hub against the real MCP client (in memory): what a client that goes away, subscribes to a
finished job, or opens many listen streams leaves behind (review helper-49)."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError

from vibe_jobs import JobManager, JobStatus, Settings
from vibe_jobs.server.resources import MAX_LISTEN_STREAMS, JobResourceHub, job_uri, register_job_resources
from vibe_jobs.store import JobStore, MemoryStore
from vibe_jobs.store.sqlite import SQLiteStore

RESULT = {"content": [{"type": "text", "text": "ok"}], "isError": False}


@asynccontextmanager
async def served(store: JobStore | None = None) -> AsyncIterator[tuple[JobManager, JobResourceHub, MCPServer[Any]]]:
    async with JobManager(store or MemoryStore(), Settings()) as manager:
        hub = JobResourceHub(manager)
        mcp: MCPServer[Any] = MCPServer("hub-check", subscriptions=hub.bus, middleware=[hub.track_listen])
        register_job_resources(mcp, hub)
        yield manager, hub, mcp


async def test_a_client_that_goes_away_leaves_no_subscription_and_a_finished_job_takes_none() -> None:
    """Legacy subscriptions stayed, with the closed client's session in memory, until each job ended (300 closed
    clients on a job that never ends: 300 sessions held, RSS +10 MB); a subscription to a finished job stayed
    until retention expired it."""
    async with served() as (m, hub, mcp):
        running = await m.create_job("t")
        await m.update_job_status(running, JobStatus.RUNNING)
        done = await m.create_job("t")
        await m.update_job_status(done, JobStatus.RUNNING)
        await m.set_job_result(done, RESULT)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MCPDeprecationWarning: resources/subscribe is gone in 2026-07-28
            async with Client(mcp, mode="legacy") as client:
                await client.subscribe_resource(job_uri(running))
                await client.subscribe_resource(job_uri(done))
                assert hub.wants(job_uri(running)) and not hub.wants(job_uri(done))
        assert not hub.wants(job_uri(running))


async def test_one_principal_holds_at_most_its_share_of_listen_streams() -> None:
    """The SDK allows 1,024 listen streams for all clients together: one principal could hold them all."""
    async with served() as (m, hub, mcp), Client(mcp, mode="auto") as client, AsyncExitStack() as streams:
        job_id = await m.create_job("t")
        for _ in range(MAX_LISTEN_STREAMS):
            await streams.enter_async_context(client.listen(resource_subscriptions=[job_uri(job_id)]))
        with pytest.raises(MCPError, match=f"at most {MAX_LISTEN_STREAMS} listen streams"):
            async with client.listen(resource_subscriptions=[job_uri(job_id)]):
                pass
        await streams.aclose()
        async with client.listen(resource_subscriptions=[job_uri(job_id), job_uri(job_id)]):
            assert hub.wants(job_uri(job_id))  # named twice, counted once: it is looked up once


async def test_concurrent_listen_requests_of_one_principal_cannot_all_pass_its_cap(tmp_path: Path) -> None:
    """The count was taken before the job lookups and raised after them: on SQLite (a lookup waits for the store)
    requests made at once all passed one count."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    async with served(store) as (m, _, mcp), Client(mcp, mode="auto") as client, AsyncExitStack() as streams:
        job_id = await m.create_job("t")
        opened: list[bool] = []

        async def listen() -> None:
            try:
                await streams.enter_async_context(client.listen(resource_subscriptions=[job_uri(job_id)]))
                opened.append(True)
            except MCPError:
                opened.append(False)

        async with anyio.create_task_group() as tg:
            for _ in range(MAX_LISTEN_STREAMS + 16):
                tg.start_soon(listen)
        assert opened.count(True) == MAX_LISTEN_STREAMS and opened.count(False) == 16

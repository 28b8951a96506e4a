"""get-job-result's long-poll begins by telling where the job stands, and misses no change made meanwhile."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from tests.conftest import ManagerFactory
from vibe_jobs.server.auth import Identity
from vibe_jobs.server.control import ControlTools
from vibe_jobs.settings import Settings


async def test_a_change_made_while_the_first_notification_is_sent_is_told_too(make_manager: ManagerFactory) -> None:
    """The first notification told the state read before the wait subscribed: a line the job printed while it
    was being sent (its last, before it went quiet) was told neither then nor by the wait, which saw only later
    changes; the client showed the older line until the next one or the end."""
    manager = make_manager(settings=Settings(progress_keepalive_ms=600_000))
    job_id = await manager.create_job("build")
    await manager.start_job(job_id)
    await manager.update_progress(job_id, 10, "compiling")
    told: list[str | None] = []

    async def report_progress(progress: float, total: float | None = None, message: str | None = None) -> None:
        told.append(message)
        if len(told) == 1:  # the job prints its last line as the long-poll's first notification goes out
            await manager.update_progress(job_id, 20, "linking")

    session = SimpleNamespace(can_send_request=False)
    ctx = SimpleNamespace(
        request_context=SimpleNamespace(protocol_version="2025-11-25", session=session),
        report_progress=report_progress,
    )
    identity = Identity()
    await ControlTools(manager, {}, identity)._long_poll(cast(Any, ctx), job_id, 0.3, identity.viewer())
    assert told == ["compiling", "linking"], told

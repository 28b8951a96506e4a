"""Writing a run's outcome: a lost race is given up at once, a failing store is retried.

A lost race (`StaleWrite`: another process took the job over) is not a store failure (`StoreError`):
writing the same outcome again would lose again, so the scheduler drops it; only a store that fails
(locked, full, restarting; see test_scheduler_outcomes.py) is retried until the store is back.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import structlog

from vibe_jobs import JobManager, JobStatus, Settings, StaleWrite, StoreError
from vibe_jobs.context import JobContext
from vibe_jobs.engine.local import LocalSource
from vibe_jobs.jobtool import make_spec
from vibe_jobs.store.sqlite import SQLiteStore

WAIT = 10


@contextmanager
def warnings_logged() -> Iterator[list[str]]:
    """The names of the warnings (and worse) logged meanwhile. (Entered before the loggers are first
    used: structlog caches a logger's processors then.)"""
    names: list[str] = []

    def note(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        names.append(str(event.get("event")))
        return event

    config = structlog.get_config()
    structlog.configure(processors=[note, *config["processors"]])
    try:
        yield names
    finally:
        structlog.configure(processors=config["processors"])


def test_a_lost_race_is_not_a_store_failure() -> None:
    assert not issubclass(StaleWrite, StoreError) and not issubclass(StoreError, StaleWrite)


async def test_an_outcome_that_lost_its_race_is_dropped_at_once_not_retried(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    running, finish = anyio.Event(), anyio.Event()

    async def work(job: JobContext) -> str:
        running.set()
        await finish.wait()
        return "from the first attempt"

    here = JobManager(SQLiteStore(url), Settings(), owner="here")
    scheduler = LocalSource(here, {"work": make_spec(work, name="work")})
    elsewhere = JobManager(SQLiteStore(url), Settings(), owner="elsewhere")  # another process on the file
    await elsewhere.store.open()
    try:
        with warnings_logged() as warned:
            async with here:
                job_id = await here.create_job("work")
                with anyio.fail_after(WAIT):
                    await running.wait()
                # meanwhile the job was taken over elsewhere: requeued and claimed there as attempt 2
                await elsewhere.update_job_status(job_id, JobStatus.PENDING)
                await elsewhere.start_job(job_id)
                finish.set()  # attempt 1 ends: its outcome loses the race ...
                with anyio.fail_after(WAIT):  # ... and is dropped, not retried
                    await scheduler.drained()
        assert "job.outcome_retry" not in warned and "job.outcome_not_written" not in warned
        rec = await elsewhere.get_record(job_id)
    finally:
        await elsewhere.store.close()
    assert (rec.status, rec.attempt, rec.owner, rec.result) == (JobStatus.RUNNING, 2, "elsewhere", None)

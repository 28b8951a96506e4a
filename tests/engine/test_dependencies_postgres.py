"""Dependencies run by workers claiming from one PostgreSQL schema (`ClaimSource`), as separate processes would:
the claim leaves out the jobs a dependency holds back (schema step 15), the writer of a completion releases its
dependants, the sweeper releases those an insert left held back, and fails those whose dependency failed.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import pytest

from tests.pg import postgres_url, with_new_schema
from tests.store.test_contract import record
from vibe_jobs import JobManager, JobStatus, NonRetryableError, Settings, TaskSpec
from vibe_jobs.engine.failures import dependency_failed, error_text
from vibe_jobs.engine.sources import make_source
from vibe_jobs.jobtool import JobToolSpec, make_spec

asyncpg = pytest.importorskip("asyncpg")

from vibe_jobs.store.postgres import PostgresStore  # noqa: E402
from vibe_jobs.store.postgres.sql import INSERT, insert_args  # noqa: E402

pytestmark = pytest.mark.postgres

WAIT = 10.0  # seconds, far below the lease of LEASE_MS: nothing here may wait for a lease
LEASE_MS = 120_000


@pytest.fixture
def schema_url() -> str:
    return with_new_schema(postgres_url("the PostgreSQL dependency tests"), "vj_deps")


@asynccontextmanager
async def workers(url: str, tools: Sequence[JobToolSpec], n: int) -> AsyncIterator[list[JobManager]]:
    """`n` workers (a store, manager and claim source each) on the schema of `url`; the schema dropped after."""
    stores: list[PostgresStore] = []
    try:
        async with AsyncExitStack() as stack:
            managers = []
            for i in range(n):
                store = PostgresStore(url)
                stores.append(store)
                manager = JobManager(store, Settings(max_concurrent=4, lease_ms=LEASE_MS), owner=f"worker-{i}")
                make_source(manager, {spec.name: spec for spec in tools})
                managers.append(await stack.enter_async_context(manager))
            yield managers
    finally:
        for store in stores:
            await store.close()
        await PostgresStore(url).drop_schema()


def logging_step(log: list[tuple[str, str]]) -> JobToolSpec:
    async def step(job_id: str) -> str:
        log.append(("start", job_id))
        await anyio.sleep(random.uniform(0, 0.005))
        log.append(("end", job_id))
        return job_id

    return make_spec(step, name="step")


async def finished(manager: JobManager, ids: Sequence[str]) -> dict[str, JobStatus]:
    with anyio.fail_after(WAIT):
        return {job_id: (await manager.wait(job_id, WAIT)).status for job_id in ids}


async def test_three_workers_run_a_dependency_graph_in_order(schema_url: str) -> None:
    """A chain, a fan-out from one of its links and a fan-in of the fan-out: no job starts before each of its
    dependencies ended, whichever worker claims it; every one completes."""
    log: list[tuple[str, str]] = []
    async with workers(schema_url, [logging_step(log)], 3) as (first, *_):
        deps: dict[str, list[str]] = {}  # job id: its dependencies' ids
        names: dict[str, str] = {}  # job id: the name its run logs

        async def create(name: str, after: list[str]) -> str:
            job_id = await first.create_job("step", {"job_id": name}, task=TaskSpec(dependencies=after))
            deps[job_id], names[job_id] = after, name
            return job_id

        chain = [await create("link-0", [])]
        for i in range(1, 12):
            chain.append(await create(f"link-{i}", [chain[-1]]))
        fan = [await create(f"fan-{i}", [chain[3]]) for i in range(8)]
        await create("join", [*fan, chain[-1]])
        assert set((await finished(first, list(deps))).values()) == {JobStatus.COMPLETED}
    at = {(kind, job_id): i for i, (kind, job_id) in enumerate(log)}
    for job_id, after in deps.items():
        for dep in after:
            assert at["end", names[dep]] < at["start", names[job_id]], (names[job_id], names[dep])
    assert [job_id for kind, job_id in log if kind == "start" and job_id.startswith("link")] == [
        f"link-{i}" for i in range(12)
    ]
    assert len(log) == 2 * len(deps)  # each ran once


async def test_a_dependant_inserted_while_its_dependency_completes_runs_after_the_next_sweep(
    schema_url: str,
) -> None:
    """Its insert read the dependency running and flagged it; the dependency completed and released its
    dependants before that insert committed, so not this one: the sweeper releases it within a second or so,
    not after a lease (LEASE_MS)."""
    started, gate = anyio.Event(), anyio.Event()

    async def held() -> str:
        started.set()
        await gate.wait()
        return "ok"

    async def noop() -> str:
        return "ok"

    async with workers(schema_url, [make_spec(held, name="held"), make_spec(noop, name="noop")], 1) as [manager]:
        dep = await manager.create_job("held", {})
        with anyio.fail_after(WAIT):
            await started.wait()
        store = manager.store
        assert isinstance(store, PostgresStore)
        late = record("late", tool_name="noop", created_at=manager.now(), task=TaskSpec(dependencies=[dep]))
        conn = await asyncpg.connect(store.dsn, server_settings={"search_path": store.schema})
        try:
            async with conn.transaction():
                await conn.execute(INSERT, *insert_args(late))
                gate.set()
                assert (await manager.wait(dep, WAIT)).status is JobStatus.COMPLETED
        finally:
            await conn.close()
        assert await finished(manager, ["late"]) == {"late": JobStatus.COMPLETED}


@pytest.mark.parametrize("end", [JobStatus.FAILED, JobStatus.CANCELLED])
async def test_the_dependants_of_a_job_that_did_not_complete_fail_with_the_dependency_failed_message(
    schema_url: str, end: JobStatus
) -> None:
    gate = anyio.Event()

    async def root() -> str:
        await gate.wait()
        raise NonRetryableError("boom")

    async def noop() -> str:
        return "ok"

    async with workers(schema_url, [make_spec(root, name="root"), make_spec(noop, name="noop")], 2) as [a, b]:
        first = await a.create_job("root", {})
        child = await b.create_job("noop", {}, task=TaskSpec(dependencies=[first]))
        grandchild = await a.create_job("noop", {}, task=TaskSpec(dependencies=[child]))
        if end is JobStatus.CANCELLED:
            await a.cancel_job(first, "not needed")
        else:
            gate.set()
        assert await finished(a, [first, child, grandchild]) == {
            first: end, child: JobStatus.FAILED, grandchild: JobStatus.FAILED
        }  # fmt: skip
        for job_id, dep, status in ((child, first, end), (grandchild, child, JobStatus.FAILED)):
            rec = await a.get_record(job_id)
            text = error_text(dependency_failed(job_id, dep, status))
            assert rec.result is not None and text in str(rec.result), rec.result
            assert rec.started_at is None  # it never ran

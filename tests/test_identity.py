"""Principals in the manager, on every store: one rule (`Viewer.sees`), applied by `get_record` and the lists,
counts, dedupe, dependencies and quotas; no viewer (the library, the operator CLI) sees everything."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import FakeClock, ManagerFactory
from vibe_jobs.errors import JobNotFound, QuotaExceeded, UnknownDependency
from vibe_jobs.identity import LOCAL_PRINCIPAL, Viewer
from vibe_jobs.manager import JobManager
from vibe_jobs.models import TaskSpec
from vibe_jobs.settings import Settings
from vibe_jobs.states import JobStatus

pytestmark = pytest.mark.every_store

ALICE, BOB, ADMIN = Viewer("alice"), Viewer("bob"), Viewer("root", admin=True)


async def test_every_job_records_its_principal(manager: JobManager) -> None:
    mine = await manager.create_job("t", {}, viewer=ALICE)
    library = await manager.create_job("t", {})
    assert (await manager.get_record(mine)).principal == "alice"
    assert (await manager.get_record(library)).principal == LOCAL_PRINCIPAL


async def test_another_principals_job_is_not_found_for_every_read_and_cancel(manager: JobManager) -> None:
    job_id = await manager.create_job("t", {"x": 1}, viewer=ALICE)
    reads = [
        manager.get_record(job_id, BOB), manager.get_job(job_id, BOB), manager.poll(job_id, viewer=BOB),
        manager.status_message(job_id, viewer=BOB), manager.cancel_job(job_id, viewer=BOB),
        manager.wait(job_id, 0.01, viewer=BOB), manager.get_metrics(job_id, BOB),
    ]  # fmt: skip
    for read in reads:
        with pytest.raises(JobNotFound) as info:
            await read
        assert str(info.value) == f"No job with id '{job_id}'"
    assert (await manager.get_record(job_id)).status is JobStatus.PENDING  # bob's cancel changed nothing
    assert (await manager.get_record(job_id, ALICE)).id == job_id
    assert (await manager.get_record(job_id, ADMIN)).id == job_id


async def test_lists_and_counts_are_the_viewers_own_and_admin_sees_all(manager: JobManager, clock: FakeClock) -> None:
    a = []
    for i in range(3):
        clock.advance(0.01)
        a.append(await manager.create_job("t", {"i": i}, viewer=ALICE))
    b = await manager.create_job("t", {}, viewer=BOB)
    first = await manager.list_jobs(limit=2, viewer=ALICE)
    rest = await manager.list_jobs(limit=2, cursor=first.next_cursor, viewer=ALICE)
    assert [j.id for j in first.jobs + rest.jobs] == a[::-1] and rest.next_cursor is None
    assert [j.id for j in (await manager.list_jobs(viewer=BOB)).jobs] == [b]
    assert len((await manager.list_jobs(viewer=ADMIN)).jobs) == len((await manager.list_jobs()).jobs) == 4
    assert (await manager.statistics(ALICE)).counts["pending"] == 3
    assert (await manager.statistics(BOB)).counts["pending"] == 1
    assert (await manager.statistics(ADMIN)).counts["pending"] == 4
    pending = await manager.list_jobs(status="pending", viewer=BOB)
    assert [j.id for j in pending.jobs] == [b]


async def test_dedupe_never_joins_another_principals_job(manager: JobManager) -> None:
    a1 = await manager.create_job("t", {"q": 1}, dedupe=True, viewer=ALICE)
    a2 = await manager.create_job("t", {"q": 1}, dedupe=True, viewer=ALICE)
    b1 = await manager.create_job("t", {"q": 1}, dedupe=True, viewer=BOB)
    assert a1 == a2 and b1 != a1


async def test_depending_on_another_principals_job_is_refused_as_unknown(manager: JobManager) -> None:
    theirs = await manager.create_job("t", {}, viewer=ALICE)
    task = TaskSpec(dependencies=[theirs])
    with pytest.raises(UnknownDependency, match=f"dependency '{theirs}' names no known job"):
        await manager.create_job("t", {}, task=task, viewer=BOB)
    assert await manager.create_job("t", {}, task=task, viewer=ALICE)
    assert await manager.create_job("t", {}, task=task, viewer=ADMIN)
    assert len((await manager.list_jobs(viewer=BOB)).jobs) == 0  # nothing half-created


async def test_concurrent_creates_never_pass_a_quota(make_manager: ManagerFactory) -> None:
    """A quota is checked and the job stored as one step per principal: twenty calls at once, three get in."""
    manager = make_manager(settings=Settings(quota_pending=3))

    async def create() -> bool:
        try:
            await manager.create_job("t", {}, viewer=ALICE)
        except QuotaExceeded:
            return False
        return True

    results = await asyncio.gather(*(create() for _ in range(20)))
    assert sum(results) == 3
    assert (await manager.store.counts("alice"))[JobStatus.PENDING] == 3
    assert await manager.create_job("t", {}, viewer=BOB)  # another principal is not held up


async def test_a_principal_s_quota_lock_goes_when_nobody_holds_it(make_manager: ManagerFactory) -> None:
    """Each principal ever seen kept a lock for ever (review helper-66 F1: every new `sub` of a JWT issuer). The
    lock is internal; what is asserted is that the table it lives in does not grow with the principals."""
    manager = make_manager(settings=Settings(quota_pending=3))
    for n in range(200):
        await manager.create_job("t", {}, viewer=Viewer(f"user-{n}"))
    results = await asyncio.gather(*(manager.create_job("t", {}, viewer=ALICE) for _ in range(3)))
    assert len(results) == 3
    assert manager._quota_locks == {}


async def test_quotas_refuse_naming_the_limit_and_create_nothing(make_manager: ManagerFactory) -> None:
    manager = make_manager(settings=Settings(quota_pending=2, quota_running=1, quota_params_bytes=200))
    await manager.create_job("t", {}, viewer=ALICE)
    running = await manager.create_job("t", {}, viewer=ALICE)
    await manager.start_job(running)
    with pytest.raises(QuotaExceeded, match=r"principal 'alice' has 1 running jobs, the limit is 1 \(VIBE_JOBS_QUOTA"):
        await manager.create_job("t", {}, viewer=ALICE)
    await manager.cancel_job(running)
    await manager.create_job("t", {}, viewer=ALICE)
    with pytest.raises(QuotaExceeded, match="VIBE_JOBS_QUOTA_PENDING") as info:
        await manager.create_job("t", {}, viewer=ALICE)
    assert info.value.code == "quota_exceeded"
    assert await manager.create_job("t", {}, viewer=BOB)  # bob's quota is his own
    with pytest.raises(QuotaExceeded, match="VIBE_JOBS_QUOTA_PARAMS_BYTES"):
        await manager.create_job("t", {"text": "x" * 300}, viewer=BOB)
    assert (
        len((await manager.list_jobs(viewer=ALICE)).jobs) == 3 and len((await manager.list_jobs(viewer=BOB)).jobs) == 1
    )


# What identity providers issue as `sub` (review helper-96): `|` (Auth0), `/` (GitHub Actions OIDC, whose branch
# may hold a quote), `\` (a Windows account). Each is its own principal in every store: its jobs, dedupe, counts and
# quota (under the principal's lock: a byte of SQLite's lock file, a PostgreSQL advisory lock).
IDP_VIEWERS = [
    Viewer("auth0|5f7c8ec7c33c6c004bbafe82"),
    Viewer("google-oauth2|112233445566778899000"),
    Viewer("repo:octo-org/octo-repo:ref:refs/heads/it's"),
    Viewer("CONTOSO\\jdoe"),
]


async def test_principals_that_identity_providers_issue_keep_their_own_jobs(make_manager: ManagerFactory) -> None:
    manager = make_manager(settings=Settings(quota_pending=1))
    ids = [await manager.create_job("t", {"same": 1}, dedupe=True, viewer=v) for v in IDP_VIEWERS]
    assert len(set(ids)) == len(IDP_VIEWERS)  # equal calls of two principals never share a job
    for viewer, job_id in zip(IDP_VIEWERS, ids, strict=True):
        assert [j.id for j in (await manager.list_jobs(viewer=viewer)).jobs] == [job_id]
        assert (await manager.statistics(viewer)).counts["pending"] == 1
        others = [i for i in ids if i != job_id]
        for foreign in others:
            with pytest.raises(JobNotFound):
                await manager.get_record(foreign, viewer)
    quoted = 'principal "repo:octo-org/octo-repo:ref:refs/heads/it\'s" has 1 pending jobs'  # one quote inside
    with pytest.raises(QuotaExceeded, match=quoted):
        await manager.create_job("t", {"other": 1}, viewer=IDP_VIEWERS[2])

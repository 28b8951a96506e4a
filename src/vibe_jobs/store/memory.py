"""The in-memory store: first class, inspectable (`store.jobs`), used by unit tests and `memory://`.

`jobs` maps each id to the job's current record, in insertion (creation) order. A change replaces
the record with a new one (see `JobRecord.changed`) and never alters a record handed out, as the
protocol asks (`store.base`).
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from vibe_jobs.errors import DuplicateJob
from vibe_jobs.firing import Overlap
from vibe_jobs.models import JobRecord, RecordBuilder, record_builder
from vibe_jobs.owners import owner_prefix
from vibe_jobs.schedules import ScheduleRecord
from vibe_jobs.states import ACTIVE, FINAL, PENDING, JobStatus
from vibe_jobs.store.base import (
    DurationRow,
    Guard,
    JobQuery,
    adoption,
    cancelled_without_run,
    check_active_filter,
    check_adoptable,
    check_updatable,
)

COMPACT_STEP = 50_000  # keys of the paging order looked at per `delete_finished` batch (about 25 ms at most)

# `update`'s record builder by the fields a change sets, each shape checked once (`check_updatable`)
_UPDATES: dict[tuple[str, ...], RecordBuilder] = {}


def _update_of(job_id: str, changes: Mapping[str, Any]) -> RecordBuilder:
    check_updatable(job_id, changes)
    keys = tuple(changes)
    build = _UPDATES[keys] = record_builder(keys)
    return build


class MemoryStore:
    waits: ClassVar[bool] = False  # store/base.py: JobStore.waits

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self.jobs: dict[str, JobRecord] = {}
        self.leases: dict[str, int] = {}
        self.durations: dict[str, DurationRow] = {}
        self._dedupe: dict[str, str] = {}
        self._counts: dict[JobStatus, int] = dict.fromkeys(JobStatus, 0)  # a plain dict: Counter is slower
        # the same and the active jobs by principal (`_Principals`), built when first asked for (quotas): kept as
        # jobs change from then on; None until then (a store without quotas pays nothing for it)
        self._by: _Principals | None = None
        # the job ids by status (`_ByStatus`), built on the first query by status, kept from then on
        self._statuses: _ByStatus | None = None
        self._indexes: tuple[_Principals | _ByStatus, ...] = ()  # those built: told of every added, moved, removed job
        # (created_at, id) of every job, ascending: the order `query` pages in. Jobs created in the same
        # millisecond are ordered by id (not by insertion), so a `before` cursor neither skips nor repeats.
        # Inserts append; the list is sorted when next read (nearly sorted data: timsort is linear).
        self._order: list[tuple[int, str]] = []
        self._unsorted = False
        self._gone: set[str] = set()  # ids of deleted jobs whose keys `_order` still holds (`delete_finished`)
        self._dropped_to = 0  # where `_drop_gone` goes on
        self.schedules: dict[str, ScheduleRecord] = {}
        self.ticks: dict[tuple[str, int], tuple[str, int]] = {}  # (schedule id, tick) -> (job id, fired at)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def insert(self, job: JobRecord) -> bool:
        if job.id in self.jobs:
            raise DuplicateJob(f"a job with id '{job.id}' exists already", job_id=job.id)
        if job.dedupe_key is not None and job.dedupe_key in self._dedupe and job.status in ACTIVE:
            return False
        if self._gone and job.id in self._gone:
            self._drop_gone()  # its old key would list it twice
        self.jobs[job.id] = job
        order = self._order
        if order and not self._unsorted and job.created_at <= order[-1][0]:
            self._unsorted = True  # same millisecond (ids are random) or an older timestamp
        order.append((job.created_at, job.id))
        self._counts[job.status] += 1
        if job.dedupe_key is not None and job.status in ACTIVE:
            self._dedupe[job.dedupe_key] = job.id
        for index in self._indexes:
            index.added(job)
        return True

    async def get(self, job_id: str) -> JobRecord | None:
        return self.jobs.get(job_id)

    async def get_many(
        self, job_ids: Collection[str], principal: str | None = None, *, whole: bool = True
    ) -> dict[str, JobRecord]:
        found = (self.jobs.get(job_id) for job_id in job_ids)
        return {
            rec.id: _view(rec, whole, whole)
            for rec in found
            if rec is not None and (principal is None or rec.principal == principal)
        }

    async def update(self, job_id: str, changes: Mapping[str, Any], guard: Guard | None = None) -> JobRecord | None:
        build = _UPDATES.get(tuple(changes)) or _update_of(job_id, changes)  # refuses a field it may not change
        rec = self.jobs.get(job_id)
        if rec is None or (guard is not None and not guard.holds(rec)):
            return None
        new = self.jobs[job_id] = build(rec, changes)
        status = new.status
        if status is not rec.status:  # the counts by status, and the dedupe key of a job that finished
            counts = self._counts
            counts[rec.status] -= 1
            counts[status] += 1
            for index in self._indexes:
                index.moved(rec, status)
            key = new.dedupe_key
            if key is not None and status in FINAL and self._dedupe.get(key) == job_id:
                del self._dedupe[key]
        return new

    async def touch(self, job_id: str, access_count: int, last_access_time: int, next_check_time: int | None) -> None:
        rec = self.jobs.get(job_id)
        if rec is not None:
            reads = {
                "access_count": access_count,
                "last_access_time": last_access_time,
                "next_check_time": next_check_time,
            }
            self.jobs[job_id] = rec.changed(reads, bump=False)  # a read is not a change: same version

    async def query(self, query: JobQuery) -> list[JobRecord]:
        out: list[JobRecord] = []
        few = None if query.status is None else self._few_of(query.status, query.before, query.limit)
        for rec in few if few is not None else self._newest_first(query.before):
            if query.status is not None and rec.status is not query.status:
                continue
            if query.tool_name is not None and rec.tool_name != query.tool_name:
                continue
            if query.principal is not None and rec.principal != query.principal:
                continue
            out.append(_view(rec, query.with_result, query.with_params))
            if len(out) >= query.limit:
                break
        return out

    def _newest_first(self, before: tuple[int, str] | None) -> Iterator[JobRecord]:
        order = self._sorted_order()
        end = len(order) if before is None else bisect.bisect_left(order, before)
        for i in range(end - 1, -1, -1):
            rec = self.jobs.get(order[i][1])
            if rec is not None:
                yield rec

    def _few_of(self, status: JobStatus, before: tuple[int, str] | None, limit: int) -> list[JobRecord] | None:
        """The jobs of `status` newest first, from the index, when they are few; None when they are not: the scan of
        every job newest first meets a page of them sooner. Sorting k of them costs about four times what the scan
        costs a job, and the scan reads n * limit / k jobs (k spread evenly; n when they are not: a status held by
        few jobs had the scan go through every job). The figures: bench/MEASUREMENTS.md (`_few_of`)."""
        ids = self._by_status().ids[status]
        if 4 * len(ids) * len(ids) > len(self.jobs) * limit:
            return None
        jobs = self.jobs
        keys = sorted(((jobs[job_id].created_at, job_id) for job_id in ids), reverse=True)
        return [jobs[key[1]] for key in keys if before is None or key < before]

    def _by_status(self) -> _ByStatus:
        if self._statuses is None:
            self._statuses = _ByStatus(self.jobs.values())
            self._indexes = (*self._indexes, self._statuses)
        return self._statuses

    def _sorted_order(self) -> list[tuple[int, str]]:
        if self._unsorted:
            self._order.sort()
            self._unsorted = False
        return self._order

    async def find_active(self, dedupe_key: str) -> JobRecord | None:
        job_id = self._dedupe.get(dedupe_key)
        return self.jobs.get(job_id) if job_id is not None else None

    def _principals(self) -> _Principals:
        """The jobs by principal, built from every job the first time (one pass), then kept as jobs change."""
        if self._by is None:
            self._by = _Principals()
            for rec in self.jobs.values():
                self._by.added(rec)
            self._indexes = (*self._indexes, self._by)
        return self._by

    async def active(self, owner: str | None = None, *, principal: str | None = None) -> list[JobRecord]:
        check_active_filter(owner, principal)
        if principal is not None:  # its own active jobs, not every job (a quota on params reads them at each create)
            return [self.jobs[job_id] for job_id in self._principals().active.get(principal, ())]
        return [
            rec
            for rec in self.jobs.values()
            if rec.status in ACTIVE
            and (owner is None or rec.owner == owner)
            and (principal is None or rec.principal == principal)
        ]

    async def counts(self, principal: str | None = None, *, active: bool = False) -> dict[JobStatus, int]:
        counts = self._counts if principal is None else self._principals().counts.get(principal)
        found = dict(counts) if counts is not None else dict.fromkeys(JobStatus, 0)
        if active:
            found.update(dict.fromkeys(FINAL, 0))
        return found

    async def delete_finished(self, before: int, limit: int = 10_000) -> list[str]:
        """A batch costs one pass over the jobs and a bounded part of the paging order: the scan stops at `limit`,
        and `_order` drops deleted jobs' keys COMPACT_STEP at a time (it was rebuilt at every batch: 100,000
        expired jobs held the event loop for 250-450 ms, 1,000,000 for 24-37 s; bench/MEASUREMENTS.md)."""
        jobs = self.jobs
        needed = (
            {dep for rec in jobs.values() if rec.status is PENDING and rec.task for dep in rec.task.dependencies}
            if self._counts[PENDING]
            else ()
        )
        expired = (
            rec.id
            for rec in jobs.values()
            if rec.status in FINAL and (rec.finished_at or rec.updated_at) < before and rec.id not in needed
        )
        doomed = list(itertools.islice(expired, limit))
        counts, indexes = self._counts, self._indexes
        for job_id in doomed:
            rec = jobs.pop(job_id)
            counts[rec.status] -= 1
            for index in indexes:
                index.removed(rec)
        self._gone.update(doomed)
        if self._gone:
            self._drop_gone(COMPACT_STEP)
        return doomed

    def _drop_gone(self, step: int | None = None) -> None:
        """Drop deleted jobs' keys from the paging order (`_newest_first` skips them until then): `step` keys of it
        from where the last call stopped, or all of it (None). Two 1,000,000-key passes took 250 and 500 ms."""
        order, gone = self._order, self._gone
        start = 0 if step is None or self._dropped_to >= len(order) else self._dropped_to
        end = len(order) if step is None else min(len(order), start + step)
        part = order[start:end]
        kept = [key for key in part if key[1] not in gone]
        if len(kept) < len(part):
            gone.difference_update([key[1] for key in part if key[1] in gone])
            order[start:end] = kept
            if not gone:
                self._gone = set()  # a set never gives back the room it grew to
        self._dropped_to = start + len(kept)

    async def heartbeat(self, owner: str, expires_at: int) -> None:
        self.leases[owner] = max(expires_at, self.leases.get(owner, expires_at))  # a lease never moves back

    async def release(self, owner: str) -> None:
        self.leases.pop(owner, None)

    async def orphans(self, now: int, tools: Collection[str] | None = None) -> list[JobRecord]:
        found = self._orphans(now)
        if tools is None:
            return found
        return [rec for rec in found if rec.tool_name in tools or cancelled_without_run(rec)]

    async def orphans_left(self, now: int, tools: Collection[str], owner: str) -> dict[str, int]:
        left = Counter(
            rec.tool_name
            for rec in self._orphans(now)
            if rec.tool_name not in tools and not cancelled_without_run(rec) and rec.owner != owner
        )
        return dict(left)

    async def orphans_of_program(self, now: int, tools: Collection[str], owner: str, program: str) -> list[JobRecord]:
        prefix = owner_prefix(program)
        return [
            rec
            for rec in self._orphans(now)
            if rec.tool_name not in tools
            and not cancelled_without_run(rec)
            and rec.owner != owner
            and rec.owner is not None
            and rec.owner.startswith(prefix)
        ]

    async def adopt_pending(self, jobs: Sequence[JobRecord], owner: str, now: int) -> list[JobRecord]:
        check_adoptable(jobs)
        changes = adoption(owner, now)
        adopted: list[JobRecord] = []
        for job in jobs:  # nothing awaited: no other writer comes in between
            rec = self.jobs.get(job.id)
            if rec is not None and rec.version == job.version:
                new = self.jobs[job.id] = rec.changed(changes)  # the status stays: counts and dedupe keys too
                adopted.append(new)
        return adopted

    def _orphans(self, now: int) -> list[JobRecord]:
        live = {owner for owner, expires in self.leases.items() if expires > now}
        return [rec for rec in self.jobs.values() if rec.status in ACTIVE and rec.owner not in live]

    async def load_durations(self) -> dict[str, DurationRow]:
        return dict(self.durations)

    async def save_durations(self, rows: Mapping[str, DurationRow], now: int) -> None:
        self.durations.update(rows)

    async def problem(self) -> str | None:
        return None

    # -- schedules -------------------------------------------------------------------------

    async def insert_schedule(self, rec: ScheduleRecord) -> None:
        if rec.schedule_id in self.schedules:
            raise DuplicateJob(f"a schedule with id '{rec.schedule_id}' exists already")
        self.schedules[rec.schedule_id] = rec

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        return self.schedules.get(schedule_id)

    async def list_schedules(
        self, principal: str | None = None, *, limit: int | None = None, arguments: bool = True
    ) -> list[ScheduleRecord]:
        found = (r for r in self.schedules.values() if principal is None or r.principal == principal)
        return sorted(found, key=lambda r: (r.created_at, r.schedule_id))[:limit]  # nothing to read: arguments kept

    async def count_schedules(self, principal: str | None) -> int:
        return sum(1 for r in self.schedules.values() if principal is None or r.principal == principal)

    async def update_schedule(
        self, schedule_id: str, changes: Mapping[str, Any], version: int
    ) -> ScheduleRecord | None:
        rec = self.schedules.get(schedule_id)
        if rec is None or rec.version != version:
            return None
        new = self.schedules[schedule_id] = rec.changed(changes)
        return new

    async def due_schedules(self, now: int) -> list[ScheduleRecord]:
        due = [
            r
            for r in self.schedules.values()
            if not r.paused and r.next_fire_at is not None and r.next_fire_at <= now and not self._held(r)
        ]
        return sorted(due, key=lambda r: (r.next_fire_at, r.schedule_id))

    def _held(self, rec: ScheduleRecord) -> bool:
        """Held by its previous job (the SQL stores' `schedulerows.NOT_HELD_SQL`)."""
        job = None if rec.overlap != Overlap.QUEUE or rec.last_job_id is None else self.jobs.get(rec.last_job_id)
        return job is not None and job.status in ACTIVE

    async def next_fire_after(self, now: int) -> int | None:
        later = (r.next_fire_at for r in self.schedules.values() if not r.paused and r.next_fire_at is not None)
        return min((at for at in later if at > now), default=None)

    async def delete_schedule(self, schedule_id: str) -> bool:
        self.ticks = {key: job for key, job in self.ticks.items() if key[0] != schedule_id}
        return self.schedules.pop(schedule_id, None) is not None

    async def fire(self, job: JobRecord, version: int) -> bool:
        assert job.schedule_id is not None and job.tick is not None
        key = (job.schedule_id, job.tick)
        sch = self.schedules.get(job.schedule_id)
        if key in self.ticks or sch is None or sch.paused or sch.version != version:
            return False
        if not await self.insert(job):
            return False
        self.ticks[key] = (job.id, job.created_at)
        return True

    async def fired_job(self, schedule_id: str, tick: int) -> str | None:
        fired = self.ticks.get((schedule_id, tick))
        return None if fired is None else fired[0]

    async def prune_ticks(self, before: int) -> int:
        def done(key: tuple[str, int], fired_at: int) -> bool:
            sch = self.schedules.get(key[0])
            passed = sch is None or sch.next_fire_at is None or key[1] < sch.next_fire_at
            return fired_at < before and passed

        doomed = [key for key, (_, fired_at) in self.ticks.items() if done(key, fired_at)]
        for key in doomed:
            del self.ticks[key]
        return len(doomed)


class _Principals:
    """A memory store's jobs by principal: counts by status and the active jobs' ids (in creation order), of the
    principals with jobs stored (a principal goes with its last job). A quota's count read every stored job: with
    quotas on, a create took 0.6 ms beside 10,000 retained jobs, 5.2 ms beside 100,000."""

    __slots__ = ("active", "counts")

    def __init__(self) -> None:
        self.counts: dict[str, dict[JobStatus, int]] = {}
        self.active: dict[str, dict[str, None]] = {}

    def added(self, rec: JobRecord) -> None:
        of = self.counts.get(rec.principal) or self.counts.setdefault(rec.principal, dict.fromkeys(JobStatus, 0))
        of[rec.status] += 1
        if rec.status in ACTIVE:
            self.active.setdefault(rec.principal, {})[rec.id] = None

    def moved(self, rec: JobRecord, status: JobStatus) -> None:
        """`rec` (as it was) now has `status` (a change never moves a job to another principal)."""
        of = self.counts[rec.principal]
        of[rec.status] -= 1
        of[status] += 1
        if (status in ACTIVE) is not (rec.status in ACTIVE):
            if status in ACTIVE:
                self.active.setdefault(rec.principal, {})[rec.id] = None
            else:
                self._inactive(rec)

    def removed(self, rec: JobRecord) -> None:
        of = self.counts[rec.principal]
        of[rec.status] -= 1
        if not any(of.values()):
            del self.counts[rec.principal]
        if rec.status in ACTIVE:
            self._inactive(rec)

    def _inactive(self, rec: JobRecord) -> None:
        ids = self.active.get(rec.principal)
        if ids is not None:
            ids.pop(rec.id, None)
            if not ids:
                del self.active[rec.principal]


class _ByStatus:
    """A memory store's job ids by status, of every job stored."""

    __slots__ = ("ids",)

    def __init__(self, records: Iterable[JobRecord]) -> None:
        self.ids: dict[JobStatus, dict[str, None]] = {status: {} for status in JobStatus}
        for rec in records:
            self.ids[rec.status][rec.id] = None

    def added(self, rec: JobRecord) -> None:
        self.ids[rec.status][rec.id] = None

    def moved(self, rec: JobRecord, status: JobStatus) -> None:
        """`rec` (as it was) now has `status`."""
        del self.ids[rec.status][rec.id]
        self.ids[status][rec.id] = None

    def removed(self, rec: JobRecord) -> None:
        del self.ids[rec.status][rec.id]


def _view(rec: JobRecord, with_result: bool, with_params: bool) -> JobRecord:
    """`rec` as a read gives it (`query`, `get_many`): without its result, or its params, when left out."""
    left_out: dict[str, Any] = {} if with_result or rec.result is None else {"result": None}
    if not with_params and rec.params:
        left_out["params"] = {}
    return rec.changed(left_out, bump=False) if left_out else rec

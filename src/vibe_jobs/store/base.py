"""The JobStore protocol: stores persist, the manager owns state logic.

Every change goes through `update`, a compare-and-set: it applies only when the guards hold
(the job's `version`, the running `attempt`, the current status) and bumps `version`, so a stale
writer (a timed-out attempt, a dead worker) loses. Leases (`heartbeat`, `orphans`) let several
processes share one store and recover each other's jobs.

`SharedJobStore` is what a store shared by a cluster (PostgreSQL) offers on top: claims of runnable
jobs under cluster-wide limits (`ClaimLimits`), job leases, wake-ups (`JobChange` over `listen`) and
the cluster's queue and figures. The engine picks its job source by `isinstance(store, SharedJobStore)`.
`PrincipalLocking` is the one part of it a store that processes of one machine share (SQLite) offers
too: a lock per principal across them, under which the manager counts a quota and stores what it admits.

Records, one rule for every store: a record a store returns (from `get`, `update`, `query`,
`find_active`, `active`, `orphans`, or any method of its own) is the caller's to keep and never
changes under it, whatever later happens to the job; a change makes a new record. Callers never
change a record, nor the values in it, either: a store may hand the same record to other callers and
build the job's next version from it. A record passed to `insert` is the store's from then on.

Failures raise `StoreError`, of the subclass that names the condition (`vibe_jobs.errors`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

from vibe_jobs.errors import StoreError, StoreLocked
from vibe_jobs.figures import ClusterFigures
from vibe_jobs.models import JobRecord, Priority
from vibe_jobs.schedules import ScheduleRecord
from vibe_jobs.settings import Settings
from vibe_jobs.states import JobStatus

DurationRow = tuple[int, float, str]  # a learned duration: (runs, mean ms, recent run times as JSON)

# The longest a principal's lock (`PrincipalLocking`) is waited for (ms): its holder only counts and inserts, so a
# longer wait means a holder that stalled (a paused or hung process); the call is then refused (StoreLocked, "try
# again") instead of hanging.
PRINCIPAL_LOCK_WAIT_MS = 5_000

# Fields an `update` may change (the store rejects anything else).
UPDATABLE = frozenset(
    {
        "status", "updated_at", "progress_message", "progress_percentage", "result", "current_stage",
        "sub_progress", "diagnostics", "detail_metadata", "owner", "attempt", "retry_count",
        "error_count", "run_after", "started_at", "finished_at", "cancel_requested", "cpu_seconds",
        "peak_memory_mb", "priority", "waiting_for", "stage_history",
    }
)  # fmt: skip


def check_updatable(job_id: str, changes: Mapping[str, Any]) -> None:
    """Refuse (`StoreError`) a change of a field `update` may not change, before anything is changed."""
    if not UPDATABLE.issuperset(changes):
        bad = next(key for key in changes if key not in UPDATABLE)
        raise StoreError(f"field '{bad}' cannot be updated", job_id=job_id)


def check_active_filter(owner: str | None, principal: str | None) -> None:
    """`active` filters by owner or by principal, not both."""
    if owner is not None and principal is not None:
        raise ValueError("active(): give an owner or a principal, not both")


class Guard:
    """Conditions an update needs; None means "any". (A plain slotted class: built on every write.)"""

    __slots__ = ("attempt", "statuses", "version")

    def __init__(
        self,
        version: int | None = None,
        attempt: int | None = None,
        statuses: Collection[JobStatus] | None = None,
    ) -> None:
        self.version, self.attempt, self.statuses = version, attempt, statuses

    def holds(self, rec: JobRecord) -> bool:
        return (
            (self.version is None or rec.version == self.version)
            and (self.attempt is None or rec.attempt == self.attempt)
            and (self.statuses is None or rec.status in self.statuses)
        )


NO_GUARD = Guard()


class VersionGuard(Guard):
    """A guard on the version alone (what every compare-and-set of the manager asks): one comparison."""

    __slots__ = ()

    def __init__(self, version: int) -> None:
        self.version, self.attempt, self.statuses = version, None, None

    def holds(self, rec: JobRecord) -> bool:
        return rec.version == self.version


def cancelled_without_run(rec: JobRecord) -> bool:
    """An orphan any process ends, with or without its tool: pending, with a cancel asked. A running one may
    have left processes that only its tool knows how to end (`on_interrupted`): it waits for a process that
    has the tool. The one statement of this rule (`engine.recovery` adopts by it, through `orphans`), here and
    in SQL for the SQL stores (`CANCELLED_WITHOUT_RUN_SQL`)."""
    return rec.cancel_requested is not None and rec.status is JobStatus.PENDING


# `cancelled_without_run` in SQL (status is never null, so its NOT is exact)
CANCELLED_WITHOUT_RUN_SQL = "status = 'pending' AND cancel_requested IS NOT NULL"


# pending orphans adopted at once: one SQLite statement (about 40 ms of its server process, holding the write lock)
# or one PostgreSQL statement; recovery hands them over this many at a time (a failure costs at most these)
ADOPT_CHUNK = 5_000


def adopted_alone(rec: JobRecord) -> bool:
    """An orphan whose adoption changes only its owner (and `updated_at`, `adoption`): pending, no cancel asked.
    Such orphans are adopted many at once (`JobStore.adopt_pending`); the others need a plan of their own (a
    running one is requeued or failed, a cancelled one ended) and are adopted one at a time (`engine.recovery`)."""
    return rec.status is JobStatus.PENDING and rec.cancel_requested is None


def adoption(owner: str, now: int) -> dict[str, Any]:
    """What adopting a pending orphan changes (`engine.recovery.plan_recovery`, `JobStore.adopt_pending`)."""
    return {"owner": owner, "updated_at": now}


def check_adoptable(jobs: Sequence[JobRecord]) -> None:
    """`adopt_pending` takes distinct jobs that are each `adopted_alone` (ValueError before anything changes)."""
    ids: set[str] = set()
    for rec in jobs:
        if not adopted_alone(rec):
            raise ValueError(f"adopt_pending(): job {rec.id} is {rec.status.value}, or its cancel was asked")
        if rec.id in ids:
            raise ValueError(f"adopt_pending(): job {rec.id} is given twice")
        ids.add(rec.id)


def adopted_records(jobs: Sequence[JobRecord], won: Collection[str], owner: str, now: int) -> list[JobRecord]:
    """The records `adopt_pending` answers: those of `jobs` whose id is in `won`, in the order given, each with
    the adoption's changes and the next version (a new record). The figures a read records without a new version
    (`touch`: access count and times) are as read, as in a record the SQLite store's `update` builds on one it
    holds (a store may answer them as stored: the memory store does)."""
    changes = adoption(owner, now)
    return [rec.changed(changes) for rec in jobs if rec.id in won]


def waits_since(created_at: int, run_after: int | None, now: int) -> int | None:
    """Since when a pending job has waited to run (health's "oldest pending job"): from its creation or its
    run_after, whichever is later; None while it is deferred past `now` (it does not wait yet). Here and in
    SQL for PostgreSQL and SQLite (`WAITS_SINCE_SQL`)."""
    if run_after is None:
        return created_at
    return None if run_after > now else max(created_at, run_after)


# `waits_since` in SQL, given to format(): `now` a parameter placeholder, `greatest` the dialect's two-argument
# maximum (PostgreSQL's `greatest`, SQLite's scalar `max`)
WAITS_SINCE_SQL = (
    "CASE WHEN run_after IS NULL THEN created_at WHEN run_after <= {now} THEN {greatest}(created_at, run_after) END"
)


@dataclass(frozen=True, slots=True)
class JobQuery:
    status: JobStatus | None = None
    tool_name: str | None = None
    limit: int = 50
    before: tuple[int, str] | None = None  # (created_at, id) of the last job of the previous page
    principal: str | None = None  # only jobs this principal created (None: every job)
    # False: each record's `result` is None, not read (a list that does not show results: a page of 500 jobs
    # with results of up to max_result_bytes each is gigabytes to read and decode). Such a record is a view
    # for showing: a store never builds a job's next version from it.
    with_result: bool = True
    # False: each record's `params` is {}, not read (a list that shows no arguments: the dashboard's, whose 50 jobs
    # of up to max_params_bytes each were up to 50 MiB to read and decode for a page that shows none of them)
    with_params: bool = True


@runtime_checkable
class JobStore(Protocol):
    """Persistence for job records; records follow the rule in the module docstring."""

    url: str
    # whether a call may wait (I/O, another process): False only for a store whose every call answers without
    # yielding to the event loop (memory), so a cancel can never land between two of its steps
    waits: ClassVar[bool]

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def insert(self, job: JobRecord) -> bool:
        """Store a new job; it is durable when this returns True. False: nothing was stored, because a pending
        or running job holds the same `dedupe_key` (the check and the insert are one step, across processes:
        equal calls at once make one job). `DuplicateJob` when the id is taken."""

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def get_many(
        self, job_ids: Collection[str], principal: str | None = None, *, whole: bool = True
    ) -> dict[str, JobRecord]:
        """The stored jobs of `job_ids` by id, read at once (one statement, whatever their number: a list's jobs
        read one `get` each were a round trip each). An id not stored is left out, and so is a job of another
        principal when `principal` is given: a caller that lists one principal's things never gets another's job
        through it. `whole` False: views without results and params, as `JobQuery`'s (never kept as the base of a
        job's next version)."""

    async def update(self, job_id: str, changes: Mapping[str, Any], guard: Guard | None = None) -> JobRecord | None:
        """Apply `changes` and bump the version when `guard` holds; None when it does not (or no job)."""

    async def touch(self, job_id: str, access_count: int, last_access_time: int, next_check_time: int | None) -> None:
        """Record a counted read (does not bump the version)."""

    async def query(self, query: JobQuery) -> list[JobRecord]:
        """Jobs newest first (created_at, then id, descending)."""

    async def find_active(self, dedupe_key: str) -> JobRecord | None:
        """A pending or running job with this dedupe key."""

    async def active(self, owner: str | None = None, *, principal: str | None = None) -> list[JobRecord]:
        """Pending and running jobs, oldest first: of one owner (the process running them) or of one
        principal (who created them) when given, not both (ValueError)."""

    async def counts(self, principal: str | None = None, *, active: bool = False) -> dict[JobStatus, int]:
        """Jobs by status (of one principal when given); `active`: pending and running jobs only, the others
        answered 0 (a quota's count: it costs what the active jobs are, not every job retained)."""

    async def delete_finished(self, before: int, limit: int = 10_000) -> list[str]:
        """Delete up to `limit` jobs that finished before `before`; return their ids. A finished job that a
        pending job depends on is kept until that job no longer waits for it: deleted, its dependent would fail
        for a dependency that "no longer exists" though it completed."""

    async def heartbeat(self, owner: str, expires_at: int) -> None:
        """Create or renew the lease of a process (the calling one: a store on one machine records
        which, so that it knows when that process has ended). A lease never moves back: a renewal that
        arrives after a later one (concurrent renewals, a retried write) leaves the later expiry."""

    async def release(self, owner: str) -> None:
        """Drop a process's lease (clean shutdown)."""

    async def orphans(self, now: int, tools: Collection[str] | None = None) -> list[JobRecord]:
        """Active jobs whose owner holds no live lease at `now`. A lease is live until it expires; a store
        on one machine (SQLite) also ends it as soon as its process is known to have ended.

        With `tools`: only the orphans a process that has these tools adopts, those of one of `tools` and
        those any process ends (`cancelled_without_run`); the others wait for a process that has their tool
        and are only counted (`orphans_left`), so they are not read, let alone decoded, at every beat."""

    async def adopt_pending(self, jobs: Sequence[JobRecord], owner: str, now: int) -> list[JobRecord]:
        """Adopt these pending orphans (as read by `orphans`) for `owner`, many in one statement: each a
        compare-and-set on the version of its record given (`owner` and `updated_at = now` set, as `adoption`
        says, and the version bumped), so a job changed since it was read (adopted by another process, claimed,
        cancelled) is left alone. Answers the records of those adopted (`adopted_records`), in the order given.
        Each job given is pending without a cancel asked (`adopted_alone`), and given once (ValueError)."""

    async def orphans_left(self, now: int, tools: Collection[str], owner: str) -> dict[str, int]:
        """The orphans `orphans(now, tools)` leaves out, by tool: those a process with `tools` leaves for one
        that has their tool. Counted by the store (no row is read). `owner`'s are not counted: an orphan of the
        caller's own is its heartbeat come late, the job alive in it. Call it after `orphans` of the same beat:
        that is where a store on one machine ends the leases of processes known to have ended."""

    async def orphans_of_program(self, now: int, tools: Collection[str], owner: str, program: str) -> list[JobRecord]:
        """Of the orphans `orphans_left` counts, those whose owner id names `program` (`vibe_jobs.owners`: it starts
        `program@`), in creation order: read by a process of that program on a store of one machine, which fails
        them (their tool is no longer registered: `engine.recovery`). The store filters them: the others (another
        program's, waiting for it) are not read at every beat."""

    async def load_durations(self) -> dict[str, DurationRow]:
        """The learned durations (`vibe_jobs.durations`) by key."""

    async def save_durations(self, rows: Mapping[str, DurationRow], now: int) -> None:
        """Create or replace the learned durations of these keys."""

    async def problem(self) -> str | None:
        """Why the store may not keep what it is given even though it answers (a SQLite file that was
        deleted or replaced while open, or that nobody could open any more); None when nothing is seen.
        Health and /readyz report it; it never raises."""


@dataclass(frozen=True, slots=True)
class ClaimLimits:
    """Cluster-wide admission limits, enforced by a shared store's claim (None: no limit).

    `priority_weights[rank]` (low=0 .. critical=3) times `aging_ms` is how far a job's priority moves
    it ahead of older jobs: a job waiting `aging_ms` longer gains one weight unit.
    """

    max_running: int | None = None
    max_memory_mb: float | None = None
    max_cpu_weight: float | None = None
    max_disk_space_mb: float | None = None
    per_tool: Mapping[str, int] = field(default_factory=dict)
    aging_ms: int = 60_000
    priority_weights: Sequence[float] = (1.0, 2.0, 3.0, 4.0)

    @classmethod
    def from_settings(cls, settings: Settings, per_tool: Mapping[str, int | None] | None = None) -> ClaimLimits:
        """From the settings' max_concurrent, queue.resource_limits, aging and priority weights."""
        q = settings.queue
        lim = q.resource_limits
        weights = [float(q.priority_weights[p]) for p in sorted(Priority, key=lambda p: p.rank)]
        return cls(
            max_running=settings.max_concurrent,
            max_memory_mb=lim.max_memory_mb,
            max_cpu_weight=lim.max_cpu_weight,
            max_disk_space_mb=lim.max_disk_space_mb,
            per_tool={k: v for k, v in (per_tool or {}).items() if v is not None},
            aging_ms=settings.aging_ms,
            priority_weights=tuple(weights),
        )

    @property
    def limited(self) -> bool:
        caps = (self.max_running, self.max_memory_mb, self.max_cpu_weight, self.max_disk_space_mb)
        return any(c is not None for c in caps) or bool(self.per_tool)

    @property
    def resource_caps(self) -> tuple[float | None, float | None, float | None]:
        """(memoryMB, cpuWeight, diskSpaceMB) caps."""
        return (self.max_memory_mb, self.max_cpu_weight, self.max_disk_space_mb)


class JobChange(NamedTuple):
    """One wake-up from a shared store: a job was inserted or changed status / got a cancel request.

    (A named tuple: every listener of the cluster builds one per change of every job, and a tuple is
    built several times faster than a frozen dataclass.)"""

    op: str  # "insert" or "update"
    job_id: str
    status: JobStatus
    tool_name: str
    cancel_requested: bool


class Listening(Protocol):
    """An open `listen` session: `alive` turns False when it is lost (open a new one then)."""

    alive: bool

    async def close(self) -> None: ...


@runtime_checkable
class PrincipalLocking(Protocol):
    """A store that several processes share and that locks a principal across them (PostgreSQL, SQLite): the
    manager holds it while it counts the principal's quotas and stores the job the count admits, so that
    processes calling at the same moment cannot each pass one count."""

    def principal_lock(self, principal: str) -> AbstractAsyncContextManager[bool]:
        """`async with store.principal_lock(principal) as held:` held by one holder at a time across every process
        (`held` False: the store took no lock, as none was needed or affordable), released on exit and when its
        holder's process or session dies. Waited for at most PRINCIPAL_LOCK_WAIT_MS: past that (a holder that
        stalled) StoreLocked, saying to try again (`principal_lock_refused`)."""


def principal_lock_refused(where: str) -> StoreLocked:
    """The refusal of a call whose principal's lock another process held past PRINCIPAL_LOCK_WAIT_MS."""
    return StoreLocked(
        f"another process sharing the job store at {where} has held this caller's quota count for over "
        f"{PRINCIPAL_LOCK_WAIT_MS / 1000:g} s (it counts and stores a job under it): nothing was created; try again"
    )


@runtime_checkable
class QueueReading(Protocol):
    """A store whose pending jobs are the queue of every process that shares it (PostgreSQL, SQLite), read as
    a whole by a process that runs none of them (`vibe-jobs dashboard` alone)."""

    async def pending_by_priority(self, now: int) -> list[tuple[int, int, int | None]]:
        """(priority rank, pending jobs, since when the longest-waiting runnable one has waited) for every rank
        with pending jobs: a job waits from its creation or its run_after, whichever is later; one deferred past
        `now` does not wait yet (None when no job of the rank does)."""


@runtime_checkable
class SharedJobStore(PrincipalLocking, QueueReading, JobStore, Protocol):
    """A store that several processes on several machines share (PostgreSQL), on top of `JobStore`."""

    async def claim_many(
        self,
        owner: str,
        lease_ms: int,
        limits: ClaimLimits | None,
        tools: Collection[str],
        k: int,
        *,
        now: int | None = None,
    ) -> list[JobRecord]:
        """Take up to `k` runnable jobs of `tools` for `owner` (running, attempt + 1, a job lease
        until `now + lease_ms`), in claim order, within `limits` across the cluster."""

    async def renew_state(self, owner: str, job_ids: Collection[str], expires_at: int) -> dict[str, str | None]:
        """Renew `owner`'s lease and its jobs' leases: {job id still held: its cancel request or None}."""

    async def held(self, owner: str) -> list[JobRecord]:
        """The running jobs `owner` holds (claimed and not settled), in no particular order."""

    async def clock_ms(self) -> int:
        """Epoch milliseconds by the database's clock: the one clock of every process that shares the store
        (`JobManager` keeps its time, so that one machine's clock running behind cannot make its live leases
        look expired to the others)."""

    async def listen(
        self, callback: Callable[[JobChange], object], on_lost: Callable[[], object] | None = None
    ) -> Listening:
        """Call `callback(change)` for every job inserted or changed, until the session is closed."""

    def sweeper_lock(self) -> AbstractAsyncContextManager[bool]:
        """`async with store.sweeper_lock() as held:` held in exactly one session at a time."""

    async def offer_tools(self, owner: str, tools: Collection[str]) -> None:
        """Record on `owner`'s lease the tools it runs."""

    async def head_fits(
        self, tools: Collection[str], limits: ClaimLimits, *, now: int | None = None
    ) -> tuple[str, bool] | None:
        """The job a claim of `tools` would take first (its id) and whether it fits the resource limits now
        (None: no job)."""

    async def unserved_tools(self, now: int) -> dict[str, int]:
        """{tool: pending jobs} for tools that no process with a live lease runs."""

    async def finished_figures(self, now: int) -> ClusterFigures:
        """Statistics over every process's finished jobs."""

    async def dependency_blocked(self, limit: int = 1000) -> list[tuple[JobRecord, str, JobStatus | None]]:
        """Pending jobs that can never run: (job, dependency id, its status or None when deleted)."""

    async def release_ready(self) -> int:
        """Make claimable the pending jobs whose dependencies all completed but that are still held back (an
        insert that raced the completion of its last dependency); how many (the sweeper's, once a second)."""


@runtime_checkable
class ScheduleStore(Protocol):
    """Schedules kept as data, beside the jobs (every store offers it). A schedule changes only by
    compare-and-set on its `version`; a firing inserts its job and the (schedule, tick) key together."""

    async def insert_schedule(self, rec: ScheduleRecord) -> None:
        """Store a new schedule (`DuplicateJob`, a StoreError, when the id is taken)."""

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None: ...

    async def list_schedules(
        self, principal: str | None = None, *, limit: int | None = None, arguments: bool = True
    ) -> list[ScheduleRecord]:
        """Every schedule (only `principal`'s, when given), oldest first; the first `limit` only, when given. One
        principal's list and quota read its own schedules only: another's (up to a quota of them, each with 1 MiB
        of arguments) cost it nothing. `arguments` False: each record's arguments are {}, not read (a list that
        shows none: a view for showing, never written back)."""

    async def count_schedules(self, principal: str | None) -> int:
        """How many schedules `principal` has (None: every principal; its quota's count, the dashboard's: no
        schedule is read, whatever its arguments)."""

    async def due_schedules(self, now: int) -> list[ScheduleRecord]:
        """The unpaused schedules whose next firing is at or before `now`, earliest first: what a ticker pass
        fires (an index keeps the pass's cost to the schedules due, not all of them). A schedule held by its
        previous job (overlap queue, that job pending or running) is left out: it fires once that job ends."""

    async def next_fire_after(self, now: int) -> int | None:
        """The earliest next firing after `now` of an unpaused schedule: when a ticker has work again."""

    async def update_schedule(
        self, schedule_id: str, changes: Mapping[str, Any], version: int
    ) -> ScheduleRecord | None:
        """Apply `changes` when the stored version is `version` (then bump it); None otherwise."""

    async def delete_schedule(self, schedule_id: str) -> bool: ...

    async def fire(self, job: JobRecord, version: int) -> bool:
        """Insert `job` (with its schedule_id and tick) unless that tick fired already, in one transaction
        with the tick's key, and only while its schedule is stored unpaused at `version` (the one the firing
        was planned on): a pause, change or delete that answered first stops it. False when nothing was
        written."""

    async def fired_job(self, schedule_id: str, tick: int) -> str | None:
        """The id of the job fired for the schedule's `tick` (its key names it), None when the tick did not fire
        (or its key was pruned): what a firing that found the tick fired already records as the schedule's last."""

    async def prune_ticks(self, before: int) -> int:
        """Delete the keys of ticks fired before `before` that no firing can come back to (the schedule
        moved past them, ended or is gone); answer how many."""

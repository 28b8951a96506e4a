"""Recovery: take over the jobs of processes that are gone (a crash, a kill, a lost machine): their
lease expired, or (a store on one machine) their process is known to have ended.

Pending jobs are queued again here. Running jobs are requeued while retries remain (the one retry
limit, `failures.retry_limit`: a tool that did not opt in to being run again gets none), otherwise
they fail with "interrupted: ...". A job whose cancel was asked for ends cancelled (its leftovers ended).

Jobs of a tool this process does not have: on a store of one machine (`shared` False: SQLite, whose default
file in the user's data dir is shared by every program of its user) a job whose owner was this same program
(`vibe_jobs.owners`) fails with a message naming the tool: the tool is no longer registered. One of another
program, and on a cluster's store (whose workers serve different tools) any, is left for a process that has
the tool; health names them (`Recovered.left`) until such a process takes them. A pending job whose cancel was
asked is ended by any process (the rule: `store.base.cancelled_without_run`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from vibe_jobs.engine.failures import retry_limit
from vibe_jobs.errors import InvalidTransition, StaleWrite, StoreError
from vibe_jobs.jobtool import JobToolSpec
from vibe_jobs.logs import debug_enabled, get_logger
from vibe_jobs.manager import JobManager, capped_diagnostics, finished_at
from vibe_jobs.models import JobRecord
from vibe_jobs.results import text_result
from vibe_jobs.retry import RetryPolicy
from vibe_jobs.states import JobStatus
from vibe_jobs.store.base import ADOPT_CHUNK, Guard, SharedJobStore, adopted_alone, adoption

log = get_logger("vibe_jobs.engine.recovery")

# what a job that was running fails with when its process is gone: its server's own store (SQLite: the server
# stopped, seen on restart or by a server on the same file), or a shared one (PostgreSQL: a process of the
# cluster found its worker's lease expired)
INTERRUPTED = "interrupted: the server stopped while the job was running"
WORKER_LOST = "interrupted: worker lost"
# what a job running when its process stopped on a shared store reads (a worker's drain over, a server's stop): that
# process settles it as it stops (`hand_back`: every job it still holds, left behind or claimed as the stop began
# too), requeued while retries remain, else failed; recovered by another process, it read "worker lost" (the words
# of a worker that died)
RELEASED = "interrupted: released unfinished at its worker's stop; it does not run again (no retry left)"
ADOPT_BATCH = 500  # orphans adopted at once (a PostgreSQL group commit sends up to 500 in one statement)


def plan_recovery(
    manager: JobManager,
    rec: JobRecord,
    tools: Mapping[str, JobToolSpec],
    default_retry: RetryPolicy,
    shared: bool = False,
    released: bool = False,
) -> dict[str, Any]:
    """The changes that adopt one orphaned job for this process (`shared`: from a cluster's shared store;
    `released`: a job of this process's own that its stop interrupted, `hand_back`)."""
    now = manager.now()
    base: dict[str, Any] = adoption(manager.owner, now)
    if rec.cancel_requested is not None:  # cancelled while its dead owner ran it: honour that (no tool needed)
        text = f"Job cancelled: {rec.cancel_requested}"
        return {
            **base,
            "status": JobStatus.CANCELLED,
            "finished_at": finished_at(rec, now),
            "progress_message": text,
            "result": text_result(text, is_error=True),
        }
    if rec.tool_name not in tools:  # its own program's job (`_unregistered`): the tool is no longer registered
        return {**base, **_failed(rec, now, unregistered(rec.tool_name))}
    if rec.status is JobStatus.PENDING:
        return base  # (`recover_orphans` adopts these many at once: `adopted_alone`)
    limit = retry_limit(rec, tools[rec.tool_name], default_retry)
    if rec.retry_count < limit:
        retry = f"retry {rec.retry_count + 1}/{limit}"
        note = (
            f"released unfinished at its worker's stop: runs again ({retry})"
            if released
            else f"requeued after an interruption ({retry})"
        )
        return {
            **base,
            "status": JobStatus.PENDING,
            "retry_count": rec.retry_count + 1,
            "progress_message": note,
            "diagnostics": capped_diagnostics(rec.diagnostics, (note,)),
        }
    return {**base, **_failed(rec, now, RELEASED if released else WORKER_LOST if shared else INTERRUPTED)}


def unregistered(tool: str) -> str:
    return f"the tool {tool!r} is no longer registered on this server (its program stopped and came back without it)"


def _failed(rec: JobRecord, now: int, message: str) -> dict[str, Any]:
    return {
        "status": JobStatus.FAILED,
        "finished_at": finished_at(rec, now),
        "progress_message": f"Job failed: {message}",
        "result": text_result(message, is_error=True),
        "diagnostics": capped_diagnostics(rec.diagnostics, (message,)),
    }


def _const(changes: dict[str, Any]) -> Callable[[JobRecord], dict[str, Any]]:
    return lambda _rec: changes


@dataclass(frozen=True, slots=True)
class Recovered:
    adopted: list[JobRecord]  # the adopted jobs that are pending now, to be queued
    left: dict[str, int]  # jobs left for a process that has their tool, by tool


async def recover_orphans(
    manager: JobManager,
    tools: Mapping[str, JobToolSpec],
    default_retry: RetryPolicy,
    *,
    shared: bool = False,
    count_left: bool = True,
) -> Recovered:
    """Adopt every active job without a live owner whose tool this process has (or pending with a cancel asked).

    Running orphans first (their work stopped: they are recovered within the lease bound however many
    pending jobs the dead process had accepted), then the pending ones whose cancel was asked: each is adopted
    by a plan of its own, concurrently, ADOPT_BATCH at a time, so the store sends them as a few statements (group
    commit) instead of one round trip each. Then the other pending ones, whose adoption only makes them this
    process's (`store.base.adopted_alone`): ADOPT_CHUNK in one call (`JobManager.adopt_pending`), a few statements
    for tens of thousands (a restart's). `shared`: the store is a cluster's (the words of a lost run).

    A store failure does not end the pass: the orphans it hit stay orphans for a later beat, and those adopted
    are answered (to be queued). Raised, it lost them: adopted, they were this process's, and no later pass
    takes a job of its own, so they waited until a restart.

    Only those orphans are read: the store counts the ones left for a process that has their tool (they wait,
    read again every beat, as long as no such process comes; bench/recovery.py, bench/MEASUREMENTS.md).
    `count_left=False`: not even counted (`left` is empty), for a caller that does not report them (a cluster's
    health names the pending jobs of tools that no live lease offers instead: `unserved_tools`).
    """
    now = manager.lease_now()  # a step forward of the clock does not expire a live process's lease
    found = [rec for rec in await manager.store.orphans(now, tools) if rec.owner != manager.owner]
    # (an owner of our own is a late heartbeat of ours: those jobs are alive in this process; not counted either)
    left = await manager.store.orphans_left(now, tools, manager.owner) if count_left else {}
    gone = await _unregistered(manager, now, tools) if left and not shared else []
    if gone:  # failed below, each naming its tool; the rest are left for their own program
        left = dict(Counter(left) - Counter(rec.tool_name for rec in gone))
    running = [rec for rec in found if rec.status is JobStatus.RUNNING]
    cancelled = [rec for rec in found if rec.status is not JobStatus.RUNNING and not adopted_alone(rec)]
    alone = [rec for rec in found if adopted_alone(rec)]
    adopted: dict[str, JobRecord] = {}
    outcomes: Counter[str] = Counter()
    for group in (running, cancelled, gone):
        for i in range(0, len(group), ADOPT_BATCH):
            async with anyio.create_task_group() as tg:
                for rec in group[i : i + ADOPT_BATCH]:
                    tg.start_soon(_adopt, manager, rec, tools, default_retry, (adopted, outcomes), shared)
    if alone:
        await _adopt_alone(manager, alone, (adopted, outcomes))
    if outcomes:  # one line a pass (each job's at debug): a restart may adopt tens of thousands
        log.info("recovery.adopted", jobs=sum(outcomes.values()), **{f"now_{k}": n for k, n in outcomes.items()})
    return Recovered([adopted[rec.id] for rec in found if rec.id in adopted], left)


async def _unregistered(manager: JobManager, now: int, tools: Mapping[str, JobToolSpec]) -> list[JobRecord]:
    """The orphans of tools this process lacks whose owner was this same program (asked only when some are left):
    of those `orphans_left` counts (a pending one asked to be cancelled is ended with the others `orphans` finds),
    the store's filter reads only this program's, not the jobs that wait for another one at every beat."""
    return await manager.store.orphans_of_program(now, tools, manager.owner, manager.program)


async def hand_back(
    manager: JobManager, store: SharedJobStore, tools: Mapping[str, JobToolSpec], default_retry: RetryPolicy
) -> None:
    """Settle the jobs this process still holds as it stops on a shared store, before its lease is released: as
    recovery would (`plan_recovery`: requeued while retries remain, else failed), in words that tell of the stop
    (`RELEASED`). Nothing of this process runs a job any more by then: every job it holds is one its stop ended,
    whether its run was cancelled, its work ignored the cancellation past the grace (left behind), or its claim was
    written as the stop began (no run heard of it). Left to another process's recovery, they read "worker lost".
    Each is adopted by compare-and-set on the version read (`_adopt`): a job that moved on meanwhile (a late
    outcome, a cancel asked elsewhere) is left as it is, for recovery; so are all when the store fails."""
    try:
        held = await store.held(manager.owner)
    except StoreError as exc:  # the store is down as the process stops: they wait for recovery
        log.warning("recovery.not_handed_back", error=f"{type(exc).__name__}: {exc}")
        return
    noted: tuple[dict[str, JobRecord], Counter[str]] = ({}, Counter())
    for rec in held:
        await _adopt(manager, rec, tools, default_retry, noted, True, released=True)
    if noted[1]:
        log.info("recovery.handed_back", jobs=sum(noted[1].values()), **{f"now_{k}": n for k, n in noted[1].items()})


async def _adopt(
    manager: JobManager,
    rec: JobRecord,
    tools: Mapping[str, JobToolSpec],
    default_retry: RetryPolicy,
    noted: tuple[dict[str, JobRecord], Counter[str]],
    shared: bool,
    released: bool = False,
) -> None:
    """Adopt one orphan, unless another process did first: noted in `adopted` when it is pending now, and
    counted by the status it has now (`released`: one of this process's own, `hand_back`)."""
    await _end_leftovers(rec, tools.get(rec.tool_name))
    changes = plan_recovery(manager, rec, tools, default_retry, shared, released)
    try:
        new = await manager.mutate(rec.id, _const(changes), Guard(version=rec.version))
    except (InvalidTransition, StaleWrite):
        return  # someone else adopted it first
    except StoreError as exc:  # noted for health by `mutate`; the job stays an orphan, for a later beat
        log.warning("recovery.not_adopted", job_id=rec.id, error=f"{type(exc).__name__}: {exc}")
        return
    if debug_enabled():
        log.debug("job.recovered", job_id=rec.id, was=rec.status.value, now=new.status.value)
    adopted, outcomes = noted
    outcomes[new.status.value] += 1
    if new.status is JobStatus.PENDING:
        adopted[rec.id] = new


async def _adopt_alone(
    manager: JobManager, found: list[JobRecord], noted: tuple[dict[str, JobRecord], Counter[str]]
) -> None:
    """Adopt pending orphans that only change owner, in one call; those another process changed first are left."""
    adopted, outcomes = noted
    debug = debug_enabled()
    for i in range(0, len(found), ADOPT_CHUNK):
        try:
            done = await manager.adopt_pending(found[i : i + ADOPT_CHUNK])
        except StoreError as exc:  # noted for health; these and the rest stay orphans, for a later beat
            log.warning("recovery.not_adopted", jobs=len(found) - i, error=f"{type(exc).__name__}: {exc}")
            return
        for new in done:
            if debug:
                log.debug("job.recovered", job_id=new.id, was=JobStatus.PENDING.value, now=new.status.value)
            adopted[new.id] = new
            outcomes[new.status.value] += 1


async def _end_leftovers(rec: JobRecord, spec: JobToolSpec | None) -> None:
    """A run that was going when its owner died may have left processes behind: its tool ends them."""
    if rec.status is not JobStatus.RUNNING or spec is None or spec.on_interrupted is None:
        return
    try:
        await spec.on_interrupted(rec.detail_metadata)
    except Exception as exc:  # recovery must go on: the job is settled whatever its leftovers did
        log.warning("job.leftovers_not_ended", job_id=rec.id, error=str(exc))

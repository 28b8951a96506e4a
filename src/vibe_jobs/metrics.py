"""Statistics and health: frozen snapshots built from counters the manager keeps as jobs finish."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from vibe_jobs.counters import Counters
from vibe_jobs.durations import Durations
from vibe_jobs.figures import ClusterFigures as ClusterFigures  # re-exported: figures moved there
from vibe_jobs.figures import GroupStats as GroupStats
from vibe_jobs.figures import Snapshot as _Snapshot
from vibe_jobs.models import JobMetrics, JobRecord, ResourceUsage
from vibe_jobs.schedules import Schedule
from vibe_jobs.states import COMPLETED, FAILED, JobStatus

Health = Literal["healthy", "degraded", "unhealthy"]
RESERVOIR = 1024


class HealthThresholds(_Snapshot):
    max_queue_depth: int = 1000
    max_error_rate: float = 0.5
    max_oldest_pending_ms: int = 300_000


class HealthReport(_Snapshot):
    status: Health
    reasons: list[str] = Field(default_factory=list)


class Statistics(_Snapshot):
    """Counts, per-tool and per-operation figures, throughput and health."""  # a frozen snapshot

    counts: dict[str, int]
    total: int
    running: int
    queue_depth: int
    queue_depth_by_priority: dict[str, int] = Field(default_factory=dict)
    oldest_pending_age_ms: int | None = None
    unserved_tools: dict[str, int] = Field(default_factory=dict)
    by_tool: dict[str, GroupStats] = Field(default_factory=dict)
    by_operation_type: dict[str, GroupStats] = Field(default_factory=dict)
    throughput_per_minute: int = 0
    error_rate_5m: float | None = Field(default=None, alias="errorRate5m")
    health: HealthReport
    learned_durations: dict[str, dict[str, float]] = Field(default_factory=dict)  # vibe_jobs.durations
    schedules: list[Schedule] = Field(default_factory=list)  # with last and next firing, last outcome

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def own_only(self) -> Statistics:
        """The figures a caller who sees only its own jobs gets: its counts (read for it) and health, and
        none of the figures made of every principal's jobs (per tool and operation type, throughput, error
        rate, the shared queue, learned durations): those are left empty."""
        server_wide: dict[str, Any] = {
            "queue_depth_by_priority": {},
            "oldest_pending_age_ms": None,
            "unserved_tools": {},
            "by_tool": {},
            "by_operation_type": {},
            "throughput_per_minute": 0,
            "error_rate_5m": None,
            "learned_durations": {},
        }
        return self.model_copy(update=server_wide)


@dataclass(slots=True)
class _Group:
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    durations: deque[int] = field(default_factory=lambda: deque(maxlen=RESERVOIR))

    def add(self, status: JobStatus, duration: int | None) -> None:
        if status is COMPLETED:
            self.completed += 1
        elif status is FAILED:
            self.failed += 1
        else:
            self.cancelled += 1
        if duration is not None:
            self.durations.append(duration)

    def snapshot(self) -> GroupStats:
        decided = self.completed + self.failed
        ordered = sorted(self.durations)
        return GroupStats(
            completed=self.completed,
            failed=self.failed,
            cancelled=self.cancelled,
            success_rate=self.completed / decided if decided else None,
            p50_duration_ms=percentile(ordered, 50),
            p95_duration_ms=percentile(ordered, 95),
            average_duration_ms=sum(ordered) / len(ordered) if ordered else None,
        )


def _group(groups: dict[str, _Group], key: str) -> _Group:
    group = groups.get(key)
    if group is None:  # not setdefault: building a _Group on every finish is measurable
        group = groups[key] = _Group()
    return group


def _left(queue: QueueView | None) -> list[str]:
    """Health's words for jobs left for a server that has their tool (`engine.recovery`): one reason however
    many tools, so that another program's stop makes this server degraded at most, never unhealthy."""
    left = queue.left_tools if queue is not None else {}
    if not left:
        return []
    jobs = ", ".join(f"{n} of tool '{tool}'" for tool, n in sorted(left.items()))
    return [f"jobs wait for a server that has their tool (their own server stopped): {jobs}"]


def _unfired(tools: dict[str, int]) -> list[str]:
    """Health's words for due schedules nobody fires (the ticker's `unfired_schedules`), by tool: no schedule id
    (health is read unauthenticated, and a schedule is its creator's), one reason however many tools."""
    if not tools:
        return []
    named = ", ".join(f"{n} of tool '{tool}'" for tool, n in sorted(tools.items()))
    return [f"schedules are overdue and fire nothing (no job tool here runs their tool): {named}"]


def percentile(ordered: list[int], pct: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * pct // 100))
    return float(ordered[int(rank) - 1])


@dataclass(frozen=True, slots=True)
class QueueView:
    """What the scheduler knows about its queue at a moment."""

    depth_by_priority: dict[str, int]
    oldest_pending_created_at: int | None
    unserved_tools: dict[str, int] = field(default_factory=dict)  # pending jobs of tools nobody runs
    left_tools: dict[str, int] = field(default_factory=dict)  # a stopped server's jobs of tools nobody here runs


STORE_TROUBLE_MS = 300_000  # a store error is reported by health this long (a transient one: see STORE_CALM_MS)
# a transient store error is reported until a write works this long after the last failure: a store failing now and
# then (a lock taken in turns, a connection cut again and again) keeps health degraded, not flapping at each write
STORE_CALM_MS = 10_000


class StatsCollector:
    """Per-tool and per-operation counters plus per-second finish buckets for the last 5 minutes."""

    def __init__(self, thresholds: HealthThresholds | None = None, ticks: Callable[[], float] = time.monotonic) -> None:
        self.thresholds = thresholds or HealthThresholds()
        self._ticks = ticks  # seconds never stepped (`JobManager.ticks`): how long ago a store failed
        self.by_tool: dict[str, _Group] = {}
        self.by_op: dict[str, _Group] = {}
        self._buckets: deque[list[int]] = deque()  # [second of the ticks, completed, failed]
        self.counters = Counters()  # what /metrics exports
        self.learned = Durations()  # run times of completed jobs, per tool (vibe_jobs.durations)
        # (when, by the ticks; what; transient) of the last store error
        self.store_trouble: tuple[float, str, bool] | None = None
        self.unfired_schedules: dict[str, int] = {}  # tool -> schedules overdue that no job tool here fires
        self.limits_reached: list[Callable[[], str | None]] = []  # the server's (its listener out of open files)

    def store_failed(self, what: str, transient: bool) -> None:
        """A store operation failed: health says so (degraded, naming it) for STORE_TROUBLE_MS of time passed (by
        the ticks: read by the clock, an hour's step back named it for the hour, a step forward dropped it at once)."""
        self.store_trouble = (self._ticks(), what, transient)

    def store_worked(self) -> None:
        """A store write succeeded: a transient trouble (full, locked, unreachable) is over once STORE_CALM_MS
        passed since its last failure (one sooner leaves it reported); damage is not."""
        trouble = self.store_trouble
        if trouble is not None and trouble[2] and (self._ticks() - trouble[0]) * 1000 >= STORE_CALM_MS:
            self.store_trouble = None

    def _store_reason(self) -> list[str]:
        if self.store_trouble is None:
            return []
        when, what, _ = self.store_trouble
        ago = round((self._ticks() - when) * 1000)
        return [] if ago > STORE_TROUBLE_MS else [f"the job store failed {max(0, ago) // 1000} s ago: {what}"]

    def record_finish(self, rec: JobRecord) -> None:
        end = rec.finished_at or rec.updated_at
        duration = None if rec.started_at is None else end - rec.started_at
        status = rec.status
        (self.by_tool.get(rec.tool_name) or _group(self.by_tool, rec.tool_name)).add(status, duration)
        op = rec.task.operation_type if rec.task is not None else None
        if op is not None:
            _group(self.by_op, op).add(status, duration)
        if duration is not None:
            self.counters.finished(rec.tool_name, duration)
            if status is COMPLETED and rec.finished_at is not None:
                self.learned.add(rec.tool_name, op, duration)
        buckets = self._buckets
        second = int(self._ticks())  # the second it is known here, by the ticks: the last 5 minutes are time passed
        bucket = buckets[-1] if buckets and buckets[-1][0] == second else self._new_bucket(second)
        if status is COMPLETED:
            bucket[1] += 1
        elif status is FAILED:
            bucket[2] += 1

    def _new_bucket(self, second: int) -> list[int]:
        buckets = self._buckets
        buckets.append([second, 0, 0])
        while buckets and buckets[0][0] < second - 300:
            buckets.popleft()
        return buckets[-1]

    def _window(self, seconds: int) -> tuple[int, int]:
        """The finishes (completed, failed) of the last `seconds` of time passed (the ticks: by the seconds of the
        clock they were stamped at, an hour's step forward aged every one of them by the hour at once, and a step
        back kept them "recent" for the hour)."""
        second = int(self._ticks())
        since = second - seconds
        # not those ahead of now (injected ticks that go back, as a test's clock may)
        recent = [b for b in self._buckets if since < b[0] <= second]
        return sum(b[1] for b in recent), sum(b[2] for b in recent)

    def snapshot(
        self,
        counts: dict[JobStatus, int],
        now: int,
        queue: QueueView | None = None,
        cluster: ClusterFigures | None = None,
        store_problem: str | None = None,
    ) -> Statistics:
        """The figures at `now` (the time pending jobs are aged at); `store_problem` (`JobStore.problem`) is a health
        reason of its own."""
        if cluster is not None:
            by_tool, by_op = cluster.by_tool, cluster.by_operation_type
            throughput, done_5m, failed_5m = cluster.finished_last_minute, cluster.completed_5m, cluster.failed_5m
        else:
            by_tool = {k: g.snapshot() for k, g in self.by_tool.items()}
            by_op = {k: g.snapshot() for k, g in self.by_op.items()}
            throughput = sum(self._window(60))
            done_5m, failed_5m = self._window(300)
        error_rate = failed_5m / (done_5m + failed_5m) if done_5m + failed_5m else None
        pending = counts.get(JobStatus.PENDING, 0)
        oldest = queue.oldest_pending_created_at if queue else None
        oldest_age = max(0, now - oldest) if oldest is not None else None  # (the clock stepped back since)
        return Statistics(
            counts={s.value: counts.get(s, 0) for s in JobStatus},
            total=sum(counts.values()),
            running=counts.get(JobStatus.RUNNING, 0),
            queue_depth=pending,
            queue_depth_by_priority=queue.depth_by_priority if queue else {},
            oldest_pending_age_ms=oldest_age,
            unserved_tools=queue.unserved_tools if queue else {},
            by_tool=by_tool,
            by_operation_type=by_op,
            throughput_per_minute=throughput,
            error_rate_5m=error_rate,
            health=self.health(
                pending,
                error_rate,
                oldest_age,
                queue.unserved_tools if queue else None,
                [
                    *([store_problem] if store_problem else []),
                    *self._store_reason(),
                    *_left(queue),
                    *_unfired(self.unfired_schedules),
                    *[reason for reached in self.limits_reached if (reason := reached())],
                ],
            ),
        )

    def health(
        self,
        depth: int,
        error_rate: float | None,
        oldest_age: int | None,
        unserved: dict[str, int] | None = None,
        store: list[str] | None = None,
    ) -> HealthReport:
        t = self.thresholds
        reasons = [*(store or [])]
        reasons += [f"no live worker runs tool '{tool}' ({n} pending)" for tool, n in sorted((unserved or {}).items())]
        if depth > t.max_queue_depth:
            reasons.append(f"queue depth {depth} is over {t.max_queue_depth}")
        if error_rate is not None and error_rate > t.max_error_rate:
            reasons.append(f"error rate {error_rate:.0%} over the last 5 minutes is over {t.max_error_rate:.0%}")
        if oldest_age is not None and oldest_age > t.max_oldest_pending_ms:
            reasons.append(f"oldest pending job waited {oldest_age} ms, over {t.max_oldest_pending_ms} ms")
        status: Health = "healthy" if not reasons else "degraded" if len(reasons) == 1 else "unhealthy"
        return HealthReport(status=status, reasons=reasons)


def performance_score(duration_ms: int | None, estimated_ms: int | None, errors: int, retries: int) -> float:
    """0-100: 100 for a job that finished within its estimate with no errors or retries.

    score = 100 * timeliness / (1 + errors + retries / 2), where timeliness is
    min(1, estimated / actual duration) when an estimate exists, else 1. (The original
    specification names the field but gives no formula; this one is documented in the README.)
    """
    timeliness = 1.0
    if estimated_ms and duration_ms:
        timeliness = min(1.0, estimated_ms / duration_ms)
    return round(100 * timeliness / (1 + errors + retries / 2), 2)


def job_metrics(rec: JobRecord) -> JobMetrics:
    """The specification's JobMetrics for one job (measured, not invented: see the README)."""
    start = rec.started_at or rec.created_at
    end = rec.finished_at
    duration = end - start if end is not None and rec.started_at is not None else None
    cpu = rec.cpu_seconds or 0.0
    avg_cpu = 100 * cpu / (duration / 1000) if duration else 0.0
    estimate = rec.task.estimated_duration if rec.task else None
    failed = 1 if rec.status is JobStatus.FAILED else 0
    return JobMetrics(
        job_id=rec.id,
        start_time=start,
        end_time=end,
        duration=duration,
        resource_usage=ResourceUsage(peak_memory_mb=rec.peak_memory_mb or 0.0, average_cpu_usage=avg_cpu),
        performance_score=performance_score(duration, estimate, rec.error_count + failed, rec.retry_count),
        error_count=rec.error_count + failed,
        retry_count=rec.retry_count,
    )

"""/metrics in the Prometheus text format: a collector over one snapshot of the manager's counters.

The counters are this process's (`vibe_jobs.counters`); the queue gauges (running, pending by priority)
come from the store, so on PostgreSQL they are the cluster's, from the shared table. No label takes an
unbounded value: tools, statuses, priorities, poll outcomes and store operations only.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import wraps
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from vibe_jobs.counters import Counters, Histogram
from vibe_jobs.manager import JobManager
from vibe_jobs.models import Priority
from vibe_jobs.store import JobStore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TIMED_OPS = (
    "insert",
    "get",
    "get_many",
    "update",
    "touch",
    "query",
    "counts",
    "find_active",
    "active",
    "delete_finished",
)


@dataclass(frozen=True, slots=True)
class Scrape:
    counters: Counters
    finished: dict[tuple[str, str], int]  # (tool, status): this process's finishes
    running: int
    pending: dict[str, int]
    subscribers: int


async def scrape(manager: JobManager) -> Scrape:
    stats = await manager.statistics()
    pending = dict.fromkeys((p.value for p in Priority), 0)
    pending.update(stats.queue_depth_by_priority)
    if not stats.queue_depth_by_priority and stats.queue_depth:
        # no queue view (a manager that runs no jobs on a store no other process shares): unsplit
        pending[Priority.MEDIUM.value] = stats.queue_depth
    finished = {
        (tool, status): n
        for tool, group in manager.stats.by_tool.items()
        for status, n in (("completed", group.completed), ("failed", group.failed), ("cancelled", group.cancelled))
    }
    return Scrape(manager.stats.counters, finished, stats.running, pending, manager.bus.subscriber_count)


class ScrapeCollector(Collector):
    def __init__(self, s: Scrape) -> None:
        self.s = s

    def collect(self) -> Iterator[Metric]:
        c = self.s.counters
        yield _counter("vibe_jobs_jobs_created", "Jobs created by this process", "tool", c.created)
        finished = CounterMetricFamily("vibe_jobs_jobs_finished", "Jobs finished here", labels=["tool", "status"])
        for (tool, status), n in sorted(self.s.finished.items()):
            finished.add_metric([tool, status], n)
        yield finished
        yield _counter("vibe_jobs_jobs_retried", "Runs requeued for a retry", "tool", c.retried)
        yield _counter("vibe_jobs_jobs_timed_out", "Runs that passed their time-out", "tool", c.timed_out)
        yield GaugeMetricFamily("vibe_jobs_jobs_running", "Jobs running now (the store's count)", value=self.s.running)
        pending = GaugeMetricFamily("vibe_jobs_jobs_pending", "Jobs waiting to run", labels=["priority"])
        for priority, n in self.s.pending.items():
            pending.add_metric([priority], n)
        yield pending
        yield _histogram("vibe_jobs_job_duration_seconds", "Run time of finished jobs", "tool", c.duration)
        yield _histogram("vibe_jobs_job_queue_wait_seconds", "Wait from creation to first start", "tool", c.queue_wait)
        yield _histogram("vibe_jobs_store_operation_seconds", "Store calls by operation", "op", c.store_ops)
        yield _counter("vibe_jobs_polls", "get-job-result reads by outcome", "outcome", c.polls)
        yield GaugeMetricFamily("vibe_jobs_subscribers", "Event-bus subscriptions open", value=self.s.subscribers)


def _counter(name: str, doc: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, n in sorted(values.items()):
        family.add_metric([key], n)
    return family


def _histogram(name: str, doc: str, label: str, table: dict[str, Histogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for key, hist in sorted(table.items()):
        buckets = [("+Inf" if b == float("inf") else repr(b), n) for b, n in hist.cumulative()]  # folds first
        family.add_metric([key], buckets, hist.total)
    return family


def render(s: Scrape) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector(s))
    return generate_latest(registry)


def metrics_endpoint(manager: JobManager) -> Callable[[Request], Awaitable[Response]]:
    async def metrics(request: Request) -> Response:
        return Response(render(await scrape(manager)), media_type=CONTENT_TYPE)

    return metrics


def instrument_store(store: JobStore, counters: Counters) -> None:
    """Time the store's calls into `vibe_jobs_store_operation_seconds{op}` (only where /metrics is served:
    a library or stdio process pays nothing). The instance's methods are wrapped, its class is untouched."""
    for op in TIMED_OPS:
        method = getattr(store, op, None)
        if method is not None and not getattr(method, "vibe_jobs_timed", False):
            setattr(store, op, _timed(op, method, counters))


def _timed(op: str, method: Callable[..., Awaitable[Any]], counters: Counters) -> Callable[..., Awaitable[Any]]:
    @wraps(method)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            counters.store_op(op, time.perf_counter() - t0)

    timed.__dict__["vibe_jobs_timed"] = True
    return timed

"""A bounded map of the most recently remembered values: the oldest goes when it is full.

The manager keeps the records it last wrote (the base of a job's next change) and the SQLite store the rows
it last read or wrote (the base of an update without a read-back). Both evict the oldest entry on every
insert once full. A plain dict is the wrong tool for that: deleting from its front leaves dummy slots that
`next(iter(d))` walks over until the dict is rebuilt, so eviction cost grows with the churn (the figure is
in bench/MEASUREMENTS.md). An OrderedDict unlinks its oldest entry in constant time.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, TypeVar

from vibe_jobs.states import FINAL

if TYPE_CHECKING:
    from vibe_jobs.models import JobRecord

V = TypeVar("V")


class Recent(OrderedDict[str, V]):
    """At most `limit` values by key; `put` makes a key the newest and evicts the oldest past the limit.
    Reads are the OrderedDict's own (`get`, `pop(key, None)`), with no Python frame on the hot path."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a Recent map holds at least one value")
        super().__init__()
        self.limit = limit

    def put(self, key: str, value: V) -> None:
        if key in self:
            self.move_to_end(key)
        self[key] = value
        if len(self) > self.limit:
            self.popitem(last=False)


class RecentRecords(Recent["JobRecord"]):
    """The job records last written or read, each the base of its job's next change. A finished job
    changes rarely: its record is dropped, not kept (it would hold its result, and the garbage
    collector would walk it, until pushed out)."""

    def remember(self, rec: JobRecord) -> JobRecord:
        if rec.status in FINAL:
            self.pop(rec.id, None)
        else:
            self.put(rec.id, rec)
        return rec

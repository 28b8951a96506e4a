"""Figures about finished jobs that both the metrics and a store compute: plain data, importing nothing
above the models, so a store (PostgreSQL sums a cluster's figures in SQL) need not import `metrics`.
`vibe_jobs.metrics` re-exports them."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, computed_field
from pydantic.alias_generators import to_camel


class Snapshot(BaseModel):
    """A frozen figure set, camelCase on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True, frozen=True)


class GroupStats(Snapshot):
    """Finished jobs of one tool or one operation type."""

    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    success_rate: float | None = None
    p50_duration_ms: float | None = Field(default=None, alias="p50DurationMs")
    p95_duration_ms: float | None = Field(default=None, alias="p95DurationMs")
    average_duration_ms: float | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def error_rate(self) -> float | None:
        """The share of failed jobs among those that completed or failed (1 - success rate): None before any."""
        decided = self.completed + self.failed
        return self.failed / decided if decided else None


@dataclass(frozen=True, slots=True)
class ClusterFigures:
    """Finished-job figures of a whole cluster (read from the shared store), in place of one process's."""

    by_tool: dict[str, GroupStats]
    by_operation_type: dict[str, GroupStats]
    finished_last_minute: int
    completed_5m: int
    failed_5m: int

"""JobContext: what a job function gets to report progress, log diagnostics and see cancellation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from vibe_jobs.manager import JobManager


class JobContext:
    """Handed to a running job function (hidden from the tool's input schema)."""

    def __init__(self, manager: JobManager, job_id: str, attempt: int, tool_name: str) -> None:
        self.manager, self.job_id, self.attempt, self.tool_name = manager, job_id, attempt, tool_name
        self.cancel_scope: anyio.CancelScope | None = None
        self.cancel_reason: str | None = None
        self.child_cpu_seconds = 0.0
        self.child_peak_memory_mb = 0.0
        self._pending_diagnostics: list[str] = []

    @property
    def cancelled(self) -> bool:
        """True once cancellation (cancel-job, a time-out, shutdown) was requested."""
        return self.cancel_reason is not None or bool(self.cancel_scope and self.cancel_scope.cancel_called)

    async def checkpoint(self) -> None:
        """Raise the cancellation here if the job was cancelled (call it between units of work)."""
        await anyio.lowlevel.checkpoint_if_cancelled()

    async def progress(
        self,
        percent: float | None,
        message: str | None = None,
        *,
        stage: str | None = None,
        sub_progress: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Report progress (0-100) with an optional stage and progress within the stage."""
        diagnostic = self._take_diagnostics()
        await self.manager.update_progress(
            self.job_id, percent, message, stage=stage, sub_progress=sub_progress,
            diagnostic=diagnostic, metadata=metadata, attempt=self.attempt,
        )  # fmt: skip

    def diagnostic(self, text: str) -> None:
        """Add a diagnostic line; it is stored with the next progress update or the result."""
        self._pending_diagnostics.append(text)

    def _take_diagnostics(self) -> str | None:
        if not self._pending_diagnostics:
            return None
        text = "\n".join(self._pending_diagnostics)
        self._pending_diagnostics.clear()
        return text

    def take_diagnostics(self) -> list[str]:
        """Diagnostics not yet stored (the runner stores them with the result)."""
        out, self._pending_diagnostics = self._pending_diagnostics, []
        return out

    def add_child_usage(self, cpu_seconds: float, peak_memory_mb: float) -> None:
        """Count a child process's CPU time and peak memory into this job's metrics."""
        self.child_cpu_seconds += cpu_seconds
        self.child_peak_memory_mb = max(self.child_peak_memory_mb, peak_memory_mb)

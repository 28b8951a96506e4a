"""Register the built-in job tools (map-codebase, run-command) on a JobServer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vibe_jobs.settings import Settings

if TYPE_CHECKING:
    from vibe_jobs.server.jobserver import JobServer


def register_builtins(server: JobServer, settings: Settings) -> None:
    """Add the built-in tools that this configuration allows."""
    return None

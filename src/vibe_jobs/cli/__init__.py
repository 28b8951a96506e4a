"""The command line: `vibe-jobs serve | worker | jobs ... | call ...` (entry point `vibe_jobs.cli:main`)."""

from __future__ import annotations

from vibe_jobs.cli.main import main

__all__ = ["main"]

"""Logging goes to whatever stderr is when a line is written."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from vibe_jobs.logs import configure_logging, get_logger, own_stdlib_logging


def test_a_line_goes_to_stderr_as_it_is_now_not_to_the_stream_logging_was_set_up_with(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logging set up while stderr was another stream (an application's redirect, an in-process CLI call under a
    test's capture) kept writing to it: once that stream was closed, every later line raised "I/O operation on
    closed file" in whatever code logged it (30 tests of one CI run, a job's failure among them)."""
    root, level = logging.getLogger(), logging.getLogger().level
    monkeypatch.setattr(root, "handlers", [])  # own_stdlib_logging sets up a root nobody has set up
    then = io.StringIO()
    with monkeypatch.context() as during:
        during.setattr(sys, "stderr", then)
        configure_logging("info", "json")
        own_stdlib_logging()
    then.close()
    try:
        get_logger("vibe_jobs.test").warning("structlog.after_close")
        logging.getLogger("some.library").warning("stdlib after close")
    finally:
        configure_logging("warning")  # as tests/conftest.py has it
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "structlog.after_close" in err and "stdlib after close" in err, err

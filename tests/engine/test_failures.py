"""The rules a failure follows, the same for a job that raised, timed out or was interrupted."""

from __future__ import annotations

from typing import Any

import pytest

from vibe_jobs import JobRecord, JobStatus, TaskMetadata, TaskSpec
from vibe_jobs.engine.failures import MAX_ERROR_CHARS, dependency_failed, error_text, logged_traceback, retry_limit
from vibe_jobs.jobtool import make_spec
from vibe_jobs.redact import secret_hider
from vibe_jobs.retry import RetryPolicy

SERVER = RetryPolicy(max_retries=3)


async def _body() -> None: ...


def record(max_retries: int | None = None) -> JobRecord:
    task = TaskSpec(metadata=TaskMetadata(max_retries=max_retries)) if max_retries is not None else None
    return JobRecord("id", "tool", {}, JobStatus.RUNNING, 0, 0, task=task)


@pytest.mark.parametrize(
    ("job_limit", "tool_options", "limit"),
    [
        (None, {}, 0),  # no opt-in: a failure is final
        (None, {"retry_safe": True}, 3),  # opted in: the server's policy
        (None, {"retry": RetryPolicy(max_retries=1)}, 1),  # a policy of its own is an opt-in, and its limit
        (None, {"retry_safe": True, "retry": RetryPolicy(max_retries=5)}, 5),
        (None, {"max_retries": 2}, 2),  # the tool named a limit
        (None, {"retry_safe": True, "max_retries": 0}, 0),
        (4, {}, 4),  # the job's own maxRetries wins over everything
        (0, {"retry_safe": True, "max_retries": 2}, 0),
    ],
)
def test_the_retry_limit(job_limit: int | None, tool_options: dict[str, Any], limit: int) -> None:
    spec = make_spec(_body, name="tool", **tool_options)
    assert retry_limit(record(job_limit), spec, SERVER) == limit


def test_the_dependency_failed_message() -> None:
    assert error_text(dependency_failed("b", "a", JobStatus.CANCELLED)) == (
        "DependencyFailed: dependency 'a' cancelled; this job did not run"
    )
    assert error_text(dependency_failed("b", "a", None)) == (
        "DependencyFailed: dependency 'a' no longer exists; this job did not run"
    )


def test_error_text_names_the_type_and_the_message() -> None:
    assert error_text(RuntimeError("boom")) == "RuntimeError: boom"
    assert error_text(KeyError()) == "KeyError"


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


class ExitingError(Exception):
    def __str__(self) -> str:
        raise SystemExit(3)  # not an Exception: it would end the server where the outcome is written


def test_error_text_of_an_exception_whose_str_raises_names_its_type() -> None:
    assert error_text(UnprintableError()) == "UnprintableError: <UnprintableError: str() failed>"
    assert error_text(ExitingError()) == "ExitingError: <ExitingError: str() failed>"
    assert logged_traceback(ExitingError()).endswith("ExitingError: <exception str() failed>")


def raised(exc: Exception) -> Exception:
    try:
        raise exc
    except Exception as caught:
        return caught


def test_the_logged_traceback_keeps_its_frames_and_cuts_a_huge_message_as_error_text_does() -> None:
    exc = raised(ValueError("x" * 10_000_000))
    logged = logged_traceback(exc)
    assert logged.startswith("Traceback (most recent call last):") and "in raised" in logged
    assert len(logged) < 5 * MAX_ERROR_CHARS and logged.endswith(" [cut]")
    assert error_text(exc).endswith(" [cut]")
    assert "<exception str() failed>" in logged_traceback(raised(UnprintableError()))


PEM = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcw\n"
    "ZZZSECRETLINE2abcdefghijkl\n-----END PRIVATE KEY-----"
)
TOKEN = "sk-live-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@pytest.mark.parametrize(
    ("params", "message", "kept_out"),
    [
        ({"private_key": PEM}, f"could not load key {PEM}", "ZZZSECRETLINE2"),  # over several lines
        ({"passphrase_secret": "correct  horse battery"}, "bad passphrase correct  horse battery", "horse"),
        ({"api_token": TOKEN}, "x" * 980 + " token=" + TOKEN, "sk-live-A"),  # across the cut
        ({"password": "pa'ss\\word-12345"}, "refused " + repr("pa'ss\\word-12345"), "word-12345"),  # as a repr
    ],
    ids=["multi-line", "double-space", "cut", "repr"],
)
def test_a_secret_is_hidden_in_the_error_text_and_the_log_before_they_are_joined_or_cut(
    params: dict[str, str], message: str, kept_out: str
) -> None:
    """helper-78: the secrets were hidden in the text as the job shows it, after its whitespace was joined and it
    was cut: a key over several lines, a passphrase with two spaces, a token cut in two and a repr all showed."""
    exc = raised(ValueError(message))
    shown, logged = error_text(exc, secret_hider(params)), logged_traceback(exc, secret_hider(params))
    assert kept_out not in shown and "***" in shown, shown
    assert kept_out not in logged, logged

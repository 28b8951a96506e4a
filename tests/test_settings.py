"""Settings: defaults, every environment variable, the VIBE_JOBS_CONFIG file, and errors that say what is wrong."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from mcp_types import TextContent

from vibe_jobs.errors import ConfigError
from vibe_jobs.manager import JobManager
from vibe_jobs.models import JobQueueConfig, Priority
from vibe_jobs.polling import PollingPolicy
from vibe_jobs.server.wrap import started_result
from vibe_jobs.settings import ENV_VARS, MIB, Settings
from vibe_jobs.store.memory import MemoryStore


def test_defaults() -> None:
    s = Settings()
    assert s.max_concurrent == 5
    assert s.cleanup_interval_ms == 300_000
    assert s.max_retention_ms == 3_600_000
    assert s.store_url == "memory://"
    assert (s.poll_base_ms, s.poll_factor, s.poll_max_ms) == (1000, 2.0, 30_000)
    assert s.max_params_bytes == MIB == 1_048_576
    assert s.max_wait_ms == 50_000
    assert s.max_pending == 100_000
    assert s.lease_ms == 30_000
    assert s.aging_ms == 60_000
    assert (s.log_level, s.log_format) == ("info", "auto")
    assert (s.tools, s.roots, s.allowed_commands) == ((), None, None)
    assert s.queue == JobQueueConfig()
    assert s.polling == PollingPolicy(base_ms=1000, factor=2.0, max_ms=30_000)


def test_from_empty_env_uses_the_defaults_and_sqlite_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    s = Settings.from_env({})
    assert s.store_url == f"sqlite:///{tmp_path}/vibe-jobs/jobs.db"
    assert s == Settings(store_url=s.store_url)


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.max_concurrent = 9  # type: ignore[misc]
    changed = s.with_(max_concurrent=9)
    assert (s.max_concurrent, changed.max_concurrent) == (5, 9)


def test_one_concurrency_limit_whether_given_as_max_concurrent_or_the_queue_configs() -> None:
    """`max_concurrent` and JobQueueConfig's maxConcurrentJobs (issue 4 item 10) are one limit: the queue config's
    sets it when max_concurrent is not given (it was ignored), and the queue config states max_concurrent."""
    given = Settings(queue=JobQueueConfig(max_concurrent_jobs=2))
    assert (given.max_concurrent, given.queue.max_concurrent_jobs) == (2, 2)
    assert given.with_(program="p").max_concurrent == 2
    for s, limit in ((Settings(max_concurrent=3), 3), (given.with_(max_concurrent=5), 5), (Settings(), 5)):
        assert (s.max_concurrent, s.queue.max_concurrent_jobs) == (limit, limit)
    assert Settings(max_concurrent=3).with_(max_concurrent=5).queue.max_concurrent_jobs == 5
    both = Settings(max_concurrent=7, queue=JobQueueConfig(max_concurrent_jobs=2))  # max_concurrent wins, as the
    assert (both.max_concurrent, both.queue.max_concurrent_jobs) == (7, 7)  # environment's wins over the file's


def test_a_queue_config_given_to_with_sets_its_own_limit() -> None:
    """`with_(max_concurrent=...)` made the queue config state the new limit, but `with_(queue=...)` with a queue
    config giving its own maxConcurrentJobs kept the old limit (7 jobs at once, the queue config saying 3, silently)
    unless that was the default; a queue config that gives none keeps the limit."""
    s = Settings(max_concurrent=7)
    changed = s.with_(queue=JobQueueConfig(max_concurrent_jobs=3))
    assert (changed.max_concurrent, changed.queue.max_concurrent_jobs) == (3, 3)
    kept = s.with_(queue=JobQueueConfig(retry_policy={"max_retries": 1}))
    assert (kept.max_concurrent, kept.queue.max_concurrent_jobs, kept.queue.retry_policy.max_retries) == (7, 7, 1)
    assert s.with_(program="p").max_concurrent == 7


def test_blank_values_are_ignored() -> None:
    s = Settings.from_env({"JOB_MANAGER_MAX_CONCURRENT": "  ", "VIBE_JOBS_STORE": ""})
    assert s.max_concurrent == 5
    assert s.store_url.startswith("sqlite:///")


# Every variable with a valid raw value and what it becomes.
VALID: dict[str, tuple[str, str, Any]] = {
    "JOB_MANAGER_MAX_CONCURRENT": (" 12 ", "max_concurrent", 12),
    "JOB_MANAGER_CLEANUP_INTERVAL": ("60000", "cleanup_interval_ms", 60_000),
    "JOB_MANAGER_MAX_RETENTION": ("7200000", "max_retention_ms", 7_200_000),
    "VIBE_JOBS_STORE": ("postgresql://h/db", "store_url", "postgresql://h/db"),
    "VIBE_JOBS_POLL_BASE_MS": ("250", "poll_base_ms", 250),
    "VIBE_JOBS_POLL_FACTOR": ("1.5", "poll_factor", 1.5),
    "VIBE_JOBS_POLL_MAX_MS": ("9000", "poll_max_ms", 9000),
    "VIBE_JOBS_MAX_PARAMS_BYTES": ("2048", "max_params_bytes", 2048),
    "VIBE_JOBS_MAX_WAIT_SECONDS": ("2.5", "max_wait_ms", 2500),  # seconds, as the name says
    "VIBE_JOBS_MAX_PENDING": ("10", "max_pending", 10),
    "VIBE_JOBS_LEASE_SECONDS": ("5", "lease_ms", 5000),
    "VIBE_JOBS_AGING_SECONDS": ("0.5", "aging_ms", 500),
    "VIBE_JOBS_PROGRESS_KEEPALIVE_SECONDS": ("0.2", "progress_keepalive_ms", 200),
    "VIBE_JOBS_QUESTION_TIMEOUT_SECONDS": ("90", "question_timeout_ms", 90_000),
    "VIBE_JOBS_LOG_LEVEL": ("WARNING", "log_level", "warning"),
    "VIBE_JOBS_LOG_FORMAT": ("json", "log_format", "json"),
    "VIBE_JOBS_TOOLS": (" codemap, run-command ,,", "tools", ("codemap", "run-command")),
    "VIBE_JOBS_ROOTS": ("/a:/b", "roots", "/a:/b"),
    "VIBE_JOBS_ALLOWED_COMMANDS": ("git,make", "allowed_commands", "git,make"),
    "VIBE_JOBS_COMMAND_ENV": ("CI,GOFLAGS", "command_env", "CI,GOFLAGS"),
    "VIBE_JOBS_AUTH_TOKENS": ("/etc/vibe/tokens", "auth_tokens", "/etc/vibe/tokens"),
    "VIBE_JOBS_AUTH_JWKS": ("https://idp/jwks", "auth_jwks", "https://idp/jwks"),
    "VIBE_JOBS_AUTH_ISSUER": ("https://idp", "auth_issuer", "https://idp"),
    "VIBE_JOBS_AUTH_AUDIENCE": ("https://jobs/mcp", "auth_audience", "https://jobs/mcp"),
    "VIBE_JOBS_AUTH_JWKS_REFRESH_SECONDS": ("60", "auth_jwks_refresh_ms", 60_000),
    "VIBE_JOBS_AUTH_JWKS_RETRY_SECONDS": ("2", "auth_jwks_retry_ms", 2000),
    "VIBE_JOBS_ALLOWED_HOSTS": ("jobs.example, 10.0.0.5", "allowed_hosts", ("jobs.example", "10.0.0.5")),
    "VIBE_JOBS_QUOTA_PENDING": ("10", "quota_pending", 10),
    "VIBE_JOBS_QUOTA_SCHEDULES": ("5", "quota_schedules", 5),
    "VIBE_JOBS_QUOTA_RUNNING": ("2", "quota_running", 2),
    "VIBE_JOBS_QUOTA_PARAMS_BYTES": ("65536", "quota_params_bytes", 65536),
    "VIBE_JOBS_SECRET_PATTERN": ("apikey|cred", "secret_pattern", "apikey|cred"),
    "VIBE_JOBS_MAX_RESULT_BYTES": ("65536", "max_result_bytes", 65536),
    "VIBE_JOBS_MAX_ANSWER_BYTES": ("8388608", "max_answer_bytes", 8388608),
    "VIBE_JOBS_HTTP_HEADER_TIMEOUT_SECONDS": ("2.5", "http_header_timeout_ms", 2500),
    "VIBE_JOBS_MAX_SESSIONS": ("50", "max_sessions", 50),
    "VIBE_JOBS_MAX_SESSIONS_PER_PRINCIPAL": ("3", "max_sessions_per_principal", 3),
    "VIBE_JOBS_SESSION_IDLE_SECONDS": ("120", "session_idle_ms", 120_000),
    "VIBE_JOBS_PROXY_START_TIMEOUT_SECONDS": ("90", "proxy_start_timeout_ms", 90_000),
    "VIBE_JOBS_PROXY_LATE_LINE_SECONDS": ("0.5", "proxy_late_line_ms", 500),
    "VIBE_JOBS_HEALTH_MAX_QUEUE_DEPTH": ("50", "health_max_queue_depth", 50),
    "VIBE_JOBS_HEALTH_MAX_ERROR_RATE": ("0.25", "health_max_error_rate", 0.25),
    "VIBE_JOBS_HEALTH_MAX_OLDEST_PENDING_SECONDS": ("30", "health_max_oldest_pending_ms", 30_000),
    "VIBE_JOBS_PROGRAM": ("my-app_2.0", "program", "my-app_2.0"),
}


def test_every_variable_is_tested() -> None:
    assert set(VALID) == set(ENV_VARS)


@pytest.mark.parametrize(("var", "raw", "name", "expected"), [(k, *v) for k, v in VALID.items()])
def test_each_variable_is_parsed(var: str, raw: str, name: str, expected: Any) -> None:
    s = Settings.from_env({var: raw})
    assert getattr(s, name) == expected
    others = Settings.from_env({})
    changed = {f for f in ENV_VARS.values() if getattr(s, f[0]) != getattr(others, f[0])}
    assert {f[0] for f in changed} == {name}


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("JOB_MANAGER_MAX_CONCURRENT", "0"),
        ("VIBE_JOBS_PROGRAM", "my app"),
        ("VIBE_JOBS_PROGRAM", "a@b"),
        ("JOB_MANAGER_MAX_CONCURRENT", "-3"),
        ("JOB_MANAGER_MAX_CONCURRENT", "five"),
        ("JOB_MANAGER_MAX_CONCURRENT", "2.5"),
        ("JOB_MANAGER_CLEANUP_INTERVAL", "0"),
        ("JOB_MANAGER_MAX_RETENTION", "1h"),
        ("VIBE_JOBS_STORE", "redis://localhost"),
        ("VIBE_JOBS_STORE", "/tmp/jobs.db"),
        ("VIBE_JOBS_POLL_BASE_MS", "-1"),
        ("VIBE_JOBS_POLL_FACTOR", "0.5"),
        ("VIBE_JOBS_POLL_FACTOR", "nan"),
        ("VIBE_JOBS_POLL_FACTOR", "inf"),
        ("VIBE_JOBS_POLL_FACTOR", "x2"),
        ("VIBE_JOBS_POLL_MAX_MS", "0"),
        ("VIBE_JOBS_MAX_PARAMS_BYTES", "1MB"),
        ("VIBE_JOBS_MAX_WAIT_SECONDS", "0"),
        ("VIBE_JOBS_MAX_WAIT_SECONDS", "nan"),
        ("VIBE_JOBS_MAX_WAIT_SECONDS", "inf"),
        ("VIBE_JOBS_MAX_WAIT_SECONDS", "100"),  # waitSeconds allows 50: agents were told to wait 100 and refused
        ("VIBE_JOBS_MAX_PENDING", "-10"),
        ("VIBE_JOBS_LEASE_SECONDS", "-1"),
        ("VIBE_JOBS_LEASE_SECONDS", "inf"),
        ("VIBE_JOBS_LEASE_SECONDS", "0.0004"),  # under a millisecond
        ("VIBE_JOBS_AGING_SECONDS", "soon"),
        ("VIBE_JOBS_AGING_SECONDS", "0"),
        ("VIBE_JOBS_MAX_PENDING", "0"),
        ("VIBE_JOBS_MAX_SESSIONS_PER_PRINCIPAL", "0"),
        ("VIBE_JOBS_MAX_PARAMS_BYTES", "0"),
        ("JOB_MANAGER_MAX_RETENTION", "-5"),
        ("VIBE_JOBS_LOG_LEVEL", "verbose"),
        ("VIBE_JOBS_LOG_FORMAT", "xml"),
        ("VIBE_JOBS_QUOTA_PENDING", "0"),
        ("VIBE_JOBS_QUOTA_RUNNING", "many"),
        ("VIBE_JOBS_QUOTA_PARAMS_BYTES", "-1"),
        ("VIBE_JOBS_SECRET_PATTERN", "(unclosed"),
        # a URL never matches a request's Host: every client was answered 421 (review helper-111)
        ("VIBE_JOBS_ALLOWED_HOSTS", "https://jobs.example/"),
        ("VIBE_JOBS_ALLOWED_HOSTS", "jobs.example, user@10.0.0.5"),
        ("VIBE_JOBS_MAX_RESULT_BYTES", "100"),  # under 4096: no room for a truncation marker
        ("VIBE_JOBS_MAX_ANSWER_BYTES", "4096"),  # under 65536: three copies and the answer's frame do not fit
        # past the bounds: a worker's claims failed for ever (PostgreSQL: out of int64 range), a heartbeat raised
        # OverflowError, a duration overflowed to inf (review helper-56)
        ("JOB_MANAGER_MAX_CONCURRENT", "99999999999999999999"),
        ("VIBE_JOBS_MAX_RESULT_BYTES", "99999999999999999999"),
        ("JOB_MANAGER_MAX_RETENTION", "99999999999999999999"),
        ("VIBE_JOBS_LEASE_SECONDS", "1e300"),
        ("VIBE_JOBS_AGING_SECONDS", "1e306"),
    ],
)
def test_an_invalid_value_names_the_variable_and_the_value(var: str, raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({var: raw})
    assert info.value.code == "config_error"
    assert var in str(info.value)
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"VIBE_JOBS_POLL_BASE_MS": "5000", "VIBE_JOBS_POLL_MAX_MS": "1000"}, "BASE_MS=5000 is more than "),
        ({"VIBE_JOBS_POLL_BASE_MS": "40000"}, "VIBE_JOBS_POLL_BASE_MS=40000 is more than VIBE_JOBS_POLL_MAX_MS=30000"),
        ({"VIBE_JOBS_POLL_MAX_MS": "500"}, "VIBE_JOBS_POLL_BASE_MS=1000 is more than VIBE_JOBS_POLL_MAX_MS=500"),
    ],
)
def test_a_polling_base_past_its_maximum_is_refused_naming_both(env: dict[str, str], said: str) -> None:
    """README: the interval is min(base * factor^(n-1), max), and max(base, ...) once the remaining time is known:
    with the base past the maximum the two contradict, and reads were told to wait past the maximum (review
    helper-111)."""
    with pytest.raises(ConfigError, match=re.escape(said)):
        Settings.from_env(env)
    assert Settings.from_env({"VIBE_JOBS_POLL_BASE_MS": "2000", "VIBE_JOBS_POLL_MAX_MS": "2000"}).poll_max_ms == 2000


def test_a_store_url_s_password_is_not_shown_in_its_error() -> None:
    """A mistyped scheme printed the whole URL, password and all (review helper-56)."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"VIBE_JOBS_STORE": "postgressql://app:Sup3rSecretPw@db.internal/jobs?password=Pw2"})
    assert "Sup3rSecretPw" not in str(info.value) and "Pw2" not in str(info.value)
    assert "postgressql://app:***@db.internal/jobs" in str(info.value)


def test_the_error_says_what_is_expected() -> None:
    with pytest.raises(ConfigError, match="must be one of debug, info, warning, error, critical"):
        Settings.from_env({"VIBE_JOBS_LOG_LEVEL": "loud"})
    with pytest.raises(ConfigError, match="must be a positive whole number"):
        Settings.from_env({"JOB_MANAGER_MAX_CONCURRENT": "0"})
    with pytest.raises(ConfigError, match=r"must be at least 0\.001 \(one millisecond\)"):
        Settings.from_env({"VIBE_JOBS_AGING_SECONDS": "0.0001"})


COUNTS = {
    "max_concurrent",
    "max_sessions",
    "max_sessions_per_principal",
    "max_params_bytes",
    "max_result_bytes",
    "max_answer_bytes",
    "max_pending",
    "poll_factor",
    "health_max_queue_depth",
    "health_max_error_rate",
}  # numbers that are no duration


def test_every_duration_is_in_milliseconds() -> None:
    durations = {f.name for f in fields(Settings) if f.type in ("int", "float") and f.name not in COUNTS}
    assert durations == {
        "cleanup_interval_ms", "max_retention_ms", "poll_base_ms", "poll_max_ms", "max_wait_ms", "lease_ms", "aging_ms",
        "progress_keepalive_ms", "question_timeout_ms",
        "http_header_timeout_ms", "session_idle_ms", "auth_jwks_refresh_ms", "auth_jwks_retry_ms",
        "proxy_start_timeout_ms", "proxy_late_line_ms",
        "health_max_oldest_pending_ms",
    }  # fmt: skip


async def test_the_seconds_variables_reach_their_consumers_as_seconds() -> None:
    """VIBE_JOBS_LEASE_SECONDS and VIBE_JOBS_MAX_WAIT_SECONDS still mean seconds where they act."""
    settings = Settings.from_env({"VIBE_JOBS_LEASE_SECONDS": "5", "VIBE_JOBS_MAX_WAIT_SECONDS": "2.5"})
    store = MemoryStore()
    manager = JobManager(store, settings, clock=lambda: 1000.0)
    async with manager:
        assert store.leases[manager.owner] == 1_000_000 + 5_000  # the lease runs 5 s from now (epoch ms)
        answer = started_result(manager, "j1", "t").content[0]
    assert isinstance(answer, TextContent) and '{"jobId": "j1", "waitSeconds": 2.5}' in answer.text


# -- VIBE_JOBS_CONFIG ----------------------------------------------------------------------

TOML = """
maxConcurrentJobs = 7

[priorityWeights]
low = 0.5
critical = 10.0

[retryPolicy]
maxRetries = 5
initialDelayMs = 250

[timeoutPolicy]
defaultTimeoutMs = 60000
operationTimeouts = { analysis = 120000 }

[resourceLimits]
maxMemoryMB = 4096
"""


def _check_loaded(queue: JobQueueConfig) -> None:
    assert queue.max_concurrent_jobs == 7
    # the weights given over the defaults (the others were 1.0: high and medium level with low)
    assert queue.priority_weights == {
        Priority.LOW: 0.5,
        Priority.MEDIUM: 2.0,
        Priority.HIGH: 3.0,
        Priority.CRITICAL: 10,
    }
    assert (queue.retry_policy.max_retries, queue.retry_policy.initial_delay_ms) == (5, 250)
    assert queue.retry_policy.backoff_multiplier == 2  # unset keys keep their defaults
    assert queue.timeout_policy.default_timeout_ms == 60_000
    assert queue.timeout_policy.operation_timeouts == {"analysis": 120_000}
    assert queue.resource_limits.max_memory_mb == 4096
    assert queue.resource_limits.max_cpu_weight == 8


def test_config_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "queue.toml"
    path.write_text(TOML)
    s = Settings.from_env({"VIBE_JOBS_CONFIG": str(path)})
    _check_loaded(s.queue)
    assert s.max_concurrent == 7  # taken from the file when the variable is unset


def test_config_from_json(tmp_path: Path) -> None:
    data = {
        "maxConcurrentJobs": 7,
        "priorityWeights": {"low": 0.5, "critical": 10.0},
        "retryPolicy": {"maxRetries": 5, "initialDelayMs": 250},
        "timeoutPolicy": {"defaultTimeoutMs": 60000, "operationTimeouts": {"analysis": 120000}},
        "resourceLimits": {"maxMemoryMB": 4096},
    }
    path = tmp_path / "queue.json"
    path.write_text(json.dumps(data))
    _check_loaded(Settings.from_env({"VIBE_JOBS_CONFIG": str(path)}).queue)


@pytest.mark.parametrize("name", ["queue.JSON", "queue.conf", "queue"])
def test_a_json_config_is_read_whatever_its_name(tmp_path: Path, name: str) -> None:
    """Issue 4: "a TOML or JSON file given by VIBE_JOBS_CONFIG". JSON was read only from a name ending in `.json`;
    any other was parsed as TOML ("Invalid statement"). An object's text (a TOML file never starts with `{`) is JSON."""
    path = tmp_path / name
    path.write_text('\n  {"maxConcurrentJobs": 7, "resourceLimits": {"maxMemoryMB": 4096}}')
    s = Settings.from_env({"VIBE_JOBS_CONFIG": str(path)})
    assert (s.max_concurrent, s.queue.resource_limits.max_memory_mb) == (7, 4096)


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "queue.toml"
    path.write_text(TOML)
    s = Settings.from_env({"VIBE_JOBS_CONFIG": str(path), "JOB_MANAGER_MAX_CONCURRENT": "3"})
    assert s.max_concurrent == 3
    assert s.queue.max_concurrent_jobs == 3
    assert s.queue.retry_policy.max_retries == 5


def test_the_environment_overrides_the_files_snake_case_key(tmp_path: Path) -> None:
    """The file's keys may be snake_case (`max_concurrent_jobs`, as JobQueueConfig takes them); with
    JOB_MANAGER_MAX_CONCURRENT set too, start-up was refused: "key 'max_concurrent_jobs': Extra inputs are not
    permitted", the variable's value having been added under the other spelling."""
    path = tmp_path / "queue.toml"
    path.write_text("max_concurrent_jobs = 7\n[resource_limits]\nmax_memory_mb = 4096\n")
    s = Settings.from_env({"VIBE_JOBS_CONFIG": str(path), "JOB_MANAGER_MAX_CONCURRENT": "3"})
    assert (s.max_concurrent, s.queue.max_concurrent_jobs, s.queue.resource_limits.max_memory_mb) == (3, 3, 4096)
    assert Settings.from_env({"VIBE_JOBS_CONFIG": str(path)}).max_concurrent == 7


@pytest.mark.parametrize(
    ("text", "suffix", "key", "value"),
    [
        ("maxConcurrentJobs = 0", ".toml", "maxConcurrentJobs", "0"),
        ("[retryPolicy]\nmaxRetries = -1", ".toml", "retryPolicy.maxRetries", "-1"),
        ('{"retryPolicy": {"jitter": 3}}', ".json", "retryPolicy.jitter", "3"),
        ('{"priorityWeights": {"urgent": 1}}', ".json", "priorityWeights.urgent.[key]", "'urgent'"),
        ('{"maxConcurentJobs": 4}', ".json", "maxConcurentJobs", "4"),  # a misspelt key is refused
        ('{"maxConcurrentJobs": 99999999999999999999}', ".json", "maxConcurrentJobs", "99999999999999999999"),
        ("[priorityWeights]\nlow = nan", ".toml", "priorityWeights.low", "nan"),
        ("[priorityWeights]\nhigh = -5.0", ".toml", "priorityWeights.high", "-5.0"),
        ("[priorityWeights]\ncritical = inf", ".toml", "priorityWeights.critical", "inf"),
    ],
)
def test_a_bad_key_value_names_the_key(tmp_path: Path, text: str, suffix: str, key: str, value: str) -> None:
    path = tmp_path / f"queue{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"VIBE_JOBS_CONFIG": str(path)})
    message = str(info.value)
    assert "VIBE_JOBS_CONFIG" in message and str(path) in message
    assert f"key '{key}'" in message
    assert f"got {value}" in message


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("missing.toml", None, "cannot be read"),
        ("broken.toml", "maxConcurrentJobs = = 1", "cannot be read"),
        ("broken.json", "{not json", "cannot be read"),
        ("list.json", "[1, 2]", "must hold a table/object"),
    ],
)
def test_an_unreadable_config_file_is_named(tmp_path: Path, name: str, text: str | None, words: str) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"VIBE_JOBS_CONFIG": str(path)})
    assert f"VIBE_JOBS_CONFIG={str(path)!r}" in str(info.value)
    assert words in str(info.value)

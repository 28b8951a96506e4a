"""Settings: one frozen object, read from the environment only here (`Settings.from_env()`).

Every duration is a whole number of milliseconds (`*_ms`), the unit of the job records and the wire. The
environment variables keep their documented units (`*_SECONDS` in seconds, the rest in ms): `ENV_VARS`
converts at this edge. An invalid value stops start-up with a `ConfigError` naming the variable and the value.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vibe_jobs.errors import ConfigError
from vibe_jobs.models import MAX_COUNT, JobQueueConfig
from vibe_jobs.owners import check_program
from vibe_jobs.polling import PollingPolicy
from vibe_jobs.redact import DEFAULT_SECRET_PATTERN, check_pattern, redact_urls_in

MIB = 1024 * 1024
DEFAULT_MAX_CONCURRENT = JobQueueConfig().max_concurrent_jobs  # 5, the specification's default
MAX_WAIT_SECONDS = 50  # the most get-job-result waits in one call (its schema says so; the setting may lower it)


def default_store_url() -> str:
    """SQLite in the user's data dir (XDG on Linux, the platform's equivalent elsewhere)."""
    return f"sqlite:///{user_data_dir() / 'vibe-jobs' / 'jobs.db'}"


def user_data_dir() -> Path:
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Application Support"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    return Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")


@dataclass(frozen=True, slots=True)
class Settings:
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    cleanup_interval_ms: int = 300_000
    max_retention_ms: int = 3_600_000
    store_url: str = "memory://"
    poll_base_ms: int = 1000
    poll_factor: float = 2.0
    poll_max_ms: int = 30_000
    max_params_bytes: int = MIB
    max_wait_ms: int = MAX_WAIT_SECONDS * 1000  # the cap of get-job-result's waitSeconds (it can only lower it)
    max_pending: int = 100_000
    lease_ms: int = 30_000  # a process's lease on the jobs it runs
    aging_ms: int = 60_000  # a waiting job gains one priority level per this much waiting
    log_level: str = "info"
    log_format: str = "auto"
    tools: tuple[str, ...] = ()
    program: str | None = None  # the program this process is (vibe_jobs.owners); None: its JobServer's name
    roots: str | None = None
    allowed_commands: str | None = None
    command_env: str | None = None
    queue: JobQueueConfig = field(default_factory=JobQueueConfig)
    # identity and scoping (i15-identity): HTTP authentication, allowed Host names, quotas per principal
    # (None: no quota), the names of arguments whose values are secrets (vibe_jobs.redact)
    auth_tokens: str | None = None
    auth_jwks: str | None = None
    auth_issuer: str | None = None
    auth_audience: str | None = None
    auth_jwks_refresh_ms: int = 300_000  # the JWKS's keys are fetched again this often (kept when a fetch fails)
    # after a fetch of the JWKS was tried, none other for this long (at most the refresh interval): a flood of
    # unknown key ids costs one fetch per period
    auth_jwks_retry_ms: int = 30_000
    allowed_hosts: tuple[str, ...] = ()
    quota_pending: int | None = None
    quota_running: int | None = None
    quota_params_bytes: int | None = None
    # schedules a principal may keep (None: no quota); on by default: each one fires jobs for as long as it
    # exists, and list-schedules and job-stats read all of a principal's schedules
    quota_schedules: int | None = 1000
    secret_pattern: str = DEFAULT_SECRET_PATTERN
    max_result_bytes: int = 4 * MIB  # a stored result's JSON at most; a larger one is cut (results.bounded_result)
    # one answer over HTTP at most: the MCP Python client reads server-sent events of up to 1 MiB by default, so
    # a larger result is shown in part there (results.within_answer); over stdio results are shown whole
    max_answer_bytes: int = MIB
    progress_keepalive_ms: int = 10_000  # a long-poll notifies progress at least this often
    question_timeout_ms: int = 3_600_000  # how long a job's question waits for an answer by default
    http_header_timeout_ms: int = 10_000  # an HTTP request's headers must be complete within this
    # stateful streamable-HTTP sessions open at once: for every caller (the SDK's limit), and (with authentication
    # on) for one principal, so that one cannot lock the others out (server/http/sessions.py)
    max_sessions: int = 10_000
    max_sessions_per_principal: int = 1000
    # a legacy-era streamable-HTTP session no request has used for this long is closed (the SDK's idle time-out)
    session_idle_ms: int = 1_800_000
    proxy_start_timeout_ms: int = 60_000  # a proxied upstream must answer `initialize` and list its tools within this
    # after a call on a proxied upstream ends, its log lines are no job's diagnostics for this long (a late line may
    # be the ended call's, perhaps another principal's)
    proxy_late_line_ms: int = 2_000
    # health (job-stats, /readyz): degraded past one threshold, unhealthy past two
    health_max_queue_depth: int = 1000
    health_max_error_rate: float = 0.5  # of the jobs finished in the last 5 minutes
    health_max_oldest_pending_ms: int = 300_000

    def __post_init__(self) -> None:
        """One concurrency limit, `max_concurrent` (JOB_MANAGER_MAX_CONCURRENT): a queue config that gives its own
        maxConcurrentJobs sets it while it is left at its default, and the queue config then states it too."""
        queue = self.queue
        if self.max_concurrent == DEFAULT_MAX_CONCURRENT and "max_concurrent_jobs" in queue.model_fields_set:
            object.__setattr__(self, "max_concurrent", queue.max_concurrent_jobs)
        elif queue.max_concurrent_jobs != self.max_concurrent:
            object.__setattr__(self, "queue", _stating(queue, self.max_concurrent))

    @property
    def authenticated(self) -> bool:
        """Whether HTTP callers need a token (a token file, or a JWT issuer): callers are then principals apart
        from the operator who configured this server."""
        return any((self.auth_tokens, self.auth_jwks, self.auth_issuer, self.auth_audience))

    @property
    def polling(self) -> PollingPolicy:
        return PollingPolicy(base_ms=self.poll_base_ms, factor=self.poll_factor, max_ms=self.poll_max_ms)

    def with_(self, **changes: Any) -> Settings:
        """These settings with `changes`; a new limit given one way is the other's too (one concurrency limit)."""
        queue = changes.get("queue")
        if "max_concurrent" in changes and queue is None:  # the queue config states the new limit
            changes["queue"] = _stating(self.queue, changes["max_concurrent"])
        elif queue is not None and "max_concurrent" not in changes and "max_concurrent_jobs" in queue.model_fields_set:
            changes["max_concurrent"] = queue.max_concurrent_jobs  # a new queue config's own limit is the limit
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the process environment)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {"store_url": default_store_url()}
        for var, (name, parse) in ENV_VARS.items():
            raw = env.get(var)
            if raw is not None and raw.strip() != "":
                values[name] = _parse(var, raw, parse)
        values["queue"] = _queue_config(env, values.get("max_concurrent"))
        values.setdefault("max_concurrent", values["queue"].max_concurrent_jobs)
        settings = cls(**values)
        if settings.poll_base_ms > settings.poll_max_ms:  # the first interval would pass the longest (a swap?)
            raise ConfigError(
                f"VIBE_JOBS_POLL_BASE_MS={settings.poll_base_ms} is more than VIBE_JOBS_POLL_MAX_MS="
                f"{settings.poll_max_ms}: the first polling interval cannot be longer than the longest"
            )
        return settings


def _stating(queue: JobQueueConfig, max_concurrent: int) -> JobQueueConfig:
    """`queue` stating `max_concurrent`, as a value it follows, not one it gives (Settings.__post_init__)."""
    copy = queue.model_copy(update={"max_concurrent_jobs": max_concurrent})
    copy.model_fields_set.discard("max_concurrent_jobs")
    return copy


def _parse(var: str, raw: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(raw.strip())
    except (ValueError, TypeError) as exc:  # the value shown with any URL's password masked (a mistyped store)
        raise ConfigError(f"{var}={redact_urls_in(raw)!r} is invalid: {exc}") from None


MAX_SECONDS = 10 * 365 * 24 * 3600  # past ten years a duration is a typo (and overflows the stores' integers)


def positive_int(raw: str, most: int = MAX_COUNT) -> int:
    """A count: a whole number from 1 to `most` (the rule of every count setting, and of the CLI's count flags)."""
    value = int(raw)
    if not 0 < value <= most:
        raise ValueError(f"must be a positive whole number, at most {most:,}")
    return value


def _positive_ms(raw: str) -> int:
    """Milliseconds (a whole number), at most ten years."""
    return positive_int(raw, MAX_SECONDS * 1000)


def _at_least(raw: str, low: int) -> int:
    value = int(raw)
    if not low <= value <= MAX_COUNT:
        raise ValueError(f"must be a whole number from {low:,} to {MAX_COUNT:,}")
    return value


def _fraction(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 1:
        raise ValueError("must be a fraction from 0 to 1 (0.25 is 25 %)")
    return value


def seconds(raw: str, *, zero: bool = False) -> float:
    """A number of seconds (fractions allowed): more than 0 (0 too when `zero`), at most ten years; nan and inf
    refused. The rule of every `*_SECONDS` setting and of the CLI's seconds flags."""
    value = float(raw)
    if not (value >= 0 if zero else value > 0) or not value <= MAX_SECONDS:
        low = "0" if zero else "more than 0"
        raise ValueError(f"must be a number of seconds from {low} to {MAX_SECONDS:,} (ten years)")
    return value


def _seconds_as_ms(raw: str) -> int:
    """`seconds`, as whole milliseconds."""
    ms = round(seconds(raw) * 1000)
    if ms < 1:
        raise ValueError("must be at least 0.001 (one millisecond)")
    return ms


def _wait_cap_ms(raw: str) -> int:
    """The cap of get-job-result's waitSeconds: at most MAX_WAIT_SECONDS, what its schema allows."""
    ms = _seconds_as_ms(raw)
    if ms > MAX_WAIT_SECONDS * 1000:
        raise ValueError(f"must be at most {MAX_WAIT_SECONDS} (get-job-result's waitSeconds allows no more)")
    return ms


def _factor(raw: str) -> float:
    value = float(raw)
    if not 1 <= value < math.inf:  # also refuses nan and inf
        raise ValueError("must be at least 1")
    return value


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return raw.lower()

    return parse


def _store_url(raw: str) -> str:
    if not raw.startswith(("memory://", "sqlite://", "postgresql://", "postgres://")):
        raise ValueError("must start with memory://, sqlite:/// or postgresql://")
    return raw


def split_names(raw: str | None) -> tuple[str, ...]:
    """The entries of a comma-separated list (a setting, a flag), stripped, empty ones dropped."""
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())


def host_names(raw: str) -> tuple[str, ...]:
    """Host names clients use (VIBE_JOBS_ALLOWED_HOSTS, --allowed-hosts), comma separated: a name or an address,
    with a port or not; a URL (`https://jobs.example/`) is refused, as it would never match a request's Host."""
    names = split_names(raw)
    for name in names:
        if any(char in name for char in "/@") or any(char.isspace() for char in name):
            raise ValueError(f"{name!r} is not a host name: give it as clients write Host (jobs.example, 10.0.0.5)")
    return names


ENV_VARS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "JOB_MANAGER_MAX_CONCURRENT": ("max_concurrent", positive_int),
    "JOB_MANAGER_CLEANUP_INTERVAL": ("cleanup_interval_ms", _positive_ms),
    "JOB_MANAGER_MAX_RETENTION": ("max_retention_ms", _positive_ms),
    "VIBE_JOBS_STORE": ("store_url", _store_url),
    "VIBE_JOBS_POLL_BASE_MS": ("poll_base_ms", positive_int),
    "VIBE_JOBS_POLL_FACTOR": ("poll_factor", _factor),
    "VIBE_JOBS_POLL_MAX_MS": ("poll_max_ms", positive_int),
    "VIBE_JOBS_MAX_PARAMS_BYTES": ("max_params_bytes", positive_int),
    "VIBE_JOBS_MAX_WAIT_SECONDS": ("max_wait_ms", _wait_cap_ms),
    "VIBE_JOBS_MAX_PENDING": ("max_pending", positive_int),
    "VIBE_JOBS_LEASE_SECONDS": ("lease_ms", _seconds_as_ms),
    "VIBE_JOBS_AGING_SECONDS": ("aging_ms", _seconds_as_ms),
    "VIBE_JOBS_LOG_LEVEL": ("log_level", _choice("debug", "info", "warning", "error", "critical")),
    "VIBE_JOBS_LOG_FORMAT": ("log_format", _choice("auto", "json", "console")),
    "VIBE_JOBS_TOOLS": ("tools", split_names),
    "VIBE_JOBS_PROGRAM": ("program", check_program),
    "VIBE_JOBS_ROOTS": ("roots", str),
    "VIBE_JOBS_ALLOWED_COMMANDS": ("allowed_commands", str),
    "VIBE_JOBS_COMMAND_ENV": ("command_env", str),
    "VIBE_JOBS_AUTH_TOKENS": ("auth_tokens", str),
    "VIBE_JOBS_AUTH_JWKS": ("auth_jwks", str),
    "VIBE_JOBS_AUTH_ISSUER": ("auth_issuer", str),
    "VIBE_JOBS_AUTH_AUDIENCE": ("auth_audience", str),
    "VIBE_JOBS_AUTH_JWKS_REFRESH_SECONDS": ("auth_jwks_refresh_ms", _seconds_as_ms),
    "VIBE_JOBS_AUTH_JWKS_RETRY_SECONDS": ("auth_jwks_retry_ms", _seconds_as_ms),
    "VIBE_JOBS_ALLOWED_HOSTS": ("allowed_hosts", host_names),
    "VIBE_JOBS_QUOTA_PENDING": ("quota_pending", positive_int),
    "VIBE_JOBS_QUOTA_RUNNING": ("quota_running", positive_int),
    "VIBE_JOBS_QUOTA_PARAMS_BYTES": ("quota_params_bytes", positive_int),
    "VIBE_JOBS_QUOTA_SCHEDULES": ("quota_schedules", positive_int),
    "VIBE_JOBS_SECRET_PATTERN": ("secret_pattern", check_pattern),
    "VIBE_JOBS_MAX_RESULT_BYTES": ("max_result_bytes", lambda raw: _at_least(raw, 4096)),
    "VIBE_JOBS_MAX_ANSWER_BYTES": ("max_answer_bytes", lambda raw: _at_least(raw, 65536)),
    "VIBE_JOBS_PROGRESS_KEEPALIVE_SECONDS": ("progress_keepalive_ms", _seconds_as_ms),
    "VIBE_JOBS_QUESTION_TIMEOUT_SECONDS": ("question_timeout_ms", _seconds_as_ms),
    "VIBE_JOBS_HTTP_HEADER_TIMEOUT_SECONDS": ("http_header_timeout_ms", _seconds_as_ms),
    "VIBE_JOBS_MAX_SESSIONS": ("max_sessions", positive_int),
    "VIBE_JOBS_MAX_SESSIONS_PER_PRINCIPAL": ("max_sessions_per_principal", positive_int),
    "VIBE_JOBS_SESSION_IDLE_SECONDS": ("session_idle_ms", _seconds_as_ms),
    "VIBE_JOBS_PROXY_START_TIMEOUT_SECONDS": ("proxy_start_timeout_ms", _seconds_as_ms),
    "VIBE_JOBS_PROXY_LATE_LINE_SECONDS": ("proxy_late_line_ms", _seconds_as_ms),
    "VIBE_JOBS_HEALTH_MAX_QUEUE_DEPTH": ("health_max_queue_depth", positive_int),
    "VIBE_JOBS_HEALTH_MAX_ERROR_RATE": ("health_max_error_rate", _fraction),
    "VIBE_JOBS_HEALTH_MAX_OLDEST_PENDING_SECONDS": ("health_max_oldest_pending_ms", _seconds_as_ms),
}

SETTING_NAMES = frozenset(f.name for f in fields(Settings))


def _queue_config(env: Mapping[str, str], max_concurrent: int | None) -> JobQueueConfig:
    """The JobQueueConfig from the VIBE_JOBS_CONFIG file (TOML or JSON), env overrides applied."""
    path = env.get("VIBE_JOBS_CONFIG", "").strip()
    data = _read_config_file(path) if path else {}
    if max_concurrent is not None:  # the environment's over the file's, in whichever spelling the file has it
        data.pop("max_concurrent_jobs", None)
        data["maxConcurrentJobs"] = max_concurrent
    try:
        return JobQueueConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"VIBE_JOBS_CONFIG ({path or 'defaults'}): {_first_error(exc)}") from None


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
        # JSON by its name, or by an object's text whatever the name (no TOML file starts with `{`)
        is_json = path.lower().endswith(".json") or text.lstrip().startswith("{")
        data = json.loads(text) if is_json else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"VIBE_JOBS_CONFIG={path!r} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"VIBE_JOBS_CONFIG={path!r} must hold a table/object")
    return data


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(part) for part in err["loc"])
    return f"key '{key}': {err['msg']} (got {err.get('input')!r})"

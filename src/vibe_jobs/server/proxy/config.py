"""Which upstream servers a proxy fronts: from the command line or from a config file in the Claude Desktop
`mcpServers` shape (JSON, or TOML with `[mcpServers.NAME]` tables), so a user can paste the entries they have.
"""

from __future__ import annotations

import json
import shlex
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vibe_jobs.redact import redact_url
from vibe_jobs.urls import check_server_url


class ConfigError(ValueError):
    """A proxy configuration that cannot be used (the message names the problem)."""


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    """One upstream: a command run over stdio, or a streamable-HTTP URL. `name` prefixes its tools (`NAME.`)
    when the proxy fronts several (empty: one upstream, tools keep their names)."""

    name: str = ""
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def prefixed(self, tool: str) -> str:
        return f"{self.name}.{tool}" if self.name else tool

    @property
    def label(self) -> str:
        """How logs, errors, diagnostics and tool descriptions name the upstream: a URL's password and
        secret-named query parameters shown as `***` (`--upstream-url https://u:pw@host/mcp?token=...`)."""
        return self.name or (redact_url(self.url) if self.url else self.command or "upstream")


def parse_header(text: str) -> tuple[str, str]:
    """`Name: value` -> (name, value). A header that is not is refused without being shown: it is often a
    credential (`--upstream-header 'Authorization Bearer TOKEN'`, its colon left out, was echoed whole)."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ConfigError(
            "an --upstream-header is not 'Name: value' (such as 'Authorization: Bearer TOKEN'); it is not shown"
            " here, as it may hold a secret"
        )
    return name.strip(), value.strip()


def parse_named(text: str) -> UpstreamSpec:
    """`NAME=COMMAND ARGS...` (the command split as a shell would)."""
    name, sep, command = text.partition("=")
    argv = shlex.split(command) if sep else []
    if not sep or not name or not argv:
        raise ConfigError(f"--upstream {text!r}: expected NAME=COMMAND [ARGS...]")
    _check_name(name, "--upstream")
    return UpstreamSpec(name=name, command=argv[0], args=tuple(argv[1:]))


def load_config(path: Path) -> list[UpstreamSpec]:
    """The upstreams of a `mcpServers` file (.toml, else JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"config {path}: {exc}") from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict) or not servers:
        raise ConfigError(f"config {path}: expected an object 'mcpServers' with one entry per server")
    return [_entry(path, name, entry) for name, entry in servers.items()]


def _entry(path: Path, name: str, entry: Any) -> UpstreamSpec:
    where = f"config {path}: mcpServers.{name}"
    _check_name(name, where)
    if not isinstance(entry, dict) or not (isinstance(entry.get("command"), str) or isinstance(entry.get("url"), str)):
        raise ConfigError(f"{where}: expected 'command' (with 'args', 'env') or 'url' (with 'headers')")
    if "command" in entry and "url" in entry:  # one of them would be ignored
        raise ConfigError(f"{where}: give 'command' or 'url', not both")
    args, env, headers = entry.get("args", []), entry.get("env", {}), entry.get("headers", {})
    cwd = entry.get("cwd")
    if not _strings(args) or not _string_map(env) or not _string_map(headers) or not isinstance(cwd, str | None):
        raise ConfigError(
            f"{where}: 'args' must be a list of strings, 'env' and 'headers' objects of strings, 'cwd' a string"
        )
    if isinstance(entry.get("url"), str):
        _check_url(entry["url"], f"{where}: url")
    return UpstreamSpec(
        name=name,
        command=entry.get("command"),
        args=tuple(args),
        env=env,
        cwd=cwd,
        url=entry.get("url"),
        headers=headers,
    )


def _check_url(url: str, given_as: str) -> None:
    try:
        check_server_url(url, given_as, "http(s)://HOST:PORT/PATH, the upstream's streamable-HTTP endpoint")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _check_name(name: str, where: str) -> None:
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"{where}: the name {name!r} may hold letters, digits, '-' and '_' only")


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def single(command: Sequence[str], url: str | None, headers: Sequence[str]) -> UpstreamSpec | None:
    """The one unnamed upstream of `-- COMMAND ARGS...` or `--upstream-url URL`, if either is given."""
    if command and url:
        raise ConfigError("give either -- COMMAND or --upstream-url, not both")
    if url:
        _check_url(url, "--upstream-url")
        return UpstreamSpec(url=url, headers=dict(parse_header(h) for h in headers))
    if headers:
        raise ConfigError("--upstream-header needs --upstream-url")
    return UpstreamSpec(command=command[0], args=tuple(command[1:])) if command else None

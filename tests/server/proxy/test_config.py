"""Which upstreams a proxy fronts: the command line's forms and the Claude Desktop `mcpServers` file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vibe_jobs.server.proxy.config import ConfigError, UpstreamSpec, load_config, parse_header, parse_named, single


def test_a_named_upstream_splits_its_command_as_a_shell_does() -> None:
    spec = parse_named("git=uvx mcp-server-git --repository '/tmp/my repo'")
    assert spec == UpstreamSpec(name="git", command="uvx", args=("mcp-server-git", "--repository", "/tmp/my repo"))
    assert spec.prefixed("git_status") == "git.git_status"


@pytest.mark.parametrize("text", ["git", "=uvx x", "git=", "g.it=uvx", "g it=x"])
def test_a_malformed_named_upstream_is_refused_naming_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match="--upstream"):
        parse_named(text)


def test_headers_are_name_colon_value() -> None:
    assert parse_header("Authorization: Bearer abc:def") == ("Authorization", "Bearer abc:def")
    with pytest.raises(ConfigError, match="is not 'Name: value'"):
        parse_header("Authorization Bearer")


def test_one_unnamed_upstream_keeps_tool_names() -> None:
    spec = single(["node", "server.js", "stdio"], None, [])
    assert spec is not None and spec.prefixed("echo") == "echo" and spec.args == ("server.js", "stdio")
    http = single([], "http://h/mcp", ["X-Key: 1"])
    assert http is not None and http.url == "http://h/mcp" and dict(http.headers) == {"X-Key": "1"}


def test_a_command_and_a_url_together_or_headers_without_a_url_are_refused() -> None:
    with pytest.raises(ConfigError, match="not both"):
        single(["x"], "http://h/mcp", [])
    with pytest.raises(ConfigError, match="needs --upstream-url"):
        single(["x"], None, ["A: b"])


def test_a_claude_desktop_json_file(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    servers = {
        "git": {"command": "uvx", "args": ["mcp-server-git"], "env": {"GIT_DIR": "/x"}},
        "remote": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer t"}},
    }
    path.write_text(json.dumps({"mcpServers": servers}))
    git, remote = load_config(path)
    assert (git.name, git.command, git.args, dict(git.env)) == ("git", "uvx", ("mcp-server-git",), {"GIT_DIR": "/x"})
    assert (remote.url, dict(remote.headers)) == ("https://example.com/mcp", {"Authorization": "Bearer t"})


def test_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "servers.toml"
    path.write_text('[mcpServers.time]\ncommand = "uvx"\nargs = ["mcp-server-time"]\n')
    assert load_config(path) == [UpstreamSpec(name="time", command="uvx", args=("mcp-server-time",))]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{}", "expected an object 'mcpServers'"),
        ('{"mcpServers": {"a": {"args": []}}}', "mcpServers.a: expected 'command'"),
        ('{"mcpServers": {"a": {"command": "x", "args": "y"}}}', "'args' must be a list of strings"),
        ("{not json", "config"),
        ('{"mcpServers": {"a": {"command": "x", "cwd": 5}}}', "'cwd' a string"),
        (
            '{"mcpServers": {"a": {"command": "x", "url": "http://h/mcp"}}}',
            "mcpServers.a: give 'command' or 'url', not",
        ),
    ],
)
def test_a_bad_file_is_refused_naming_the_problem(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "servers.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=problem):
        load_config(path)

"""`serve --help` (and `worker --help`) say which built-in tools there are and what enables each: they named
neither the tools nor the variables that set them up (review helper-59 F8)."""

from __future__ import annotations

import argparse

import pytest

from vibe_jobs.cli.main import build_parser


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_the_help_names_the_built_in_tools_and_their_variables(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, "--help"])
    shown = capsys.readouterr().out
    assert done.value.code == 0
    assert "map-codebase  always registered" in shown
    assert "run-command   registered only when VIBE_JOBS_ALLOWED_COMMANDS names programs" in shown
    assert "VIBE_JOBS_ROOTS" in shown and "(default: the directory the server starts in)" in shown
    assert "VIBE_JOBS_COMMAND_ENV" in shown
    assert "do not register the built-in tools (map-codebase," in " ".join(shown.split())  # --no-builtin


@pytest.mark.parametrize(
    ("command", "defaults"),
    [
        (["serve"], ["default stdio", "(default 127.0.0.1)", "(default 8000)", "env VIBE_JOBS_TOOLS"]),
        (["proxy"], ["default stdio", "(default 8000)"]),
        (["worker"], ["(default 30)", "env VIBE_JOBS_TOOLS"]),
        (["dashboard"], ["(default 127.0.0.1)", "default 8080"]),
    ],
)
def test_the_help_shows_the_defaults_of_the_options(
    command: list[str], defaults: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`--help` said nothing of what --transport, --host, --port or --drain-seconds are when not given."""
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for default in defaults:
        assert default in shown


def test_the_proxy_usage_names_every_way_to_give_an_upstream(capsys: pytest.CaptureFixture[str]) -> None:
    """The usage line showed `-- COMMAND [ARGS...]` only; the README's `--upstream-url`, `--upstream NAME=...` and
    `--config FILE` forms (and the error for none) need no command."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["proxy", "--help"])
    usage = capsys.readouterr().out.split("\n\n", 1)[0]
    for form in ("-- COMMAND [ARGS...]", "--upstream-url URL", "--upstream NAME=COMMAND", "--config FILE"):
        assert form in usage, usage


def test_every_option_and_argument_of_every_command_says_what_it_is() -> None:
    """`jobs list --help` listed `--status` and `--tool NAME` with no word; `jobs cancel`, `jobs show`, the
    `schedules` commands and `call` their positional ID / TOOL likewise."""
    silent: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif not action.help and not isinstance(action, argparse._HelpAction):
                silent.append(" ".join([*path, action.option_strings[0] if action.option_strings else action.dest]))

    walk(build_parser(), ["vibe-jobs"])
    assert not silent, silent

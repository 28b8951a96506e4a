"""`serve --help` (and `worker --help`) say which built-in tools there are and what enables each: they named
neither the tools nor the variables that set them up (review helper-59 F8)."""

from __future__ import annotations

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

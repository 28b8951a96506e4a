"""The launcher that ties a stdio upstream's life to the proxy's (the proxy's death is tested end to end in
tests/e2e/test_proxy_features_e2e.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vibe_jobs.server.proxy.tether import tether

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")


def test_a_command_that_is_not_found_is_refused_by_its_name_as_a_direct_start_would_be(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "")}
    for command in ("no-such-upstream-command", "/no/such/server", "./server"):
        with pytest.raises(FileNotFoundError) as refused:
            tether(command, [], env, str(tmp_path))
        assert refused.value.filename == command
    script = tmp_path / "server"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(PermissionError):  # not executable
        tether("./server", [], env, str(tmp_path))
    script.chmod(0o755)
    assert tether("./server", ["a"], env, str(tmp_path))[1][-2:] == ["./server", "a"]  # found from its cwd


def test_the_launcher_runs_the_command_with_its_arguments_and_environment_on_the_path_it_is_given() -> None:
    env = {"PATH": os.path.dirname(sys.executable), "SEEN": "yes"}
    command, args = tether(
        os.path.basename(sys.executable), ["-c", "import os, sys; print(sys.argv[1:], os.environ['SEEN'])", "a b"], env
    )
    done = subprocess.run([command, *args], env=env, capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.strip() == "['a b'] yes"

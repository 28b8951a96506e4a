"""The launcher that ties a stdio upstream's life to the proxy's (the proxy's death is tested end to end in
tests/e2e/test_proxy_features_e2e.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vibe_jobs.server.proxy.tether import tether

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")


def test_a_command_that_is_not_found_is_refused_by_its_name_as_a_direct_start_would_be() -> None:
    with pytest.raises(FileNotFoundError) as refused:
        tether("no-such-upstream-command", [], {"PATH": os.environ.get("PATH", "")})
    assert refused.value.filename == "no-such-upstream-command"


def test_the_launcher_runs_the_command_with_its_arguments_and_environment_on_the_path_it_is_given() -> None:
    env = {"PATH": os.path.dirname(sys.executable), "SEEN": "yes"}
    command, args = tether(
        os.path.basename(sys.executable), ["-c", "import os, sys; print(sys.argv[1:], os.environ['SEEN'])", "a b"], env
    )
    done = subprocess.run([command, *args], env=env, capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.strip() == "['a b'] yes"

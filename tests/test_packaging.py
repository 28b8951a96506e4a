"""What a user gets from `pip install vibe-jobs`: the wheel built from this tree, installed into a fresh virtualenv
(not the editable install the other tests use), runs the server and serves the dashboard's files.

The build printed a deprecation of `project.license` as a table ("By 2027-Feb-18 ... your builds will no longer be
supported": every fresh `make test` would then fail to install); `vibe-jobs --version` was refused ("the following
arguments are required: command"); the version was written in two places. Slow: it builds and installs (PyPI)."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from vibe_jobs import __version__

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "vibe_jobs"


def _tracked_data_files() -> set[str]:
    """The package's files that are not Python source, as the wheel names them (vibe_jobs/...)."""
    listed = subprocess.run(
        ["git", "ls-files", "src/vibe_jobs"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {name.removeprefix("src/") for name in listed if not name.endswith(".py")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    return next(out.glob("vibe_jobs-*.whl")), built.stdout + built.stderr


def test_the_wheel_builds_without_deprecations_and_holds_every_file_the_package_needs(wheel: tuple[Path, str]) -> None:
    path, said = wheel
    assert "deprecated" not in said.lower(), said
    assert path.name == f"vibe_jobs-{__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(path).namelist())
    missing = _tracked_data_files() - names
    assert not missing, f"files the package reads at run time are not in the wheel: {sorted(missing)}"
    assert "vibe_jobs/py.typed" in names
    metadata = zipfile.ZipFile(path).read(f"vibe_jobs-{__version__}.dist-info/METADATA").decode()
    assert "License-Expression: MIT" in metadata
    assert f"vibe_jobs-{__version__}.dist-info/licenses/LICENSE" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]


@pytest.fixture(scope="module")
def installed(wheel: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The `vibe-jobs` program of a fresh virtualenv that has the wheel (and its dependencies) installed."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True).create(env_dir)
    done = subprocess.run(
        [str(env_dir / "bin" / "pip"), "install", "--quiet", str(wheel[0])], capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr
    return str(env_dir / "bin" / "vibe-jobs")


def test_the_installed_program_tells_its_version(installed: str) -> None:
    shown = subprocess.run([installed, "--version"], capture_output=True, text=True, timeout=60)
    assert (shown.returncode, shown.stdout.strip()) == (0, f"vibe-jobs {__version__}")


async def test_the_installed_wheel_runs_the_server(installed: str, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    params = StdioServerParameters(
        command=installed, args=["serve", "--store", store], env={"PATH": os.environ["PATH"]}, cwd=str(tmp_path)
    )
    (tmp_path / "a.py").write_text("def f():\n    return 1\n")
    with (tmp_path / "stderr").open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=60) as client:
            assert client.server_info is not None and client.server_info.version == __version__
            started = await client.call_tool("map-codebase", {"path": "."})
            job_id = (started.structured_content or {})["jobId"]
            done = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 30})
            assert (done.structured_content or {})["status"] == "completed", done

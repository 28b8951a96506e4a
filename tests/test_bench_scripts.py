"""Every benchmark script a user runs by hand answers `--help` with its usage and does nothing else.

`bench/core.py --help` stopped on a ValueError traceback, `bench/peers.py --help` began creating the peers'
virtualenv (pip installs from PyPI) and `bench/codemap.py --help` ran the whole benchmark.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if 'if __name__ == "__main__":' in p.read_text())


def test_the_scripts_are_found() -> None:
    assert {"core.py", "store.py", "suite.py", "peers.py", "codemap.py"} <= set(SCRIPTS)


# what another test makes in the checkout meanwhile (tests/test_packaging.py builds the wheel there, in another
# pytest worker): not the script's
OTHERS = {"build"}


def made_in_checkout() -> set[str]:
    return {p.name for p in BENCH.parent.iterdir()} - OTHERS


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_bench_script_answers_help_with_its_usage_and_runs_nothing(script: str, tmp_path: Path) -> None:
    before = made_in_checkout()
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:"), done.stdout[:500]
    assert made_in_checkout() == before, "--help created something"
    assert list(tmp_path.iterdir()) == []

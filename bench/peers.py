"""The peers' virtualenv: /work/main/.bench-venv, created on first use, never the project's own.

`ensure()` creates it with `python3 -m venv` and pip-installs the peer systems when they are missing;
`run_peer(script, *args)` runs bench/peers/<script> in it and returns the JSON object it prints last.

Run: .venv/bin/python bench/peers.py   (creates or checks the venv and prints the installed versions)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".bench-venv"
PEERS_DIR = Path(__file__).resolve().parent / "peers"
PACKAGES = ["saq[redis]", "arq", "procrastinate[psycopg]", "fastmcp[tasks]>=4,<5", "redis", "psycopg[binary]"]
MODULES = ["saq", "arq", "procrastinate", "fastmcp", "fastmcp_tasks", "redis", "psycopg"]
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def python() -> Path:
    return VENV / "bin" / "python"


def _base_python() -> str:
    """A python3 that is not the project's venv (sys.executable may be .venv/bin/python)."""
    return getattr(sys, "_base_executable", None) or shutil.which("python3") or "python3"


def _missing() -> list[str]:
    probe = "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] if not importlib.util.find_spec(m)))"
    out = subprocess.run([str(python()), "-c", probe, *MODULES], capture_output=True, text=True, check=True)
    return out.stdout.split()


def ensure(log: bool = True) -> Path:
    """Create the peers' venv and install what is missing; return its python."""
    if not python().exists():
        if log:
            print(f"bench: creating {VENV}", file=sys.stderr, flush=True)
        subprocess.run([_base_python(), "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python()), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    missing = _missing()
    if missing:
        if log:
            print(f"bench: installing peers into {VENV} ({', '.join(missing)} missing)", file=sys.stderr, flush=True)
        subprocess.run([str(python()), "-m", "pip", "install", "--quiet", *PACKAGES], check=True)
    return python()


def versions() -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json\n"
        "names = ['saq', 'arq', 'procrastinate', 'fastmcp', 'redis', 'psycopg', 'mcp']\n"
        "out = {}\n"
        "for n in names:\n"
        "    try:\n        out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError:\n        pass\n"
        "print(json.dumps(out))"
    )
    out = subprocess.run([str(python()), "-c", code], capture_output=True, text=True, check=True)
    result: dict[str, str] = json.loads(out.stdout)
    return result


def last_json(stdout: str) -> dict[str, Any]:
    """The last line of `stdout` that is a JSON object (scripts may log before it)."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            value: dict[str, Any] = json.loads(line)
            return value
    raise ValueError(f"no JSON object in output: {stdout[-500:]!r}")


def run_json(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `cmd`, return the JSON object it printed last; raise with its stderr when it fails."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=str(ROOT))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    return last_json(proc.stdout)


def run_peer(script: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    """Run bench/peers/<script> in the peers' venv (PYTHONPATH cleared, so the project is not importable)."""
    env = {"PYTHONPATH": "", "REDIS_URL": REDIS_URL, "POSTGRES_URL": POSTGRES_URL}
    return run_json([str(python()), str(PEERS_DIR / script), *args], timeout, env)


if __name__ == "__main__":
    ensure()
    print(json.dumps(versions(), indent=2))

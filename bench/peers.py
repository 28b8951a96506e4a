"""The peers' virtualenv (.bench-venv at the project root), created on first use, never the project's own.

`ensure()` creates it with `python3 -m venv` and pip-installs the peer systems when they are missing;
`run_peer(script, *args)` runs bench/peers/<script> in it and returns the JSON object it prints last.
A peer run has its own time-out (PEER_TIMEOUT, cut to the figure's deadline) and its own tag
(VIBE_JOBS_BENCH_TAG, `vjb_<run>_<pid>_<n>`: its schema, session name and Redis keys). When it times out, its
process group is killed, its sessions, schema and keys are removed (bench/peers/cleanup.py) and `PeerTimedOut`
is raised: the figure prints its own figures with that peer marked "timed out".

Run: .venv/bin/python bench/peers.py   (creates or checks the venv and prints the installed versions)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import procs

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".bench-venv"
PEERS_DIR = Path(__file__).resolve().parent / "peers"
PACKAGES = ["saq[redis]", "arq", "procrastinate[psycopg]", "fastmcp[tasks]>=4,<5", "redis", "psycopg[binary]"]
MODULES = ["saq", "arq", "procrastinate", "fastmcp", "fastmcp_tasks", "redis", "psycopg"]
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
PEER_TIMEOUT = 90.0  # seconds for one peer run; a figure has 150-600 s
MIN_PEER_SECONDS = 30.0  # with less left before the figure's deadline, a peer is not started
_TAGS = itertools.count(1)


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
    """Run `cmd` (procs.run), return the JSON object it printed last; raise with its stderr when it fails."""
    done = procs.run(cmd, timeout, env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:3])} exited {done.returncode}: {done.stderr.strip()[-1500:]}")
    return last_json(done.stdout)


class PeerSkipped(Exception):
    """Too little time was left before the figure's deadline to start a peer run."""


class PeerTimedOut(Exception):
    """A peer run did not finish within its time-out; it was killed and what it left was removed."""

    def __init__(self, what: str, seconds: float, cleaned: dict[str, Any]) -> None:
        super().__init__(f"{what} timed out after {seconds:.0f} s; {describe(cleaned)}")
        self.what, self.seconds, self.cleaned = what, seconds, cleaned


def describe(found: dict[str, Any]) -> str:
    sessions, schemas, keys = found.get("sessions", []), found.get("schemas", []), found.get("redis_keys", 0)
    return f"{len(sessions)} session(s), {len(schemas)} schema(s), {keys} Redis key(s) removed"


def new_tag() -> str:
    return f"vjb_{procs.run_id()}_{os.getpid()}_{next(_TAGS):03d}"


def cleanup(action: str, prefix: str) -> dict[str, Any]:
    """bench/peers/cleanup.py `action` (check or clean) for the tag prefix; {"error": ...} when it could not run."""
    cmd = [str(python()), str(PEERS_DIR / "cleanup.py"), action, prefix]
    try:
        return run_json(cmd, 60, _peer_env(prefix))
    except (RuntimeError, ValueError, procs.TimedOut) as exc:
        print(f"bench: cleanup {action} {prefix} failed: {exc}", file=sys.stderr, flush=True)
        return {"error": str(exc)}


def _peer_env(tag: str, seconds: float = 0) -> dict[str, str]:
    dump_after = f"{max(1.0, seconds - 3):.0f}" if seconds else ""
    return {"PYTHONPATH": "", "REDIS_URL": REDIS_URL, "POSTGRES_URL": POSTGRES_URL, "VIBE_JOBS_BENCH_TAG": tag,
            "VIBE_JOBS_BENCH_DUMP_AFTER": dump_after}  # fmt: skip


def save_dump(tag: str, stderr: str) -> Path:
    """Keep what a killed peer wrote (its stack dump among it) in bench/results/peer-timeouts/<tag>.txt."""
    path = ROOT / "bench" / "results" / "peer-timeouts" / f"{tag}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(stderr)
    return path


def run_peer(script: str, *args: str, timeout: float = PEER_TIMEOUT) -> dict[str, Any]:
    """Run bench/peers/<script> in the peers' venv (PYTHONPATH cleared, so the project is not importable)."""
    tag, seconds = new_tag(), procs.budget(timeout)
    what = " ".join([script.removesuffix(".py"), *[a for a in args[:1] if not a.startswith("-")]])
    if seconds < min(timeout, MIN_PEER_SECONDS):  # the deadline, not the caller, left too little
        raise PeerSkipped(f"{what} not run: {max(0.0, seconds):.0f} s left before the figure's deadline")
    try:
        return run_json([str(python()), str(PEERS_DIR / script), *args], seconds, _peer_env(tag, seconds))
    except procs.TimedOut as exc:
        cleaned, dump = cleanup("clean", tag), save_dump(tag, exc.tail)
        print(f"bench: peer {what} timed out after {seconds:.0f} s: process tree killed; {describe(cleaned)}; "
              f"where it waited: {dump.relative_to(ROOT)}", file=sys.stderr, flush=True)  # fmt: skip
        raise PeerTimedOut(what, seconds, cleaned) from None
    except BaseException:  # failed, or interrupted: what the run held goes too
        cleanup("clean", tag)
        raise


STATUS = {PeerTimedOut: "timed out", PeerSkipped: "not run (figure out of time)"}


@dataclass
class PeerSeries:
    """One peer's result round by round (None for a round it did not finish). Once it timed out or failed it
    is not run again: a stuck peer costs one time-out, and the figure keeps its vibe-jobs rounds."""

    rounds: list[dict[str, Any] | None] = field(default_factory=list)
    status: str = ""
    error: str = ""

    def run(self, script: str, *args: str, timeout: float = PEER_TIMEOUT) -> None:
        if self.status:
            self.rounds.append(None)
            return
        try:
            self.rounds.append(run_peer(script, *args, timeout=timeout))
        except (PeerTimedOut, PeerSkipped, RuntimeError, ValueError) as exc:
            self.status = STATUS.get(type(exc), "failed")
            self.error = str(exc)[-300:]
            self.rounds.append(None)

    def values(self, key: str) -> list[float | None]:
        return [None if r is None else float(r[key]) for r in self.rounds]

    def note(self, name: str) -> str:
        return f"{name} {self.status}: {self.error}" if self.status else ""


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    ensure()
    print(json.dumps(versions(), indent=2))

"""The history of a fault run: a directory of files the harness writes and the checker reads.

    history.jsonl   one JSON object a line: {"t": epoch s, "process": who saw it, "kind": what,
                    "job": job id or null, "values": {...}}; the first line is the run's `meta`
    exec.log        the job tools' start/end lines (see fault_tools.py)
    audit.jsonl     every state change the store committed (see audit.py)
    jobs.jsonl      the job table at the end of the run
    *.stderr        each process's log

Kinds written by the clients: submit-invoke, submit-ok, submit-info (no answer: the job may or may
not exist), read, read-info, cancel-invoke, cancel-ok, cancel-info. By the nemesis and the harness:
proc-start, proc-exit (a process ended without being killed), fault-start, fault-end, pg-down, pg-up,
meta, end.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HISTORY = "history.jsonl"
EXEC_LOG = "exec.log"
AUDIT = "audit.jsonl"
JOBS = "jobs.jsonl"
FINAL = ("completed", "failed", "cancelled")  # a job's final statuses, as the store and the wire spell them
# How an attempt's token appears in what it writes (progress message, result, error text).
TOKEN = re.compile(r"tok:([0-9a-f]{16})")


def tokens_in(text: str | None) -> list[str]:
    return TOKEN.findall(text) if text else []


def token_of(text: str | None) -> str | None:
    """The (first) attempt token in `text`, or None."""
    found = tokens_in(text)
    return found[0] if found else None


class HistoryWriter:
    """Appends events (thread-safe: the proxy thread writes too); each line flushed as written."""

    def __init__(self, path: Path) -> None:
        self._f = path.open("a", buffering=1)
        self._lock = threading.Lock()

    def emit(self, process: str, kind: str, job: str | None = None, **values: Any) -> float:
        t = time.time()
        line = json.dumps({"t": t, "process": process, "kind": kind, "job": job, "values": values})
        with self._lock:
            self._f.write(line + "\n")
        return t

    def close(self) -> None:
        with self._lock:
            self._f.close()


@dataclass(frozen=True, slots=True)
class Event:
    t: float
    process: str
    kind: str
    job: str | None
    values: dict[str, Any]


@dataclass(slots=True)
class Attempt:
    """One run of a job tool, from the execution log (end None: no end line came)."""

    job: str
    attempt: int
    pid: int
    start: float
    token: str
    end: float | None = None
    how: str | None = None


@dataclass(slots=True)
class Run:
    """Everything a fault run left behind."""

    meta: dict[str, Any]
    events: list[Event]
    attempts: list[Attempt]
    audit: list[dict[str, Any]]
    jobs: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)  # what could not be read (a torn last line)


def _json_lines(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if not path.exists():
        notes.append(f"{path.name} is missing")
        return rows
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except ValueError:
            notes.append(f"{path.name}:{n} is not JSON: {line[:80]!r}")
    return rows


def parse_exec_log(text: str, notes: list[str]) -> list[Attempt]:
    """Attempts in start order; an end line is matched to its start by (job, attempt, token)."""
    attempts: list[Attempt] = []
    open_: dict[str, Attempt] = {}
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if len(parts) >= 6 and parts[0] == "start":
            a = Attempt(parts[1], int(parts[2]), int(parts[3]), int(parts[4]) / 1e9, parts[5])
            attempts.append(a)
            open_[a.token] = a
        elif len(parts) >= 7 and parts[0] == "end" and parts[5] in open_:
            a = open_.pop(parts[5])
            a.end, a.how = int(parts[4]) / 1e9, parts[6]
        else:
            notes.append(f"{EXEC_LOG}:{n} unreadable: {line[:80]!r}")
    return attempts


def load(directory: Path) -> Run:
    notes: list[str] = []
    raw = _json_lines(directory / HISTORY, notes)
    events = [Event(r["t"], r["process"], r["kind"], r.get("job"), r.get("values") or {}) for r in raw]
    meta = next((e.values for e in events if e.kind == "meta"), {})
    log = directory / EXEC_LOG
    attempts = parse_exec_log(log.read_text(), notes) if log.exists() else []
    audit = _json_lines(directory / AUDIT, notes)
    jobs = {row["id"]: row for row in _json_lines(directory / JOBS, notes)}
    return Run(meta, events, attempts, audit, jobs, notes)

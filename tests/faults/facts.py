"""What the checker derives from a run's files before judging it (see history.py for the files).

- `claims`: every time the store put an attempt of a job into `running` and when it took it out
  (from the audit: a claim, then a finish, a requeue, or a takeover by recovery).
- `faults`: each fault the nemesis injected, from its start to its end (heal); a kill is healed when
  the replacement process is up, but its victim never comes back.
- `kill_time[pid]`: when a process was SIGKILLed (its attempts without an end line end then).
- `outages`: when nothing could recover a lost job: PostgreSQL down, or (one server) no server up.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tests.faults.history import FINAL, Attempt, Event, Run

__all__ = ["FINAL", "ORPHANING", "Claim", "Facts", "Fault", "derive"]
FAULT_KINDS = ("kill-worker", "kill-replica", "stop-worker", "cut-worker", "restart-pg", "kill-server", "kill-store")
# faults after which a process's jobs must be taken over by another (the process holds them but cannot run them)
ORPHANING = ("kill-worker", "stop-worker", "cut-worker", "kill-server")


@dataclass(slots=True)
class Claim:
    """An attempt of a job as the store saw it: running under `owner` from `start` to `end` (inf: never left)."""

    job: str
    attempt: int
    owner: str
    start: float
    end: float = math.inf
    end_status: str | None = None

    @property
    def pid(self) -> int:
        return owner_pid(self.owner)


@dataclass(slots=True)
class Fault:
    id: int
    kind: str
    target: str
    pid: int  # the process it hit (0 for PostgreSQL)
    start: float
    end: float = math.inf  # healed (for a kill: the replacement is up)
    new_pid: int = 0  # a kill's replacement
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def victim_back(self) -> float:
        """When the process it hit could run its jobs again: never, after a kill."""
        return math.inf if self.kind.startswith("kill") else self.end


def owner_pid(owner: str | None) -> int:
    """The pid in a store owner id (`host:pid:random`), 0 when it has none."""
    parts = (owner or "").split(":")
    return int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else 0


def _us(row: dict[str, Any]) -> float:
    return float(row["at_us"]) / 1e6


@dataclass
class Facts:
    run: Run
    meta: dict[str, Any]
    lease: float
    slack: float
    limit: int
    end_of_run: float
    claims: dict[str, list[Claim]]
    faults: list[Fault]
    kill_time: dict[int, float]
    outages: list[tuple[float, float]]
    attempts: dict[str, list[Attempt]]
    acked: dict[str, Event]  # job id -> its submit-ok
    invoked: dict[str, Event]  # tag -> submit-invoke
    first_final_at: dict[str, float]  # job id -> when the store first made it final

    @property
    def t0(self) -> float:
        """When the run began (its first event): times in messages are seconds from here."""
        return self.run.events[0].t if self.run.events else 0.0

    def at(self, t: float) -> str:
        return f"+{t - self.t0:.3f} s"

    @property
    def flavour(self) -> str:
        return str(self.meta.get("flavour", "cluster"))

    def token_attempt(self) -> dict[str, Attempt]:
        return {a.token: a for rs in self.attempts.values() for a in rs}

    def deadline(self, start: float, allowed: float) -> float:
        """`start + allowed`, pushed back by every outage overlapping the window (nothing could act then)."""
        end = start + allowed
        while True:
            lost = sum(max(0.0, min(b, end) - max(a, start)) for a, b in self.outages)
            if start + allowed + lost <= end + 1e-9:
                return end
            end = start + allowed + lost


def claims_from_audit(audit: list[dict[str, Any]]) -> tuple[dict[str, list[Claim]], dict[str, float]]:
    claims: dict[str, list[Claim]] = defaultdict(list)
    first_final: dict[str, float] = {}
    for row in sorted(audit, key=lambda r: (r["at_us"], r["seq"])):
        job, t, new = row["id"], _us(row), row["new_status"]
        was_running = row["op"] == "update" and row["old_status"] == "running"
        same = was_running and new == "running" and (row["old_attempt"], row["old_owner"]) == (
            row["new_attempt"], row["new_owner"],
        )  # fmt: skip
        if was_running and not same and claims[job] and claims[job][-1].end == math.inf:
            claims[job][-1].end, claims[job][-1].end_status = t, new
        if new == "running" and not same:
            claims[job].append(Claim(job, int(row["new_attempt"]), str(row["new_owner"]), t))
        if new in FINAL and job not in first_final:
            first_final[job] = t
    return dict(claims), first_final


def faults_from_events(events: list[Event]) -> list[Fault]:
    faults: dict[int, Fault] = {}
    for e in events:
        v = e.values
        if e.kind == "fault-start":
            faults[v["fault"]] = Fault(v["fault"], v["what"], v.get("target", ""), int(v.get("pid", 0)), e.t, values=v)
        elif e.kind == "fault-end" and v["fault"] in faults:
            f = faults[v["fault"]]
            f.end, f.new_pid = e.t, int(v.get("new_pid", 0))
    return sorted(faults.values(), key=lambda f: f.start)


def outages_of(faults: list[Fault], flavour: str) -> list[tuple[float, float]]:
    """PostgreSQL restarts; with one server, also the time from its kill until its replacement is up."""
    kinds = ("restart-pg", "kill-server") if flavour == "sqlite" else ("restart-pg",)
    return [(f.start, f.end) for f in faults if f.kind in kinds]


def derive(run: Run) -> Facts:
    meta = run.meta
    claims, first_final = claims_from_audit(run.audit)
    faults = faults_from_events(run.events)
    by_job: dict[str, list[Attempt]] = defaultdict(list)
    for a in run.attempts:
        by_job[a.job].append(a)
    end = next((e.t for e in run.events if e.kind == "end"), max((e.t for e in run.events), default=0.0))
    kill_time = {f.pid: f.start for f in faults if f.kind.startswith("kill")}
    acked = {e.job: e for e in run.events if e.kind == "submit-ok" and e.job}
    invoked = {e.values["tag"]: e for e in run.events if e.kind == "submit-invoke"}
    lease = float(meta.get("lease", 2.0))
    return Facts(
        run, meta, lease, float(meta.get("slack", max(3.0, lease))), int(meta.get("limit", 0)), end, claims,
        faults, kill_time, outages_of(faults, str(meta.get("flavour", "cluster"))), dict(by_job), acked, invoked,
        first_final,
    )  # fmt: skip

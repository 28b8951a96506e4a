"""The checker's table: jobs, faults injected by kind with recovery times, violations by kind.

Recovery times, per fault (p50 / max over the faults of a kind; `-` when none could be measured):
  takeover  from the fault to the moment the store had taken away (requeued or failed) the last job the
            faulted process held when the fault began (faults that leave jobs with a process that
            cannot run them: kill-worker, stop-worker, cut-worker, kill-server). For a pause or a cut,
            only jobs taken away before the process came back count (the rest it finished itself).
  recovery  from the heal (replacement process up, SIGCONT, proxy open again, PostgreSQL started) to the
            first sign the healed part works: the first job claimed by that worker or server process,
            the first client call answered through the restarted replica, and after a PostgreSQL
            restart the first job any process completed.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable

from tests.faults.check import KINDS, Violation, startup_exit
from tests.faults.facts import FAULT_KINDS, FINAL, ORPHANING, Facts, Fault

CLIENT_OK = ("submit-ok", "read", "cancel-ok")


def takeover(f: Facts, fault: Fault) -> float | None:
    if fault.kind not in ORPHANING:
        return None
    ends = [
        c.end for cs in f.claims.values() for c in cs
        if c.pid == fault.pid and c.start <= fault.start < c.end and c.end < fault.victim_back
    ]  # fmt: skip
    return max(ends) - fault.start if ends else None


def recovery(f: Facts, fault: Fault) -> float | None:
    if fault.end == math.inf:
        return None
    if fault.kind == "kill-replica":
        prefix = f"{fault.target}/"
        times = [e.t for e in f.run.events if e.kind in CLIENT_OK and e.process.startswith(prefix) and e.t >= fault.end]
    elif fault.kind == "restart-pg":
        times = [c.end for cs in f.claims.values() for c in cs if c.end_status == "completed" and c.end >= fault.end]
    else:
        pid = int(fault.values.get("server_pid", 0)) or fault.new_pid or fault.pid  # kill-store: its server's
        times = [c.start for cs in f.claims.values() for c in cs if c.pid == pid and c.start >= fault.end]
    return min(times) - fault.end if times else None


def _p50_max(values: Iterable[float | None]) -> str:
    got = sorted(v for v in values if v is not None)
    return f"{statistics.median(got):.2f} / {got[-1]:.2f}" if got else "-"


def _jobs_lines(f: Facts) -> list[str]:
    tags = {e.values.get("tag") for e in f.run.events if e.kind == "submit-info"}
    found = {str((row.get("params") or {}).get("tag")) for row in f.run.jobs.values()} & tags
    statuses = Counter(row["status"] if row["status"] in FINAL else "not final" for row in f.run.jobs.values())
    attempts = sum(len(rs) for rs in f.attempts.values())
    reruns = sum(1 for rs in f.attempts.values() if len(rs) > 1)
    reads = sum(1 for e in f.run.events if e.kind == "read")
    cancels = sum(1 for e in f.run.events if e.kind == "cancel-ok")
    startups = sum(1 for e in f.run.events if e.kind == "proc-exit" and startup_exit(e))
    by_status = "  ".join(f"{s} {statuses.get(s, 0)}" for s in (*FINAL, "not final"))
    return [
        f"jobs submitted {len(f.invoked)}: acknowledged {len(f.acked)}, no answer {len(tags)} "
        f"(of which {len(found)} are in the store); {len(f.run.jobs)} jobs in the store",
        f"jobs by final status: {by_status}",
        f"attempts started {attempts}; jobs started more than once {reruns}; client reads {reads}; "
        f"cancels answered {cancels}; processes that exited as they started (store unreachable) {startups}",
    ]


def _fault_lines(f: Facts) -> list[str]:
    lines = [f"{'fault':<14}{'injected':>9}  {'takeover p50 / max (s)':>24}  {'recovery p50 / max (s)':>24}"]
    kinds = [k for k in FAULT_KINDS if any(x.kind == k for x in f.faults)]
    for kind in kinds:
        of_kind = [x for x in f.faults if x.kind == kind]
        took = _p50_max(takeover(f, x) for x in of_kind)
        rec = _p50_max(recovery(f, x) for x in of_kind)
        lines.append(f"{kind:<14}{len(of_kind):>9}  {took:>24}  {rec:>24}")
    lines.append(f"{'total':<14}{len(f.faults):>9}")
    return lines


def _violation_lines(violations: list[Violation]) -> list[str]:
    counts = Counter(v.kind for v in violations)
    lines = [f"{'violation':<16}{'count':>6}"]
    lines += [f"{kind:<16}{counts.get(kind, 0):>6}" for kind in KINDS]
    lines.append(f"{'total':<16}{len(violations):>6}")
    shown = violations[:25]
    if shown:
        lines += ["", f"first {len(shown)} of {len(violations)} violations:"] + [f"  {v}" for v in shown]
    return lines


def table(f: Facts, violations: list[Violation]) -> str:
    m = f.meta
    amount = f"{m.get('kills')} kills" if f.flavour == "sqlite" else f"{m.get('seconds')} s of faults"
    head = (
        f"vibe-jobs fault run: {f.flavour}, seed {m.get('seed')}, {amount}, lease {f.lease:g} s, "
        f"slack {f.slack:g} s, limit {f.limit}, processes {m.get('processes')}"
        + (f", BROKEN BUILD: {m['break']}" if m.get("break") else "")
    )
    notes = [f"note: {n}" for n in f.run.notes[:10]]
    parts = [[head, *notes], _jobs_lines(f), _fault_lines(f), _violation_lines(violations)]
    return "\n\n".join("\n".join(p) for p in parts)

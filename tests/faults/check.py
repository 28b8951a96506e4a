"""The checker: reads a fault run's history and reports every violation of what vibe-jobs promises.

    python -m tests.faults.check HISTORY_DIR      (exit status 1 when there is a violation)

Violation kinds (each check below says exactly what it reads):
  lost            an acknowledged job (submit-job answered with its id) is not in the store at the end
  not_final       a job (acknowledged or not) is not completed/failed/cancelled at the end
  result_changed  a job read as finished was later read with another status or result; or the store
                  changed a finished job's status or replaced a result it had
  fencing         the store took a write carrying attempt n's token while attempt n was not the running
                  attempt; or a job's stored result carries the token of an attempt that is not its last
  orphaned        a job stayed running under a process that could not run it (killed, SIGSTOPped, cut off
                  from the database) past lease + slack after the fault began (outages pushed back)
  ran_too_often   a retry-unsafe job was claimed or started more than once; a retry-safe one more than
                  1 + its retries (a claim given back to pending unstarted is not counted)
  double_run      one attempt of a job started twice, or in a process other than the one that claimed it
  stale_start     an attempt started after the store had taken its claim away (requeued, failed, cancelled
                  or finished elsewhere): its process ran work it no longer held
  concurrency     more jobs running at once than the cluster-wide limit: in the store (claims, cluster
                  flavour) or in the execution log (an attempt runs from its start line to its end line; a
                  killed process's attempts end at the kill; an attempt the store took away ends then)
  cancel          an acknowledged cancellation did not make the job final within lease + slack (outages
                  pushed back); a cancel answered `cancelled` whose job ended otherwise
  dependency      a job ran (or completed) although a dependency did not complete, or was claimed before
                  its dependencies completed
  process_exit    a product process exited without being killed (except a process that could not open the
                  store as it started, PostgreSQL being down then: the table counts those apart)
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.faults.facts import FINAL, ORPHANING, Facts, derive
from tests.faults.history import Attempt, Event, load, tokens_in

KINDS = (
    "lost",
    "not_final",
    "result_changed",
    "fencing",
    "orphaned",
    "ran_too_often",
    "double_run",
    "stale_start",
    "concurrency",
    "cancel",
    "dependency",
    "process_exit",
)


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    job: str | None
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.job or '-'}: {self.detail}"


def check_lost(f: Facts) -> Iterable[Violation]:
    for job in f.acked:
        if job not in f.run.jobs:
            yield Violation("lost", job, "acknowledged, not in the store at the end")


def check_not_final(f: Facts) -> Iterable[Violation]:
    for job, row in f.run.jobs.items():
        if row["status"] not in FINAL:
            yield Violation("not_final", job, f"{row['status']} at the end (owner {row.get('owner')})")


def check_reads(f: Facts) -> Iterable[Violation]:
    """Every read that begins after a read of a finished job was answered answers the same status and result.
    (Reads are logged when answered: one that began before the finished read was answered overlapped it, and
    may have seen the job before it finished, on another replica as on this one.)"""
    first: dict[str, tuple[str, str]] = {}
    answered: dict[str, float] = {}  # when the first read of the finished job was answered
    for e in f.run.events:
        if e.kind != "read" or e.job is None:
            continue
        seen = (e.values.get("status"), e.values.get("digest"))
        began = e.values.get("began", e.t)
        if e.job in first and seen != first[e.job] and began > answered[e.job]:
            yield Violation("result_changed", e.job, f"read as {first[e.job]} first, then {seen} by {e.process}")
        elif e.job not in first and seen[0] in FINAL:
            first[e.job] = (str(seen[0]), str(seen[1]))
            answered[e.job] = e.t


def check_store_changes(f: Facts) -> Iterable[Violation]:
    for row in f.run.audit:
        if row["op"] != "update":
            continue
        if row["old_status"] in FINAL and row["new_status"] != row["old_status"]:
            yield Violation(
                "result_changed",
                row["id"],
                f"the store moved it from {row['old_status']} to {row['new_status']} (audit seq {row['seq']})",
            )
        elif row["had_result"] and row["result"] is not None:
            yield Violation("result_changed", row["id"], f"the store replaced its result (audit seq {row['seq']})")


def check_fenced_writes(f: Facts) -> Iterable[Violation]:
    """A write carrying attempt n's token lands only while attempt n of that job is running."""
    attempts = f.token_attempt()
    for row in f.run.audit:
        if row["op"] != "update":
            continue
        for token in {*tokens_in(row["result"]), *tokens_in(row["progress"])}:
            a = attempts.get(token)
            if a is None:
                yield Violation("fencing", row["id"], f"a write (audit seq {row['seq']}) carries an unknown token")
            elif (row["id"], row["old_status"], row["old_attempt"]) != (a.job, "running", a.attempt):
                change = f"{row['old_status']}/{row['old_attempt']} -> {row['new_status']}/{row['new_attempt']}"
                yield Violation("fencing", row["id"], f"{_name(a)} wrote {change} (audit seq {row['seq']})")


def check_final_token(f: Facts) -> Iterable[Violation]:
    """The stored result's token is the token of the job's newest attempt (the highest attempt number that
    started; a stale start of an older one is stale_start's business), and that is the store's attempt."""
    attempts = f.token_attempt()
    for job, row in f.run.jobs.items():
        for token in set(tokens_in(_text(row.get("result")))):
            a = attempts.get(token)
            last = max(f.attempts.get(job, []), key=lambda x: (x.attempt, x.start), default=None)
            if a is None or a is not last or a.attempt != row["attempt"]:
                yield Violation(
                    "fencing",
                    job,
                    f"the stored result is from {_name(a)}; the newest attempt started is {_name(last)}, "
                    f"the store's attempt {row['attempt']}",
                )


def _name(a: Attempt | None) -> str:
    return f"attempt {a.attempt} (pid {a.pid})" if a else "an unknown attempt"


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def check_orphans(f: Facts) -> Iterable[Violation]:
    """A claim held by a process that a fault left unable to run it ends by fault start + lease + slack."""
    allowed = f.lease + f.slack
    for claims in f.claims.values():
        for c in claims:
            for fault in f.faults:
                if fault.kind not in ORPHANING or fault.pid != c.pid or fault.start >= c.end:
                    continue
                due = f.deadline(fault.start, allowed)
                if fault.victim_back > due and c.end > due and c.start < due:
                    held = "to the end" if c.end == float("inf") else f"{c.end - fault.start:.1f} s after it"
                    yield Violation(
                        "orphaned",
                        c.job,
                        f"attempt {c.attempt} stayed running under pid {c.pid} "
                        f"through {fault.kind} #{fault.id}: {held} (allowed {allowed:g} s)",
                    )


def check_run_counts(f: Facts) -> Iterable[Violation]:
    """A claim given back to pending before its attempt started (its lease lapsed first) is not a run."""
    retries = int(f.meta.get("safe_retries", 3))
    for job, row in f.run.jobs.items():
        started = {a.attempt for a in f.attempts.get(job, [])}
        runs = [c for c in f.claims.get(job, []) if c.attempt in started or c.end_status != "pending"]
        starts, claims = len(f.attempts.get(job, [])), len(runs)
        most = 1 if row["tool_name"] == "fj_unsafe" else 1 + retries
        if max(starts, claims) > most:
            yield Violation(
                "ran_too_often", job, f"{row['tool_name']}: {claims} claims, {starts} starts (at most {most})"
            )


def check_attempt_identity(f: Facts) -> Iterable[Violation]:
    """Each attempt runs once, in the process that claimed it, while the store still counts it as that process's."""
    for job, attempts in f.attempts.items():
        for n, k in Counter(a.attempt for a in attempts).items():
            if k > 1:
                yield Violation("double_run", job, f"attempt {n} started {k} times")
        claims = {c.attempt: c for c in f.claims.get(job, [])}
        for a in attempts:
            c = claims.get(a.attempt)
            if c is None or c.pid != a.pid:
                yield Violation("double_run", job, f"{_name(a)} ran, claimed by {f'pid {c.pid}' if c else 'nobody'}")
            elif a.start > c.end:
                yield Violation(
                    "stale_start",
                    job,
                    f"{_name(a)} started {a.start - c.end:.3f} s after the store "
                    f"made the job {c.end_status} (its job ended {_status(f, job)})",
                )


def _status(f: Facts, job: str) -> str:
    return str(f.run.jobs.get(job, {}).get("status", "missing"))


def _over_limit(intervals: list[tuple[float, float]], limit: int) -> list[tuple[float, int]]:
    """Each stretch of time with more than `limit` intervals open: (when it began, the most open in it).
    At one instant, ends come before starts (an interval is [start, end))."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    episodes: list[tuple[float, int]] = []
    n, inside = 0, False
    for t, delta in points:
        n += delta
        if n > limit and not inside:
            episodes.append((t, n))
        elif n > limit:
            episodes[-1] = (episodes[-1][0], max(episodes[-1][1], n))
        inside = n > limit
    return episodes


def _ran(f: Facts) -> list[tuple[float, float]]:
    """Each attempt from its start line to its end line, ended early by a kill or by the store taking its claim
    away; attempts that started after that (stale_start) are left out: that check reports them."""
    spans = [(a.start, _attempt_end(f, a)) for rs in f.attempts.values() for a in rs]
    return [(s, e) for s, e in spans if e > s]


def _attempt_end(f: Facts, a: Attempt) -> float:
    end = a.end if a.end is not None else f.kill_time.get(a.pid, f.end_of_run)
    claim = next((c for c in f.claims.get(a.job, []) if c.attempt == a.attempt), None)
    return min(end, claim.end) if claim is not None else end


def check_concurrency(f: Facts) -> Iterable[Violation]:
    if f.limit <= 0:
        return
    if f.flavour == "cluster":
        held = [(c.start, c.end) for cs in f.claims.values() for c in cs]
        for t, n in _over_limit(held, f.limit):
            yield Violation("concurrency", None, f"the store had {n} jobs running at {f.at(t)} (limit {f.limit})")
    for t, n in _over_limit(_ran(f), f.limit):
        yield Violation("concurrency", None, f"{n} attempts ran at once at {f.at(t)} (limit {f.limit})")


def check_cancels(f: Facts) -> Iterable[Violation]:
    allowed = f.lease + f.slack
    invoked = {}
    for e in f.run.events:
        if e.kind == "cancel-invoke" and e.job:
            invoked[e.job] = e.t
        if e.kind != "cancel-ok" or not e.job or e.values.get("error"):
            continue
        sent, final_at = invoked.get(e.job, e.t), f.first_final_at.get(e.job)
        if final_at is not None and final_at > f.deadline(sent, allowed):
            yield Violation("cancel", e.job, f"final {final_at - sent:.1f} s after the cancel (allowed {allowed:g} s)")
        stored = f.run.jobs.get(e.job, {}).get("status")
        if e.values.get("status") == "cancelled" and stored not in (None, "cancelled"):
            yield Violation("cancel", e.job, f"the cancel answered cancelled; the job ended {stored}")


def check_dependencies(f: Facts) -> Iterable[Violation]:
    jobs = f.run.jobs
    for job, row in jobs.items():
        deps = (row.get("task") or {}).get("dependencies") or []
        failed = [d for d in deps if jobs.get(d, {}).get("status") != "completed"]
        ran = f.attempts.get(job, [])
        if failed and (ran or row["status"] == "completed"):
            yield Violation(
                "dependency",
                job,
                f"ran ({len(ran)} starts, {row['status']}) although {failed[0]} "
                f"is {jobs.get(failed[0], {}).get('status', 'missing')}",
            )
        first_claim = min((c.start for c in f.claims.get(job, [])), default=None)
        for d in deps:
            done = f.first_final_at.get(d)
            if first_claim is not None and done is not None and first_claim < done:
                yield Violation("dependency", job, f"claimed {done - first_claim:.3f} s before {d} was final")


STARTUP_EXIT = "cannot open the job store"  # what a process says when the store is unreachable as it starts


def startup_exit(e: Event) -> bool:
    return STARTUP_EXIT in str(e.values.get("last", ""))


def check_process_exits(f: Facts) -> Iterable[Violation]:
    for e in f.run.events:
        if e.kind == "proc-exit" and not startup_exit(e):
            v = e.values
            yield Violation(
                "process_exit",
                None,
                f"{v.get('process_name')} (pid {v.get('pid')}) exited with {v.get('code')}: {v.get('last')}",
            )


CHECKS: list[Callable[[Facts], Iterable[Violation]]] = [
    check_lost, check_not_final, check_reads, check_store_changes, check_fenced_writes, check_final_token,
    check_orphans, check_run_counts, check_attempt_identity, check_concurrency, check_cancels, check_dependencies,
    check_process_exits,
]  # fmt: skip


def check(f: Facts) -> list[Violation]:
    return [v for c in CHECKS for v in c(f)]


def main(argv: list[str]) -> int:
    from tests.faults.report import table

    if len(argv) != 1:
        print("usage: python -m tests.faults.check HISTORY_DIR", file=sys.stderr)
        return 2
    directory = Path(argv[0])
    if not (directory / "history.jsonl").exists():
        print(f"{directory} holds no history.jsonl", file=sys.stderr)
        return 2
    facts = derive(load(directory))
    violations = check(facts)
    print(table(facts, violations))
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

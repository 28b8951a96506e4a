"""The fault checker on small hand-made histories: a clean one passes, and each kind of violation is found.

The clean story (times in seconds; lease 2 s, slack 4 s, limit 2; workers pid 100 and 200):
  A  fj_safe, claimed by 100 at 10, writes its progress and result (token a1), completed at 10.1
  B  fj_unsafe, depends on A, claimed by 200 at 10.2, completed at 10.4
  C  fj_safe, pending, cancelled by the client at 10.5 (never ran)
  D  fj_unsafe, claimed by 200 at 11, fails (token d1) at 11.1
  E  fj_safe, depends on D: failed by the dependency sweep at 11.5, never ran
  worker pid 100 is SIGKILLed at 20 holding nothing; pid 300 replaces it and claims F at 21
Each test changes the story in one way and expects the matching violation (and only that kind).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.faults.check import KINDS, Violation, check
from tests.faults.facts import derive
from tests.faults.history import load, parse_exec_log

T0 = 1_700_000_000.0
OWNER = {100: "host:100:aaaa", 200: "host:200:bbbb", 300: "host:300:cccc"}


def tok(name: str) -> str:
    """A 16-hex-digit token derived from a short name (a1 -> 00000000000000a1)."""
    return name.encode().hex().rjust(16, "0")


@dataclass
class Story:
    events: list[dict[str, Any]] = field(default_factory=list)
    execs: list[str] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def event(self, t: float, kind: str, job: str | None = None, process: str = "client", **values: Any) -> None:
        self.events.append({"t": T0 + t, "process": process, "kind": kind, "job": job, "values": values})

    def change(
        self, t: float, job: str, old: tuple[str, int, int] | None, new: tuple[str, int, int], **cols: Any
    ) -> None:
        """An audit row: (status, attempt, owner pid) before and after."""
        row = {
            "seq": len(self.audit) + 1, "at_us": int((T0 + t) * 1e6), "op": "update" if old else "insert", "id": job,
            "old_status": old[0] if old else None, "old_attempt": old[1] if old else None,
            "old_owner": OWNER.get(old[2]) if old else None, "new_status": new[0], "new_attempt": new[1],
            "new_owner": OWNER.get(new[2]), "had_result": False, "result": None, "progress": None, "cancel": None,
        }  # fmt: skip
        row.update(cols)
        self.audit.append(row)

    def attempt(self, job: str, n: int, pid: int, start: float, end: float | None, token: str, how: str = "ok") -> None:
        self.execs.append(f"start {job} {n} {pid} {int((T0 + start) * 1e9)} {tok(token)}")
        if end is not None:
            self.execs.append(f"end {job} {n} {pid} {int((T0 + end) * 1e9)} {tok(token)} {how}")

    def job(
        self, job: str, tool: str, status: str, attempt: int, token: str | None = None, deps: tuple[str, ...] = ()
    ) -> None:
        result = {"structuredContent": {"token": f"tok:{tok(token)}"}} if token else None
        task = {"dependencies": list(deps)}
        self.jobs[job] = {"id": job, "tool_name": tool, "status": status, "attempt": attempt, "owner": None,
                          "params": {"tag": f"t-{job}"}, "result": result, "task": task}  # fmt: skip

    def submit(self, t: float, job: str) -> None:
        self.event(t, "submit-invoke", None, tag=f"t-{job}")
        self.event(t + 0.001, "submit-ok", job, tag=f"t-{job}")

    def run(self, t: float, job: str, pid: int, token: str, tool: str, *, fail: bool = False) -> None:
        """Claim at t, start, progress, end and the final write 0.1 s later."""
        self.change(t, job, ("pending", 0, 0), ("running", 1, pid))
        self.attempt(job, 1, pid, t + 0.005, t + 0.09, token, "error" if fail else "ok")
        self.change(t + 0.01, job, ("running", 1, pid), ("running", 1, pid), progress=f"tok:{tok(token)}")
        status = "failed" if fail else "completed"
        self.change(t + 0.1, job, ("running", 1, pid), (status, 1, pid), result=f'"tok:{tok(token)}"')
        self.job(job, tool, status, 1, token)

    def write(self, directory: Path) -> Path:
        lines = [json.dumps(e) for e in sorted(self.events, key=lambda e: e["t"])]
        (directory / "history.jsonl").write_text("\n".join(lines) + "\n")
        (directory / "exec.log").write_text("\n".join(self.execs) + "\n")
        (directory / "audit.jsonl").write_text("".join(json.dumps(r) + "\n" for r in self.audit))
        (directory / "jobs.jsonl").write_text("".join(json.dumps(j) + "\n" for j in self.jobs.values()))
        return directory


def clean() -> Story:
    s = Story()
    s.event(0, "meta", process="harness", flavour="cluster", lease=2.0, slack=4.0, limit=2, safe_retries=3, seed=1)
    for job, t in (("A", 9.0), ("B", 9.1), ("C", 9.2), ("D", 9.3), ("E", 9.4), ("F", 20.5)):
        s.submit(t, job)
        s.change(t + 0.002, job, None, ("pending", 0, 0))
    s.run(10.0, "A", 100, "a1", "fj_safe")
    s.event(11.0, "read", "A", status="completed", digest="d-a", token=tok("a1"))
    s.run(10.2, "B", 200, "b1", "fj_unsafe")
    s.jobs["B"]["task"]["dependencies"] = ["A"]
    s.event(10.5, "cancel-invoke", "C")
    s.change(10.52, "C", ("pending", 0, 0), ("cancelled", 0, 0))
    s.event(10.55, "cancel-ok", "C", status="cancelled", error=False)
    s.job("C", "fj_safe", "cancelled", 0)
    s.run(11.0, "D", 200, "d1", "fj_unsafe", fail=True)
    s.change(11.5, "E", ("pending", 0, 0), ("failed", 0, 0), result='"DependencyFailed"')
    s.job("E", "fj_safe", "failed", 0, deps=("D",))
    s.event(20.0, "fault-start", process="nemesis", fault=1, what="kill-worker", target="worker-0", pid=100)
    s.event(20.4, "fault-end", process="nemesis", fault=1, target="worker-0", new_pid=300)
    s.run(21.0, "F", 300, "f1", "fj_safe")
    s.event(22.0, "read", "A", status="completed", digest="d-a", token=tok("a1"))
    s.event(30.0, "end", process="harness")
    return s


def violations(story: Story, tmp_path: Path) -> list[Violation]:
    return check(derive(load(story.write(tmp_path))))


def kinds(story: Story, tmp_path: Path) -> set[str]:
    return {v.kind for v in violations(story, tmp_path)}


def test_the_clean_history_passes(tmp_path: Path) -> None:
    assert violations(clean(), tmp_path) == []


def test_an_acknowledged_job_missing_from_the_store_is_lost(tmp_path: Path) -> None:
    s = clean()
    del s.jobs["C"]
    assert kinds(s, tmp_path) == {"lost"}


def test_a_job_left_pending_is_not_final(tmp_path: Path) -> None:
    s = clean()
    s.jobs["C"]["status"] = "pending"
    found = kinds(s, tmp_path)
    assert "not_final" in found and found <= {"not_final", "cancel"}  # C was also answered `cancelled`


def test_a_result_read_differently_later_is_a_changed_result(tmp_path: Path) -> None:
    s = clean()
    s.event(23.0, "read", "A", process="replica-1/reader", status="completed", digest="d-other", token=tok("a1"))
    assert kinds(s, tmp_path) == {"result_changed"}


def test_a_finished_job_read_as_running_again_is_a_changed_result(tmp_path: Path) -> None:
    s = clean()
    s.event(23.0, "read", "A", status="running")
    assert kinds(s, tmp_path) == {"result_changed"}


def test_a_read_that_overlapped_the_first_finished_read_may_still_see_it_running(tmp_path: Path) -> None:
    """Reads are logged when answered. One that began before A's first finished read was answered (at 11.0)
    overlapped it, on another replica, and may have seen A before it finished; one that began after may not."""
    overlapped = clean()
    overlapped.event(11.02, "read", "A", process="replica-0/reader", status="running", began=T0 + 10.9)
    assert kinds(overlapped, tmp_path) == set()
    after = clean()
    after.event(11.02, "read", "A", process="replica-0/reader", status="running", began=T0 + 11.01)
    (tmp_path / "after").mkdir()
    assert kinds(after, tmp_path / "after") == {"result_changed"}


def test_the_store_replacing_a_result_is_a_changed_result(tmp_path: Path) -> None:
    s = clean()
    s.change(12.0, "A", ("completed", 1, 100), ("completed", 1, 100), had_result=True, result='"other"')
    assert kinds(s, tmp_path) == {"result_changed"}


def stale_attempt(s: Story) -> None:
    """A's attempt 1 (pid 100) is taken over at 10.03 and re-run by pid 200 as attempt 2 from 10.04;
    the final write still carries attempt 1's token."""
    s.audit = [r for r in s.audit if not (r["id"] == "A" and r["new_status"] == "completed")]
    s.change(10.03, "A", ("running", 1, 100), ("pending", 1, 200))
    s.change(10.04, "A", ("pending", 1, 200), ("running", 2, 200))
    s.attempt("A", 2, 200, 10.045, 10.3, "a2")
    s.change(10.1, "A", ("running", 2, 200), ("completed", 2, 200), result=f'"tok:{tok("a1")}"')
    s.jobs["A"]["attempt"] = 2


def test_a_write_by_an_attempt_that_lost_its_job_breaks_fencing(tmp_path: Path) -> None:
    s = clean()
    stale_attempt(s)
    found = violations(s, tmp_path)
    assert {v.kind for v in found} == {"fencing"}
    assert any("attempt 1 (pid 100) wrote running/2 -> completed/2" in v.detail for v in found)
    assert any(
        "the stored result is from attempt 1 (pid 100); the newest attempt started is attempt 2" in v.detail
        for v in found
    )


def test_the_same_story_with_the_newer_attempt_writing_passes(tmp_path: Path) -> None:
    s = clean()
    stale_attempt(s)
    s.audit[-1]["result"] = f'"tok:{tok("a2")}"'
    s.jobs["A"]["result"] = {"structuredContent": {"token": f"tok:{tok('a2')}"}}
    assert violations(s, tmp_path) == []


def held_by_killed_worker(s: Story, released: float | None) -> None:
    """G is claimed by pid 100 at 19.5; pid 100 is killed at 20; recovery releases G at `released`."""
    s.submit(19.0, "G")
    s.change(19.002, "G", None, ("pending", 0, 0))
    s.change(19.5, "G", ("pending", 0, 0), ("running", 1, 100))
    s.attempt("G", 1, 100, 19.51, None, "g1")
    s.job("G", "fj_unsafe", "failed", 1)
    if released is not None:
        s.change(released, "G", ("running", 1, 100), ("failed", 1, 200), result='"interrupted"')


def test_a_job_held_past_the_lease_by_a_killed_worker_is_orphaned(tmp_path: Path) -> None:
    s = clean()
    held_by_killed_worker(s, released=27.0)  # allowed: 20 + lease 2 + slack 4 = 26
    assert kinds(s, tmp_path) == {"orphaned"}


def test_a_job_released_within_the_lease_and_slack_is_fine(tmp_path: Path) -> None:
    s = clean()
    held_by_killed_worker(s, released=25.5)
    assert violations(s, tmp_path) == []


def test_a_postgres_outage_pushes_the_orphan_deadline_back(tmp_path: Path) -> None:
    s = clean()
    held_by_killed_worker(s, released=27.0)
    s.event(21.0, "fault-start", process="nemesis", fault=2, what="restart-pg", target="postgres", pid=0)
    s.event(23.0, "fault-end", process="nemesis", fault=2, target="postgres")
    assert violations(s, tmp_path) == []  # 2 s down: allowed until 28


def test_a_pause_shorter_than_the_lease_needs_no_takeover(tmp_path: Path) -> None:
    s = clean()
    held_by_killed_worker(s, released=40.0)
    s.events = [e for e in s.events if e["values"].get("fault") != 1]
    s.event(20.0, "fault-start", process="nemesis", fault=1, what="stop-worker", target="worker-0", pid=100)
    s.event(21.5, "fault-end", process="nemesis", fault=1, target="worker-0")
    assert violations(s, tmp_path) == []


def test_a_retry_unsafe_job_started_twice_ran_too_often(tmp_path: Path) -> None:
    s = clean()
    s.change(10.6, "B", ("completed", 1, 200), ("running", 2, 200))  # (also a changed final status)
    s.attempt("B", 2, 200, 10.61, 10.7, "b2")
    assert "ran_too_often" in kinds(s, tmp_path)


def test_a_claim_given_back_unstarted_is_not_a_run(tmp_path: Path) -> None:
    """A worker's claim answered after its lease lapsed is given back to pending without starting: the retry-
    unsafe job's next claim is its one run."""
    s = clean()
    s.submit(12.0, "G")
    s.change(12.002, "G", None, ("pending", 0, 0))
    s.change(12.5, "G", ("pending", 0, 0), ("running", 1, 100))
    s.change(12.6, "G", ("running", 1, 100), ("pending", 1, 100))  # given back, never started
    s.change(12.7, "G", ("pending", 1, 100), ("running", 2, 200))
    s.attempt("G", 2, 200, 12.71, 12.8, "g2")
    s.change(12.85, "G", ("running", 2, 200), ("completed", 2, 200), result=f'"tok:{tok("g2")}"')
    s.job("G", "fj_unsafe", "completed", 2, "g2")
    assert violations(s, tmp_path) == []
    s.attempt("G", 1, 100, 12.55, 12.58, "g1")  # had it started, it would have run twice
    assert "ran_too_often" in kinds(s, tmp_path)


def test_an_attempt_run_by_a_process_that_did_not_claim_it_is_a_double_run(tmp_path: Path) -> None:
    s = clean()
    s.attempt("F", 1, 200, 21.01, 21.05, "f-dup")
    found = kinds(s, tmp_path)
    assert "double_run" in found and found <= {"double_run", "fencing"}  # the result is not the last run's


def test_more_jobs_running_than_the_limit_breaks_concurrency(tmp_path: Path) -> None:
    s = clean()
    for job, pid in (("H", 100), ("I", 200), ("J", 300)):  # three at once, limit 2
        s.submit(14.0, job)
        s.change(14.002, job, None, ("pending", 0, 0))
        s.run(15.0, job, pid, f"{job.lower()}1", "fj_safe")
    found = violations(s, tmp_path)
    assert {v.kind for v in found} == {"concurrency"}
    assert len(found) == 2  # the store's view and the execution log's


def test_a_killed_process_s_attempt_ends_at_the_kill(tmp_path: Path) -> None:
    s = clean()
    held_by_killed_worker(s, released=25.0)  # G: no end line, killed at 20
    for job, pid in (("H", 200), ("I", 300)):  # two more from 22: G no longer counts
        s.submit(21.5, job)
        s.change(21.502, job, None, ("pending", 0, 0))
        s.run(25.5, job, pid, f"{job.lower()}1", "fj_safe")
    assert violations(s, tmp_path) == []


def test_a_cancel_that_took_effect_late_is_reported(tmp_path: Path) -> None:
    s = clean()
    s.audit = [r for r in s.audit if not (r["id"] == "C" and r["new_status"] == "cancelled")]
    s.change(17.0, "C", ("pending", 0, 0), ("cancelled", 0, 0))  # 6.5 s after the request: allowed 6
    assert kinds(s, tmp_path) == {"cancel"}


def test_a_cancel_answered_cancelled_must_stay_cancelled(tmp_path: Path) -> None:
    s = clean()
    s.jobs["C"]["status"] = "completed"
    assert kinds(s, tmp_path) == {"cancel"}


def test_an_attempt_started_after_the_store_took_its_claim_away_is_a_stale_start(tmp_path: Path) -> None:
    """Claimed by pid 100 at 19.5 (the claim's answer still on its way), requeued by recovery at 24, run and
    completed by pid 200 from 25; pid 100 starts its attempt 1 at 26 all the same."""
    s = clean()
    s.submit(19.0, "G")
    s.change(19.002, "G", None, ("pending", 0, 0))
    s.change(19.5, "G", ("pending", 0, 0), ("running", 1, 100))
    s.change(24.0, "G", ("running", 1, 100), ("pending", 1, 200))
    s.change(25.0, "G", ("pending", 1, 200), ("running", 2, 200))
    s.attempt("G", 2, 200, 25.01, 25.05, "g2")
    s.change(25.1, "G", ("running", 2, 200), ("completed", 2, 200), result=f'"tok:{tok("g2")}"')
    s.job("G", "fj_safe", "completed", 2, "g2")
    s.attempt("G", 1, 100, 26.0, 26.01, "g1", "error")
    found = violations(s, tmp_path)
    assert [v.kind for v in found] == ["stale_start"]
    assert "attempt 1 (pid 100) started 2.000 s after the store made the job pending" in found[0].detail


def test_a_dependent_of_a_failed_job_that_ran_breaks_dependencies(tmp_path: Path) -> None:
    s = clean()
    s.attempt("E", 1, 300, 11.6, 11.7, "e1")
    s.change(11.55, "E", ("failed", 0, 0), ("running", 1, 300))
    assert "dependency" in kinds(s, tmp_path)


def test_a_dependent_claimed_before_its_dependency_completed_breaks_dependencies(tmp_path: Path) -> None:
    s = clean()
    s.audit = [r for r in s.audit if r["id"] != "B"]
    s.change(9.102, "B", None, ("pending", 0, 0))
    s.change(10.05, "B", ("pending", 0, 0), ("running", 1, 200))  # A completes at 10.1
    s.change(10.4, "B", ("running", 1, 200), ("completed", 1, 200), result=f'"tok:{tok("b1")}"')
    assert kinds(s, tmp_path) == {"dependency"}


def test_a_process_that_died_on_its_own_is_reported(tmp_path: Path) -> None:
    s = clean()
    s.event(25.0, "proc-exit", process="harness", process_name="worker-1", pid=200, code=1, last="Traceback ...")
    assert kinds(s, tmp_path) == {"process_exit"}


def test_a_process_that_could_not_open_the_store_as_it_started_is_counted_apart(tmp_path: Path) -> None:
    s = clean()
    last = "vibe-jobs: cannot open the job store at postgresql://...: ConnectionRefusedError"
    s.event(25.0, "proc-exit", process="harness", process_name="worker-1", pid=200, code=2, last=last)
    assert violations(s, tmp_path) == []


def test_every_kind_has_a_test() -> None:
    covered = {"lost", "not_final", "result_changed", "fencing", "orphaned", "ran_too_often", "double_run",
               "concurrency", "cancel", "dependency", "process_exit", "stale_start"}  # fmt: skip
    assert covered == set(KINDS)


def test_the_exec_log_parser_pairs_ends_with_starts_by_token() -> None:
    notes: list[str] = []
    text = "start j 1 7 1000000000 aaaa\nstart j 2 8 2000000000 bbbb\nend j 1 7 3000000000 aaaa ok\ngarbage\n"
    a1, a2 = parse_exec_log(text, notes)
    assert (a1.attempt, a1.end, a1.how) == (1, 3.0, "ok")
    assert a2.end is None
    assert notes == ["exec.log:4 unreadable: 'garbage'"]


def test_the_checker_command_exits_1_on_a_violation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.faults.check import main

    s = clean()
    del s.jobs["C"]
    s.write(tmp_path)
    assert main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "lost                 1" in out and "total                1" in out
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(j) + "\n" for j in clean().jobs.values()))
    assert main([str(tmp_path)]) == 0
